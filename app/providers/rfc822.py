"""Small helpers shared by the drivers: base64url and reading a few headers of raw mail.

The full parser lives in `app/messages`; the drivers only need the Message-ID (to fill
`RemoteMessage.internet_message_id`) and a Date fallback.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime

_HEADER_SCAN_LIMIT = 256 * 1024


def b64url_decode(data: str) -> bytes:
    """Gmail base64url, with or without padding."""
    data = data.strip()
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _headers(raw: bytes) -> dict[str, str]:
    head = raw[:_HEADER_SCAN_LIMIT]
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = head.find(sep)
        if index != -1:
            head = head[: index + len(sep)]
            break
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    out: dict[str, str] = {}
    for name, value in parsed.items():
        out.setdefault(name.lower(), str(value))
    return out


def header_values(raw: bytes, *names: str) -> dict[str, str | None]:
    headers = _headers(raw)
    return {name: _clean(headers.get(name.lower())) for name in names}


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def message_id_of(raw: bytes) -> str | None:
    return header_values(raw, "message-id")["message-id"]


def date_of(raw: bytes) -> datetime | None:
    value = header_values(raw, "date")["date"]
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
