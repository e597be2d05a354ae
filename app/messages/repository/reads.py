"""SQL that reads stored emails: the timeline, the detail, links and attachments.

No statement here says who may see what: row-level security does (sql/150_visibility.sql).
Rows of a mailbox the viewer may not see are not returned at all; content is read from the
view `ce_emails_visible`, whose subject, snippet and bodies are null where the mailbox's
level hides them from the viewer (ce_app cannot read those columns of ce_emails).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class EmailSummary:
    """A timeline row (the `LIST_COLUMNS`)."""

    id: UUID
    account_id: UUID
    direction: str
    status: str
    subject: str | None
    snippet: str | None
    from_address: str | None
    from_name: str | None
    to_recipients: Any
    """JSON list of {name, address} (jsonb)."""
    cc_recipients: Any
    sent_at: datetime | None
    received_at: datetime | None
    occurred_at: datetime
    has_attachments: bool
    provider_thread_id: str | None
    internet_message_id: str | None


@dataclass(frozen=True, slots=True)
class EmailDetailRow(EmailSummary):
    """A detail row (the `DETAIL_COLUMNS`)."""

    bcc_recipients: Any
    text_body: str | None
    html_body: str | None
    body_truncated: bool
    in_reply_to: str | None
    open_count: int
    click_count: int
    first_opened_at: datetime | None
    last_opened_at: datetime | None
    bounced_at: datetime | None


LIST_COLUMNS = (
    "e.id, e.account_id, e.direction, e.status, e.subject, e.snippet, e.from_address, "
    "e.from_name, e.to_recipients, e.cc_recipients, e.sent_at, e.received_at, e.occurred_at, "
    "e.has_attachments, e.provider_thread_id, e.internet_message_id"
)
DETAIL_COLUMNS = (
    f"{LIST_COLUMNS}, e.bcc_recipients, e.text_body, e.html_body, e.body_truncated, "
    "e.in_reply_to, e.open_count, e.click_count, e.first_opened_at, e.last_opened_at, "
    "e.bounced_at"
)


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    contact_id: UUID | None = None
    partner_id: UUID | None = None
    account_id: UUID | None = None
    direction: str | None = None


def _conditions(alias: str, f: TimelineFilter, skip_link: str | None) -> list[str]:
    conditions: list[str] = []
    if f.account_id is not None:
        conditions.append(f"{alias}.account_id = :account_id")
    if f.direction is not None:
        conditions.append(f"{alias}.direction = :direction")
    if f.contact_id is not None and skip_link != "contact":
        conditions.append(
            f"EXISTS (SELECT 1 FROM ce_email_links lc WHERE lc.email_id = {alias}.id "
            f"AND lc.contact_id = :contact_id)"
        )
    if f.partner_id is not None and skip_link != "partner":
        conditions.append(
            f"EXISTS (SELECT 1 FROM ce_email_links lp WHERE lp.email_id = {alias}.id "
            f"AND lp.partner_id = :partner_id)"
        )
    return conditions


async def list_emails(
    session: AsyncSession,
    f: TimelineFilter,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[EmailSummary]:
    """One timeline page, newest first, keyset on (occurred_at, id).

    The same message in several mailboxes of the org (one internet message id) shows once:
    the earliest visible copy that passes the filters stands for all of them. A contact or
    partner timeline walks that contact's / partner's links (an index range scan)."""
    if f.contact_id is not None:
        source = (
            "ce_email_links d JOIN ce_emails_visible e ON e.id = d.email_id "
            "AND d.contact_id = :contact_id"
        )
        order_time, order_id, skip = "d.occurred_at", "d.email_id", "contact"
    elif f.partner_id is not None:
        source = (
            "ce_email_links d JOIN ce_emails_visible e ON e.id = d.email_id "
            "AND d.partner_id = :partner_id"
        )
        order_time, order_id, skip = "d.occurred_at", "d.email_id", "partner"
    else:
        source = "ce_emails_visible e"
        order_time, order_id, skip = "e.occurred_at", "e.id", None
    conditions = _conditions("e", f, skip)
    duplicate_conditions = "".join(f" AND {c}" for c in _conditions("e2", f, None))
    conditions.append(
        "NOT (e.internet_message_id IS NOT NULL AND EXISTS ("
        " SELECT 1 FROM ce_emails e2"
        " WHERE e2.internet_message_id = e.internet_message_id AND e2.id <> e.id"
        f"{duplicate_conditions}"
        " AND (e2.occurred_at, e2.created_at, e2.id) < (e.occurred_at, e.created_at, e.id)))"
    )
    params: dict[str, Any] = {
        "contact_id": f.contact_id,
        "partner_id": f.partner_id,
        "account_id": f.account_id,
        "direction": f.direction,
        "limit": limit,
    }
    if after is not None:
        conditions.append(f"({order_time}, {order_id}) < (:after_time, :after_id)")
        params["after_time"], params["after_id"] = after
    sql = (
        f"SELECT {LIST_COLUMNS} FROM {source} "
        f"WHERE {' AND '.join(conditions)} "
        f"ORDER BY {order_time} DESC, {order_id} DESC LIMIT :limit"
    )
    used = {k: v for k, v in params.items() if f":{k}" in sql}
    return [EmailSummary(*row) for row in await session.execute(text(sql), used)]


@dataclass(frozen=True, slots=True)
class EmailLink:
    email_id: UUID
    contact_id: UUID | None
    partner_id: UUID | None


async def email_links(session: AsyncSession, email_ids: Sequence[UUID]) -> list[EmailLink]:
    """The contact and partner links of the emails, oldest first."""
    if not email_ids:
        return []
    rows = await session.execute(
        text(
            "SELECT email_id, contact_id, partner_id FROM ce_email_links "
            "WHERE email_id = ANY(CAST(:ids AS uuid[])) ORDER BY created_at, id"
        ),
        {"ids": list(email_ids)},
    )
    return [EmailLink(*row) for row in rows]


async def email_detail_row(session: AsyncSession, email_id: UUID) -> EmailDetailRow | None:
    """The email when the viewer may see it at all (RLS), its content as far as allowed."""
    result = await session.execute(
        text(f"SELECT {DETAIL_COLUMNS} FROM ce_emails_visible e WHERE e.id = :id"), {"id": email_id}
    )
    row = result.first()
    return EmailDetailRow(*row) if row is not None else None


async def email_exists(session: AsyncSession, email_id: UUID) -> bool:
    """Whether the email exists for the viewer (RLS hides a mailbox they may not see)."""
    row = await session.execute(text("SELECT 1 FROM ce_emails WHERE id = :id"), {"id": email_id})
    return row.first() is not None


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    id: UUID
    filename: str | None
    content_type: str
    size: int
    is_inline: bool
    content_id: str | None
    document_id: UUID | None


async def attachments_of(session: AsyncSession, email_id: UUID) -> list[AttachmentRow]:
    rows = await session.execute(
        text(
            "SELECT id, filename, content_type, size, is_inline, content_id, document_id "
            "FROM ce_email_attachments WHERE email_id = :id "
            "ORDER BY part_index NULLS LAST, created_at, id"
        ),
        {"id": email_id},
    )
    return [AttachmentRow(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class AttachmentDocument:
    """An attachment whose bytes are stored as a PF-11 document."""

    filename: str | None
    document_filename: str | None
    content_type: str | None
    size: int
    storage_key: str


async def attachment_document(
    session: AsyncSession, email_id: UUID, attachment_id: UUID
) -> AttachmentDocument | None:
    result = await session.execute(
        text(
            "SELECT att.filename, d.filename AS document_filename, d.content_type, d.size, "
            "d.storage_key FROM ce_email_attachments att "
            "JOIN documents d ON d.id = att.document_id "
            "WHERE att.id = :attachment_id AND att.email_id = :email_id"
        ),
        {"attachment_id": attachment_id, "email_id": email_id},
    )
    row = result.first()
    return AttachmentDocument(*row) if row is not None else None


async def contact_exists(session: AsyncSession, contact_id: UUID) -> bool:
    row = await session.execute(text("SELECT 1 FROM contacts WHERE id = :id"), {"id": contact_id})
    return row.first() is not None


async def partner_exists(session: AsyncSession, partner_id: UUID) -> bool:
    row = await session.execute(text("SELECT 1 FROM partners WHERE id = :id"), {"id": partner_id})
    return row.first() is not None
