"""The audit endpoints: who read one email, and the org's audit trail (JSON or CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response

from app.audit import service
from app.audit.repository import AuditEntry, AuditQuery
from app.audit.schemas import AuditEntryOut, AuditPage
from app.auth.deps import AdminDep, CallerDep
from app.errors import UnprocessableEntity
from app.pagination import CursorQuery, LimitQuery, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1", tags=["audit"])

CSV_TYPE = "text/csv"
CSV_COLUMNS = (
    "occurred_at",
    "user_id",
    "action",
    "email_ids",
    "attachment_id",
    "request_id",
    "id",
    "sealed",
)


def _aware(moment: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _item(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        user_id=entry.user_id,
        action=entry.action,
        email_ids=entry.email_ids,
        attachment_id=entry.attachment_id,
        occurred_at=entry.occurred_at,
        request_id=entry.request_id,
        sealed=entry.block_seq is not None,
    )


def _page(found: service.EntryPage) -> AuditPage:
    last = found.entries[-1] if found.entries and found.more else None
    return AuditPage(
        items=[_item(e) for e in found.entries],
        next_cursor=encode_cursor(last.occurred_at, last.id) if last else None,
    )


def _wants_csv(accept: str | None) -> bool:
    return any(part.split(";")[0].strip().lower() == CSV_TYPE for part in (accept or "").split(","))


def _csv(page: AuditPage) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in page.items:
        writer.writerow(
            [
                item.occurred_at.isoformat(),
                item.user_id,
                item.action,
                " ".join(str(i) for i in item.email_ids),
                item.attachment_id or "",
                item.request_id or "",
                item.id,
                "true" if item.sealed else "false",
            ]
        )
    headers = {"Cache-Control": "private, no-store"}
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    return Response(
        content=out.getvalue(), media_type=f"{CSV_TYPE}; charset=utf-8", headers=headers
    )


_PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid cursor"},
}
_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Audit rows, newest first. With `Accept: text/csv`, the same page as "
        "CSV with a header row; the next page's cursor is in `X-Next-Cursor`.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AuditPage"}},
            CSV_TYPE: {"schema": {"type": "string"}},
        },
    },
    403: {"description": "Not an org admin"},
    422: {"description": "Invalid filter (a date, or `since` after `until`)"},
}


@router.get(
    "/emails/{email_id}/access",
    summary="Who read this email (the mailbox's owner or an org admin)",
    responses={
        **_PAGE_RESPONSES,
        403: {"description": "Neither the mailbox's owner nor an org admin"},
        404: {"description": "Not found in the caller's organisation"},
    },
)
async def email_access(
    email_id: UUID, caller: CallerDep, cursor: CursorQuery = None, limit: LimitQuery = 25
) -> AuditPage:
    after = decode_cursor(cursor) if cursor else None
    return _page(await service.email_access(caller, email_id, after=after, limit=limit))


@router.get(
    "/audit/email-access",
    summary="The org's access audit of email content, newest first (admins)",
    response_model=AuditPage,
    responses={**_PAGE_RESPONSES, **_CSV_RESPONSE},
)
async def audit_email_access(
    caller: AdminDep,
    user_id: UUID | None = None,
    email_id: UUID | None = None,
    since: Annotated[datetime | None, Query(description="from this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="before this time")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 25,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    since, until = _aware(since), _aware(until)
    if since is not None and until is not None and since > until:
        raise UnprocessableEntity("`since` must not be after `until`", field="since")
    after = decode_cursor(cursor) if cursor else None
    query = AuditQuery(user_id=user_id, email_id=email_id, since=since, until=until)
    page = _page(await service.entries(caller.session, query, after=after, limit=limit))
    return _csv(page) if _wants_csv(accept) else page
