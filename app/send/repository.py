"""SQL of the send path. RLS scopes every statement to the org of the transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

SendStatus = Literal["queued", "sent", "failed", "bounced"]
People = list[dict[str, Any]]
"""Recipients as stored (jsonb): `[{"name": ..., "address": ...}]`."""

SENDABLE_ACCOUNT_STATUSES = frozenset({"active", "syncing", "error"})
"""`syncing` is an active mailbox with a sync running; `error` is a failed *sync* (the
provider was down, say), which does not stop sending. `reauth_required` and
`disconnected` have no usable grant."""


async def contact_first_address(session: AsyncSession, contact_id: UUID) -> tuple[bool, str | None]:
    """(the contact exists, its first address or None)."""
    row = (
        await session.execute(
            text(
                "SELECT c.id, (SELECT ce.email FROM contact_emails ce "
                " WHERE ce.contact_id = c.id ORDER BY ce.created_at, ce.email LIMIT 1) AS email "
                "FROM contacts c WHERE c.id = :id"
            ),
            {"id": contact_id},
        )
    ).first()
    if row is None:
        return False, None
    return True, row.email


@dataclass(frozen=True, slots=True)
class Document:
    """A PF-11 document chosen as an attachment."""

    id: UUID
    filename: str | None
    content_type: str | None
    size: int
    storage_key: str | None


async def documents(session: AsyncSession, document_ids: Sequence[UUID]) -> list[Document]:
    """The PF-11 documents among `document_ids` (those of other orgs are invisible), in
    the order asked."""
    if not document_ids:
        return []
    rows = await session.execute(
        text(
            "SELECT d.id, d.filename, d.content_type, d.size, d.storage_key "
            "FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS w(id, n) "
            "JOIN documents d ON d.id = w.id ORDER BY w.n"
        ),
        {"ids": list(document_ids)},
    )
    return [Document(r.id, r.filename, r.content_type, int(r.size), r.storage_key) for r in rows]


@dataclass(frozen=True, slots=True)
class ProviderCopy:
    """Where a message is in a mailbox, in the provider's ids."""

    provider_message_id: str
    provider_thread_id: str | None


async def copy_in_account(
    session: AsyncSession, account_id: UUID, internet_message_id: str
) -> ProviderCopy | None:
    """The provider ids of a message in one mailbox, found by its Message-ID (a reply
    sent from another mailbox than the one the original was synced in)."""
    row = await session.execute(
        text(
            "SELECT provider_message_id, provider_thread_id FROM ce_emails "
            "WHERE account_id = :a AND internet_message_id = :imid "
            "AND provider_message_id IS NOT NULL ORDER BY created_at LIMIT 1"
        ),
        {"a": account_id, "imid": internet_message_id},
    )
    found = row.first()
    return ProviderCopy(found.provider_message_id, found.provider_thread_id) if found else None


_INSERT_COLUMNS = (
    "id", "org_id", "account_id", "internet_message_id", "in_reply_to", "direction", "status",
    "subject", "snippet", "from_address", "from_name", "to_recipients", "cc_recipients",
    "bcc_recipients", "text_body", "html_body", "has_attachments", "occurred_at",
    "sent_by_user_id", "idempotency_key", "participant_addresses", "participant_domains",
)  # fmt: skip
_CASTS = {
    "to_recipients": "CAST(:to_recipients AS jsonb)",
    "cc_recipients": "CAST(:cc_recipients AS jsonb)",
    "bcc_recipients": "CAST(:bcc_recipients AS jsonb)",
    "participant_addresses": "CAST(:participant_addresses AS text[])",
    "participant_domains": "CAST(:participant_domains AS text[])",
}
_INSERT = (
    f"INSERT INTO ce_emails ({', '.join(_INSERT_COLUMNS)}) VALUES ("
    + ", ".join(_CASTS.get(c, f":{c}") for c in _INSERT_COLUMNS)
    + ")"
)
_INSERT_IDEMPOTENT = text(
    f"{_INSERT} ON CONFLICT (org_id, sent_by_user_id, idempotency_key) "
    "WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
)
_INSERT_PLAIN = text(f"{_INSERT} RETURNING id")


