"""Retention: what to purge and the receipt of each purge, in the caller's transaction.

A purge deletes an account's emails batch by batch (`purge_step`); the caller decides the
transactions (the daily job: one per batch; a disconnect: the request's). Deleting a
document row queues its file in the same transaction (sql/190); the file leaves the store
after the commit (`app.platform.documents.remove_deleted_files`), so a rolled-back purge
never leaves a document without its bytes, and a crash after the commit leaves the file
queued for the periodic removal job, not forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.retention import repository
from app.retention.repository import PurgeCounts, Receipt, Scope
from app.settings.service import get_module_settings

BATCH_EMAILS = 5_000
"""Emails per transaction: a big purge never holds one long transaction or lock set."""


async def retention_cutoff(session: AsyncSession, now: datetime) -> datetime | None:
    """Mail that occurred before this time is past the org's retention (None: kept)."""
    days = (await get_module_settings(session)).email_retention_days
    return None if days is None else now - timedelta(days=days)


async def accounts(session: AsyncSession) -> list[UUID]:
    return await repository.account_ids(session)


@dataclass
class AccountPurge:
    """One account's purge so far: its receipt and the total it records."""

    org_id: UUID
    account_id: UUID
    scope: Scope
    cutoff: datetime | None
    receipt_id: UUID | None = None
    counts: PurgeCounts = field(default_factory=PurgeCounts)


@dataclass(frozen=True, slots=True)
class Step:
    emails: int
    documents: int = 0
    """Documents deleted: their files were queued for removal (sql/190)."""

    @property
    def last(self) -> bool:
        return self.emails < BATCH_EMAILS


async def purge_step(session: AsyncSession, purge: AccountPurge) -> Step:
    """Delete one batch of the account's mail and bring its receipt up to date, in the same
    transaction, so the receipt always says what was committed. Retention remembers the
    purged provider ids (no sync fetches them again); a disconnect deletes the account
    afterwards, and its ids with it."""
    counts = await repository.delete_batch(
        session,
        purge.account_id,
        before=purge.cutoff,
        limit=BATCH_EMAILS,
        remember_ids=purge.scope == "retention",
    )
    if counts.emails == 0 and (purge.receipt_id is not None or purge.scope == "retention"):
        return Step(0)
    purge.counts = purge.counts + counts
    if purge.receipt_id is None:
        purge.receipt_id = await repository.insert_receipt(
            session, purge.org_id, purge.scope, purge.account_id, purge.cutoff, purge.counts
        )
    else:
        await repository.update_receipt(session, purge.receipt_id, purge.counts)
    return Step(counts.emails, counts.documents)


async def purge_mailbox(session: AsyncSession, org_id: UUID, account_id: UUID) -> None:
    """Delete all of an account's mail (a disconnect with purge) in the caller's
    transaction, batch by batch, and write a `disconnect` receipt (even when there was no
    mail)."""
    purge = AccountPurge(org_id, account_id, "disconnect", None)
    while not (await purge_step(session, purge)).last:
        pass


async def list_receipts(
    session: AsyncSession, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[Receipt]:
    return await repository.list_receipts(session, after=after, limit=limit)
