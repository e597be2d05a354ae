"""Keyset pages, the same for every list of the API: the query parameters, and the opaque
cursor a page hands to the next one (the last item's time and id, newest first)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Query

from app.errors import BadRequest

CursorQuery = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the previous page")
]
LimitQuery = Annotated[int, Query(ge=1, le=100, description="page size")]


def encode_cursor(moment: datetime, item_id: UUID) -> str:
    raw = json.dumps([moment.isoformat(), str(item_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (time, id) a cursor stands for; a 400 problem for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        occurred, item_id = json.loads(raw)
        moment = datetime.fromisoformat(occurred)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, UUID(item_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(
            "The cursor is not valid; start from the first page.", field="cursor"
        ) from None