async def insert_outbound(session: AsyncSession, values: dict[str, Any]) -> UUID | None:
    """The queued row of a send. With an idempotency key, None when a row with the same
    (org, user, key) exists: a concurrent insert of the same key waits for the other
    transaction on the unique index, then does nothing."""
    params = {c: values.get(c) for c in _INSERT_COLUMNS}
    for column in ("to_recipients", "cc_recipients", "bcc_recipients"):
        params[column] = json.dumps(values[column], ensure_ascii=False)
    statement = _INSERT_IDEMPOTENT if values.get("idempotency_key") else _INSERT_PLAIN
    found = (await session.execute(statement, params)).scalar_one_or_none()
    return UUID(str(found)) if found is not None else None


@dataclass(frozen=True, slots=True)
class EarlierSend:
    """The email an Idempotency-Key was first used for."""

    id: UUID
    status: SendStatus
    account_id: UUID
    subject: str | None
    to_recipients: People
    cc_recipients: People
    bcc_recipients: People


async def by_idempotency_key(session: AsyncSession, user_id: UUID, key: str) -> EarlierSend | None:
    row = await session.execute(
        text(
            "SELECT id, status, account_id, subject, to_recipients, cc_recipients, "
            "bcc_recipients FROM ce_emails_visible "
            "WHERE sent_by_user_id = :u AND idempotency_key = :k"
        ),
        {"u": user_id, "k": key},
    )
    found = row.first()
    if found is None:
        return None
    return EarlierSend(
        id=found.id,
        status=found.status,
        account_id=found.account_id,
        subject=found.subject,
        to_recipients=found.to_recipients or [],
        cc_recipients=found.cc_recipients or [],
        bcc_recipients=found.bcc_recipients or [],
    )


async def insert_attachments(
    session: AsyncSession, org_id: UUID, email_id: UUID, docs: Sequence[Document]
) -> None:
    if not docs:
        return
    await session.execute(
        text(
            "INSERT INTO ce_email_attachments (org_id, email_id, filename, content_type, size,"
            " is_inline, part_index, document_id) "
            "SELECT CAST(:org_id AS uuid), CAST(:email_id AS uuid), d.filename, d.content_type,"
            " d.size, false, d.n - 1, d.id "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[]), CAST(:types AS text[]),"
            " CAST(:sizes AS bigint[])) WITH ORDINALITY AS d(id, filename, content_type, size, n)"
        ),
        {
            "org_id": org_id,
            "email_id": email_id,
            "ids": [d.id for d in docs],
            "names": [d.filename for d in docs],
            "types": [d.content_type for d in docs],
            "sizes": [d.size for d in docs],
        },
    )


# --- the send job -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundEmail:
    """A send with its mailbox, as the send job reads it."""

    id: UUID
    account_id: UUID
    status: str
    provider_message_id: str | None
    provider_thread_id: str | None
    internet_message_id: str
    subject: str | None
    to_recipients: People
    cc_recipients: People
    bcc_recipients: People
    text_body: str | None
    html_body: str | None
    created_at: datetime
    occurred_at: datetime
    provider: str
    account_address: str
    account_name: str | None
    account_status: str


async def lock_outbound(session: AsyncSession, email_id: UUID) -> OutboundEmail | None:
    """The queued send with its account, locked for this transaction."""
    row = await session.execute(
        text(
            "SELECT e.id, e.account_id, e.status, e.provider_message_id,"
            " e.provider_thread_id, e.internet_message_id, c.subject,"
            " e.to_recipients, e.cc_recipients, e.bcc_recipients,"
            " c.text_body, c.html_body, e.created_at, e.occurred_at,"
            " a.provider, a.email_address AS account_address,"
            " a.display_name AS account_name, a.status AS account_status "
            # content through the view (ce_app cannot read it from ce_emails); the lock is
            # on the email's row itself
            "FROM ce_emails e JOIN ce_emails_visible c ON c.id = e.id "
            "JOIN ce_email_accounts a ON a.id = e.account_id "
            "WHERE e.id = :id AND e.direction = 'outbound' FOR UPDATE OF e"
        ),
        {"id": email_id},
    )
    found = row.mappings().first()
    if found is None:
        return None
    return OutboundEmail(
        **{
            **found,
            "to_recipients": found["to_recipients"] or [],
            "cc_recipients": found["cc_recipients"] or [],
            "bcc_recipients": found["bcc_recipients"] or [],
        }
    )


