"""GET /v1/purges: the org's purge receipts (admins)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from app.auth.deps import AdminDep
from app.errors import BadRequest
from app.retention import service
from app.retention.schemas import PurgeCountsOut, PurgePage, PurgeReceipt

router = APIRouter(prefix="/v1", tags=["retention"])

CursorQuery = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the previous page")
]
LimitQuery = Annotated[int, Query(ge=1, le=100, description="page size")]


def encode_cursor(created_at: datetime, receipt_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(receipt_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, receipt_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, UUID(receipt_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(
            "The cursor is not valid; start from the first page.", field="cursor"
        ) from None


@router.get(
    "/purges",
    summary="Purge receipts: what retention and disconnects deleted (org admins only)",
    responses={403: {"description": "Not an org admin"}},
)
async def list_purges(
    caller: AdminDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> PurgePage:
    after = decode_cursor(cursor) if cursor else None
    found = await service.list_receipts(caller.session, after=after, limit=limit + 1)
    items = [
        PurgeReceipt(
            id=r.id,
            scope=r.scope,
            account_id=r.account_id,
            counts=PurgeCountsOut(**r.counts),
            cutoff=r.cutoff,
            created_at=r.created_at,
        )
        for r in found[:limit]
    ]
    next_cursor = (
        encode_cursor(found[limit - 1].created_at, found[limit - 1].id)
        if len(found) > limit
        else None
    )
    return PurgePage(items=items, next_cursor=next_cursor)
