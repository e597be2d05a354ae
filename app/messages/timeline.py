"""Reading stored mail: the timelines (all, by contact, by partner), the detail and
attachment content, for the endpoints. Each runs in the request's transaction, and each
read of content appends its access-audit row in that same transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.deps import Caller
from app.errors import NotFound
from app.matching import repository as matching_repository
from app.matching.normalize import candidate_partner_domains, normalize_address
from app.messages.repository import reads as repository
from app.messages.repository.reads import EmailSummary, TimelineFilter
from app.messages.sanitize import sanitize_html
from app.messages.schemas import (
    Address,
    AttachmentOut,
    EmailDetail,
    EmailListItem,
    EmailPage,
    ParticipantOut,
    Tracking,
)
from app.pagination import decode_cursor, encode_cursor
from app.platform.documents import DocumentStorage

logger = logging.getLogger(__name__)

Role = Literal["from", "to", "cc", "bcc"]


def _address(name: str | None, address: str | None) -> Address | None:
    if not address:
        return None
    return Address(name=name, address=address)


def _addresses(value: Any) -> list[Address]:
    if isinstance(value, str):
        value = json.loads(value)
    out = []
    for item in value or []:
        if isinstance(item, dict) and item.get("address"):
            out.append(Address(name=item.get("name"), address=item["address"]))
    return out


def _list_item(
    row: EmailSummary, contact_ids: list[UUID], partner_ids: list[UUID]
) -> dict[str, Any]:
    return {
        "id": row.id,
        "account_id": row.account_id,
        "direction": row.direction,
        "status": row.status,
        "subject": row.subject,
        "snippet": row.snippet,
        "from_": _address(row.from_name, row.from_address),
        "to": _addresses(row.to_recipients),
        "cc": _addresses(row.cc_recipients),
        "sent_at": row.sent_at,
        "received_at": row.received_at,
        "occurred_at": row.occurred_at,
        "thread_id": row.provider_thread_id,
        "contact_ids": contact_ids,
        "partner_ids": partner_ids,
        "has_attachments": row.has_attachments,
    }


async def _links_by_email(
    session: AsyncSession, email_ids: Sequence[UUID]
) -> dict[UUID, tuple[list[UUID], list[UUID]]]:
    links: dict[UUID, tuple[list[UUID], list[UUID]]] = {i: ([], []) for i in email_ids}
    for link in await repository.email_links(session, email_ids):
        contacts, partners = links[link.email_id]
        if link.contact_id is not None:
            contacts.append(link.contact_id)
        if link.partner_id is not None:
            partners.append(link.partner_id)
    return links


async def list_timeline(
    caller: Caller, f: TimelineFilter, *, cursor: str | None, limit: int
) -> EmailPage:
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.list_emails(
        caller.session,
        f,
        after=after,
        limit=limit + 1,
    )
    page, more = rows[:limit], len(rows) > limit
    links = await _links_by_email(caller.session, [r.id for r in page])
    items = [EmailListItem.model_validate(_list_item(r, *links[r.id])) for r in page]
    next_cursor = encode_cursor(page[-1].occurred_at, page[-1].id) if more else None
    await audit.record_list(caller, [r.id for r in page])
    return EmailPage(items=items, next_cursor=next_cursor)


async def contact_timeline(
    caller: Caller, contact_id: UUID, f: TimelineFilter, *, cursor: str | None, limit: int
) -> EmailPage:
    if not await repository.contact_exists(caller.session, contact_id):
        raise NotFound("No such contact")
    return await list_timeline(caller, f, cursor=cursor, limit=limit)


async def partner_timeline(
    caller: Caller, partner_id: UUID, f: TimelineFilter, *, cursor: str | None, limit: int
) -> EmailPage:
    if not await repository.partner_exists(caller.session, partner_id):
        raise NotFound("No such partner")
    return await list_timeline(caller, f, cursor=cursor, limit=limit)


async def email_detail(caller: Caller, email_id: UUID) -> EmailDetail:
    row = await repository.email_detail_row(caller.session, email_id)
    if row is None:
        raise NotFound("No such email")
    contact_ids, partner_ids = (await _links_by_email(caller.session, [email_id]))[email_id]

    # Which linked contact / partner each participant stands for.
    contact_by_address: dict[str, UUID] = {}
    partner_by_domain: dict[str, UUID] = {}
    for link in await matching_repository.link_details(caller.session, email_id):
        if link.contact_id is not None and link.key:
            contact_by_address.setdefault(link.key, link.contact_id)
        if link.partner_id is not None and link.key:
            partner_by_domain.setdefault(link.key, link.partner_id)

    def participant(role: Role, person: Address) -> ParticipantOut:
        lowered = person.address.strip().lower()
        normalized = normalize_address(lowered) or lowered
        contact = contact_by_address.get(normalized) or contact_by_address.get(lowered)
        partner = next(
            (
                partner_by_domain[d]
                for d in candidate_partner_domains(normalized)
                if d in partner_by_domain
            ),
            None,
        )
        return ParticipantOut(
            role=role,
            name=person.name,
            address=person.address,
            contact_id=contact,
            partner_id=partner,
        )

    item = _list_item(row, contact_ids, partner_ids)
    bcc = _addresses(row.bcc_recipients)
    people: list[tuple[Role, Address]] = [("from", item["from_"])] if item["from_"] else []
    people += [("to", p) for p in item["to"]] + [("cc", p) for p in item["cc"]]
    people += [("bcc", p) for p in bcc]
    attachments = await repository.attachments_of(caller.session, email_id)
    await audit.record_read(caller, email_id)
    return EmailDetail.model_validate(
        {
            **item,
            "bcc": bcc,
            "internet_message_id": row.internet_message_id,
            "in_reply_to": row.in_reply_to,
            "text_body": row.text_body,
            # Stored sanitised; sanitised again here so no writer can put unsafe HTML on
            # screen (rows also come from the send path and other modules).
            "html_body": sanitize_html(row.html_body) if row.html_body else None,
            "body_truncated": row.body_truncated,
            "participants": [participant(role, p) for role, p in people],
            "attachments": [
                AttachmentOut.model_validate(dataclasses.asdict(a)) for a in attachments
            ],
            "tracking": Tracking(
                opens=row.open_count,
                clicks=row.click_count,
                bounced=row.bounced_at is not None or row.status == "bounced",
                bounced_at=row.bounced_at,
                first_opened_at=row.first_opened_at,
                last_opened_at=row.last_opened_at,
            ),
        }
    )


@dataclass(frozen=True, slots=True)
class AttachmentContent:
    filename: str
    content_type: str
    content: bytes


async def attachment_content(
    caller: Caller, email_id: UUID, attachment_id: UUID, storage: DocumentStorage
) -> AttachmentContent:
    if not await repository.email_exists(caller.session, email_id):
        raise NotFound("No such email")
    row = await repository.attachment_document(caller.session, email_id, attachment_id)
    if row is None:
        raise NotFound("No such attachment, or its content is not stored")
    try:
        content = await asyncio.to_thread(storage.get, row.storage_key)
    except (OSError, ValueError):
        logger.warning("attachment content missing", extra={"email_id": str(email_id)})
        raise NotFound("The attachment's content is not available") from None
    await audit.record_download(caller, email_id, attachment_id)
    return AttachmentContent(
        filename=row.filename or row.document_filename or "attachment",
        content_type=row.content_type or "application/octet-stream",
        content=content,
    )
