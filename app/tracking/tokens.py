"""Tracking tokens: opaque, signed, and carrying nothing but two ids.

`base64url(org_id[16] + target_id[16] + HMAC-SHA256(kind + org + target)[:16])`: the
kind (open or click) is signed but not carried, so an open token is no click token. No
address, subject, org name or URL is in a token; the click target is looked up server-side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Literal
from uuid import UUID

Kind = Literal["o", "c"]
_MAC_BYTES = 16
_TOKEN_BYTES = 32 + _MAC_BYTES


def _mac(secret: bytes, kind: Kind, payload: bytes) -> bytes:
    return hmac.new(secret, kind.encode() + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(secret: str, kind: Kind, org_id: UUID, target_id: UUID) -> str:
    payload = org_id.bytes + target_id.bytes
    raw = payload + _mac(secret.encode(), kind, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def read_token(secret: str, kind: Kind, token: str) -> tuple[UUID, UUID] | None:
    """(org id, target id), or None for anything forged, truncated or malformed."""
    if len(token) != 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _TOKEN_BYTES:
        return None
    payload, mac = raw[:32], raw[32:]
    if not hmac.compare_digest(mac, _mac(secret.encode(), kind, payload)):
        return None
    return UUID(bytes=payload[:16]), UUID(bytes=payload[16:])
