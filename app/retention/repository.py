"""SQL of retention: find what to purge, delete it in bounded batches, keep receipts.

RLS scopes every statement to the transaction's org. Deleting an email cascades to its
links, activities, participants, attachments, tracking events and tracked links (foreign
keys ON DELETE CASCADE); they are counted just before, in the same transaction, so a
receipt says what went. Documents are not cascaded: only those that sync created are
deleted, by `delete_batch` itself (see `_DELETE_DOCUMENTS`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

Scope = Literal["retention", "disconnect"]


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """Rows deleted, per table (documents: PF-11 rows, their files with them)."""

    emails: int = 0
    links: int = 0
    activities: int = 0
    participants: int = 0
    attachments: int = 0
    tracking_events: int = 0
    tracked_links: int = 0
    documents: int = 0

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        mine, theirs = asdict(self), asdict(other)
        return PurgeCounts(**{name: mine[name] + theirs[name] for name in mine})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Receipt:
    id: UUID
    scope: Scope
    account_id: UUID | None
    counts: dict[str, int]
    cutoff: datetime | None
    created_at: datetime


async def orgs_with_retention(session: AsyncSession, limit: int) -> list[UUID]:
    """Orgs that set email_retention_days (no org context needed: sql/140)."""
    rows = await session.execute(
        text("SELECT org_id FROM ce_orgs_with_email_retention(:n)"), {"n": limit}
    )
    return list(rows.scalars())


async def account_ids(session: AsyncSession) -> list[UUID]:
    rows = await session.execute(text("SELECT id FROM ce_email_accounts ORDER BY id"))
    return list(rows.scalars())


_COUNT_CHILDREN = text(
    "SELECT"
    " (SELECT count(*) FROM ce_email_links WHERE email_id = ANY(CAST(:ids AS uuid[]))),"
    " (SELECT count(*) FROM activities WHERE source_email_id = ANY(CAST(:ids AS uuid[]))),"
    " (SELECT count(*) FROM ce_email_participants WHERE email_id = ANY(CAST(:ids AS uuid[]))),"
    " (SELECT count(*) FROM ce_email_attachments WHERE email_id = ANY(CAST(:ids AS uuid[]))),"
    " (SELECT count(*) FROM ce_email_tracking_events"
    "   WHERE email_id = ANY(CAST(:ids AS uuid[]))),"
    " (SELECT count(*) FROM ce_email_tracked_links WHERE email_id = ANY(CAST(:ids AS uuid[])))"
)

# The PF-11 documents that sync created for these emails' attachments. Told apart from a
# user's documents three ways, all required: sync writes documents with no creator
# (created_by NULL; an upload through PF-11 names its user), it attaches them to mail it
# imported (sent_by_user_id NULL; a send of ours names its sender and attaches documents
# the user chose), and one document serves one attachment. A document some email outside
# the batch still names is kept.
_DELETE_DOCUMENTS = text(
    "WITH doomed AS ("
    " SELECT DISTINCT att.document_id AS id"
    " FROM ce_email_attachments att"
    " JOIN ce_emails e ON e.org_id = att.org_id AND e.id = att.email_id"
    " WHERE att.email_id = ANY(CAST(:ids AS uuid[])) AND att.document_id IS NOT NULL"
    "   AND e.sent_by_user_id IS NULL) "
    "DELETE FROM documents d USING doomed "
    "WHERE d.id = doomed.id AND d.created_by IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM ce_email_attachments other"
    "   WHERE other.org_id = d.org_id AND other.document_id = d.id"
    "     AND other.email_id <> ALL(CAST(:ids AS uuid[]))) "
    "RETURNING 1"
)


async def delete_batch(
    session: AsyncSession,
    account_id: UUID,
    *,
    before: datetime | None,
    limit: int,
    remember_ids: bool,
) -> PurgeCounts:
    """Delete up to `limit` of the account's emails (those that occurred before `before`;
    all when it is None), oldest first, with everything that hangs on them. With
    `remember_ids`, their provider ids are kept so no sync fetches them again."""
    condition = "" if before is None else " AND occurred_at < :before"
    params: dict[str, object] = {"a": account_id, "n": limit}
    if before is not None:
        params["before"] = before
    batch = (
        await session.execute(
            text(
                "SELECT id, provider_message_id, occurred_at FROM ce_emails "
                f"WHERE account_id = :a{condition} ORDER BY occurred_at, id LIMIT :n"
            ),
            params,
        )
    ).all()
    if not batch:
        return PurgeCounts()
    ids = [row[0] for row in batch]
    links, activities, participants, attachments, events, tracked = (
        await session.execute(_COUNT_CHILDREN, {"ids": ids})
    ).one()
    # each deleted document queues its file for removal (sql/190)
    documents = len((await session.execute(_DELETE_DOCUMENTS, {"ids": ids})).all())
    if remember_ids:
        await session.execute(
            text(
                "INSERT INTO ce_email_purged_ids"
                " (org_id, account_id, provider_message_id, occurred_at) "
                "SELECT NULLIF(current_setting('app.org_id', true), '')::uuid, :a, p.id, p.at "
                "FROM unnest(CAST(:pids AS text[]), CAST(:ats AS timestamptz[])) AS p(id, at) "
                "WHERE p.id IS NOT NULL ON CONFLICT DO NOTHING"
            ),
            {"a": account_id, "pids": [row[1] for row in batch], "ats": [row[2] for row in batch]},
        )
    emails = (
        await session.execute(
            text(
                "WITH gone AS (DELETE FROM ce_emails WHERE account_id = :a"
                " AND id = ANY(CAST(:ids AS uuid[])) RETURNING 1) SELECT count(*) FROM gone"
            ),
            {"a": account_id, "ids": ids},
        )
    ).scalar_one()
    return PurgeCounts(
        emails=int(emails),
        links=int(links),
        activities=int(activities),
        participants=int(participants),
        attachments=int(attachments),
        tracking_events=int(events),
        tracked_links=int(tracked),
        documents=documents,
    )


async def insert_receipt(
    session: AsyncSession,
    org_id: UUID,
    scope: Scope,
    account_id: UUID,
    cutoff: datetime | None,
    counts: PurgeCounts,
) -> UUID:
    receipt_id = (
        await session.execute(
            text(
                "INSERT INTO ce_email_purges (org_id, scope, account_id, counts, cutoff) "
                "VALUES (:org_id, :scope, :account_id, CAST(:counts AS jsonb), :cutoff) "
                "RETURNING id"
            ),
            {
                "org_id": org_id,
                "scope": scope,
                "account_id": account_id,
                "counts": json.dumps(counts.as_dict()),
                "cutoff": cutoff,
            },
        )
    ).scalar_one()
    return UUID(str(receipt_id))


async def update_receipt(session: AsyncSession, receipt_id: UUID, counts: PurgeCounts) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_purges SET counts = CAST(:counts AS jsonb), updated_at = now() "
            "WHERE id = :id"
        ),
        {"id": receipt_id, "counts": json.dumps(counts.as_dict())},
    )


async def list_receipts(
    session: AsyncSession, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[Receipt]:
    """Newest first, keyset on (created_at, id)."""
    condition = "" if after is None else "WHERE (created_at, id) < (:after_time, :after_id) "
    params: dict[str, object] = {"limit": limit}
    if after is not None:
        params["after_time"], params["after_id"] = after
    rows = await session.execute(
        text(
            "SELECT id, scope, account_id, counts, cutoff, created_at FROM ce_email_purges "
            f"{condition}ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    )
    return [Receipt(*row) for row in rows]
