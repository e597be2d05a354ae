"""GET /v1/purges: the org's purge receipts (admins)."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth.deps import AdminDep
from app.pagination import CursorQuery, LimitQuery, decode_cursor, encode_cursor
from app.retention import service
from app.retention.schemas import PurgeCountsOut, PurgePage, PurgeReceipt

router = APIRouter(prefix="/v1", tags=["retention"])


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
