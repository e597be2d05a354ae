from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request, Response

from app.auth.deps import CallerDep
from app.messages import sharing, timeline
from app.messages.repository.reads import TimelineFilter
from app.messages.schemas import Direction, EmailDetail, EmailPage, ThreadShare
from app.pagination import CursorQuery, LimitQuery
from app.platform.documents import document_storage

router = APIRouter(prefix="/v1", tags=["emails"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not found in the caller's organisation"}
}
_BAD_CURSOR: dict[int | str, dict[str, Any]] = {400: {"description": "Invalid cursor"}}


@router.get(
    "/emails",
    summary="Email timeline, newest first (keyset-paginated)",
    responses=_BAD_CURSOR,
)
async def list_emails(
    caller: CallerDep,
    contact_id: UUID | None = None,
    partner_id: UUID | None = None,
    account_id: UUID | None = None,
    direction: Direction | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 25,
) -> EmailPage:
    f = TimelineFilter(
        contact_id=contact_id, partner_id=partner_id, account_id=account_id, direction=direction
    )
    return await timeline.list_timeline(caller, f, cursor=cursor, limit=limit)


@router.get(
    "/contacts/{contact_id}/emails",
    summary="A contact's email timeline",
    responses={**_NOT_FOUND, **_BAD_CURSOR},
)
async def contact_emails(
    contact_id: UUID,
    caller: CallerDep,
    account_id: UUID | None = None,
    direction: Direction | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 25,
) -> EmailPage:
    f = TimelineFilter(contact_id=contact_id, account_id=account_id, direction=direction)
    return await timeline.contact_timeline(caller, contact_id, f, cursor=cursor, limit=limit)


@router.get(
    "/partners/{partner_id}/emails",
    summary="A partner's email timeline",
    responses={**_NOT_FOUND, **_BAD_CURSOR},
)
async def partner_emails(
    partner_id: UUID,
    caller: CallerDep,
    account_id: UUID | None = None,
    direction: Direction | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 25,
) -> EmailPage:
    f = TimelineFilter(partner_id=partner_id, account_id=account_id, direction=direction)
    return await timeline.partner_timeline(caller, partner_id, f, cursor=cursor, limit=limit)


@router.get(
    "/emails/{email_id}",
    summary="One email: sanitised body, participants, attachments, tracking summary",
    responses=_NOT_FOUND,
)
async def get_email(email_id: UUID, caller: CallerDep) -> EmailDetail:
    return await timeline.email_detail(caller, email_id)


_TOKEN = re.compile(r"\A[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}\Z")
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9 ._()\[\]+-]")


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the RFC 6266 / 5987 UTF-8 one; no
    quote, backslash, control character or path can get through."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", filename).replace("/", "_").replace("\\", "_")
    name = name.strip().lstrip(".") or "attachment"
    fallback = _UNSAFE_ASCII.sub("_", name)[:150] or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name[:200], safe='')}"


@router.get(
    "/emails/{email_id}/attachments/{attachment_id}",
    summary="Download an attachment (from the PF-11 document store)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **_NOT_FOUND},
)
async def download_attachment(
    request: Request, email_id: UUID, attachment_id: UUID, caller: CallerDep
) -> Response:
    storage = document_storage(request.app.state.settings)
    found = await timeline.attachment_content(caller, email_id, attachment_id, storage)
    content_type = found.content_type.strip().lower()
    if not _TOKEN.match(content_type):
        content_type = "application/octet-stream"
    return Response(
        content=found.content,
        media_type=content_type,
        headers={
            "Content-Disposition": content_disposition(found.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, no-store",
        },
    )


@router.post(
    "/emails/{email_id}/share",
    summary="Share the email's whole thread with the org (owner only)",
    responses={
        **_NOT_FOUND,
        403: {"description": "Not the mailbox's owner"},
        409: {"description": "The email has no provider thread yet"},
    },
)
async def share_thread(email_id: UUID, body: ThreadShare, caller: CallerDep) -> ThreadShare:
    await sharing.share(caller, email_id)
    return body


@router.delete(
    "/emails/{email_id}/share",
    status_code=204,
    summary="Withdraw the sharing of the email's thread (owner only)",
    responses={**_NOT_FOUND, 403: {"description": "Not the mailbox's owner"}},
)
async def withdraw_thread_share(email_id: UUID, caller: CallerDep) -> Response:
    await sharing.withdraw(caller, email_id)
    return Response(status_code=204)