@dataclass(frozen=True, slots=True)
class AttachmentToSend:
    filename: str | None
    content_type: str | None
    storage_key: str | None
    """None when the document was deleted meanwhile."""


async def attachments_to_send(session: AsyncSession, email_id: UUID) -> list[AttachmentToSend]:
    """The documents chosen for a send, in the compose dialog's order. A document deleted
    meanwhile has `storage_key` NULL."""
    rows = await session.execute(
        text(
            "SELECT COALESCE(att.filename, d.filename) AS filename,"
            " COALESCE(d.content_type, att.content_type) AS content_type, d.storage_key "
            "FROM ce_email_attachments att LEFT JOIN documents d ON d.id = att.document_id "
            "WHERE att.email_id = :id ORDER BY att.part_index NULLS LAST, att.created_at, att.id"
        ),
        {"id": email_id},
    )
    return [AttachmentToSend(r.filename, r.content_type, r.storage_key) for r in rows]


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What a reply needs of the email it answers."""

    account_id: UUID
    internet_message_id: str | None
    in_reply_to: str | None
    provider_message_id: str | None
    provider_thread_id: str | None


async def reply_context(session: AsyncSession, email_id: UUID) -> ReplyContext | None:
    row = await session.execute(
        text(
            "SELECT account_id, internet_message_id, in_reply_to, provider_message_id,"
            " provider_thread_id FROM ce_emails WHERE id = :id"
        ),
        {"id": email_id},
    )
    found = row.first()
    if found is None:
        return None
    return ReplyContext(
        account_id=found.account_id,
        internet_message_id=found.internet_message_id,
        in_reply_to=found.in_reply_to,
        provider_message_id=found.provider_message_id,
        provider_thread_id=found.provider_thread_id,
    )


async def mark_sent(
    session: AsyncSession,
    *,
    email_id: UUID,
    account_id: UUID,
    provider_message_id: str,
    provider_thread_id: str | None,
    internet_message_id: str | None,
    sent_at: datetime,
) -> datetime:
    """Record the provider's ids on our row. A copy the Sent-folder sync stored as its own
    row in the meantime (Graph gives the sent copy a Message-ID of its own, so the sync
    cannot recognise it before this commit) is removed first: ours is the row that keeps
    the sender, the idempotency key and the links. Returns the row's occurred_at."""
    await session.execute(
        text(
            "DELETE FROM ce_emails WHERE account_id = :a AND provider_message_id = :pid "
            "AND id <> :id"
        ),
        {"a": account_id, "pid": provider_message_id, "id": email_id},
    )
    row = await session.execute(
        text(
            "UPDATE ce_emails SET"
            " status = CASE WHEN status = 'bounced' THEN status ELSE 'sent' END,"
            " send_error = NULL,"
            " provider_message_id = :pid,"
            " provider_thread_id = COALESCE(:tid, provider_thread_id),"
            " internet_message_id = COALESCE(:imid, internet_message_id),"
            " folder = COALESCE(folder, 'sent'),"
            " occurred_at = CASE WHEN sent_at IS NULL THEN :sent_at ELSE occurred_at END,"
            " sent_at = COALESCE(sent_at, :sent_at),"
            " updated_at = now() "
            "WHERE id = :id RETURNING occurred_at"
        ),
        {
            "id": email_id,
            "pid": provider_message_id,
            "tid": provider_thread_id,
            "imid": internet_message_id,
            "sent_at": sent_at,
        },
    )
    occurred_at: datetime = row.scalar_one()
    return occurred_at


async def mark_failed(session: AsyncSession, email_id: UUID, error: str) -> None:
    await session.execute(
        text(
            "UPDATE ce_emails SET status = 'failed', send_error = :error, updated_at = now() "
            "WHERE id = :id AND status = 'queued'"
        ),
        {"id": email_id, "error": error},
    )
