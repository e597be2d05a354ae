"""The OAuth `state` parameter: signed, expiring, naming a single-use row.

Format: base64url(json{sid, org, exp}) "." base64url(HMAC-SHA256). The callback trusts none
of it before the signature and expiry check; the org it names only selects the RLS context
in which the single-use row must then be found and consumed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID


class InvalidState(Exception):
    pass


class InvalidReturnTo(ValueError):
    pass


@dataclass(frozen=True)
class StateClaims:
    state_id: UUID
    org_id: UUID
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def sign_state(secret: str, claims: StateClaims) -> str:
    body = _b64(
        json.dumps(
            {"sid": str(claims.state_id), "org": str(claims.org_id), "exp": claims.expires_at},
            separators=(",", ":"),
        ).encode()
    )
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify_state(secret: str, token: str, now: float | None = None) -> StateClaims:
    if not token or len(token) > 512 or token.count(".") != 1:
        raise InvalidState("malformed")
    body, mac = token.split(".")
    expected = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
    except ValueError:
        raise InvalidState("malformed") from None
    if not hmac.compare_digest(expected, given):
        raise InvalidState("bad signature")
    try:
        data = json.loads(_unb64(body))
        claims = StateClaims(UUID(data["sid"]), UUID(data["org"]), int(data["exp"]))
    except (ValueError, KeyError, TypeError):
        raise InvalidState("malformed") from None
    if claims.expires_at < (now if now is not None else time.time()):
        raise InvalidState("expired")
    return claims


def validate_return_to(return_to: str, allowed_origins: list[str]) -> str:
    """Only an absolute http(s) URL on an allowed frontend origin: never an open redirect."""
    parts = urlsplit(return_to)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidReturnTo("return_to must be an absolute http(s) URL")
    if (
        parts.username
        or parts.password
        or "\\" in return_to
        or any(ord(ch) < 0x21 for ch in return_to)
    ):
        raise InvalidReturnTo("return_to is not a plain URL")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    origin = f"{parts.scheme}://{parts.hostname.lower()}"
    if (parts.port or default_port) != default_port:
        origin += f":{parts.port}"
    if origin not in allowed_origins:
        raise InvalidReturnTo("return_to is not an allowed frontend origin")
    return return_to


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
