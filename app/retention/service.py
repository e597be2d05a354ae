"""Retention: what to purge and the receipt of each purge, in the caller's transaction.

A purge deletes an account's emails batch by batch (`purge_step`); the caller decides the
transactions (the daily job: one per batch; a disconnect: the request's). Files of deleted
documents leave the store only after the rows' transaction committed (`remove_files`), so
a rolled-back purge never leaves a document without its bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.documents import DocumentStorage
from app.retention import repository
from app.retention.repository import PurgeCounts, Receipt, Scope
from app.settings.service import get_module_settings

logger = logging.getLogger(__name__)

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
    storage_keys: list[str]

    @property
    def last(self) -> bool:
        return self.emails < BATCH_EMAILS


async def purge_step(session: AsyncSession, purge: AccountPurge) -> Step:
    """Delete one batch of the account's mail and bring its receipt up to date, in the same
    transaction, so the receipt always says what was committed. Retention remembers the
    purged provider ids (no sync fetches them again); a disconnect deletes the account
    afterwards, and its ids with it."""
    outcome = await repository.delete_batch(
        session,
        purge.account_id,
        before=purge.cutoff,
        limit=BATCH_EMAILS,
        remember_ids=purge.scope == "retention",
    )
    if outcome.counts.emails == 0 and (purge.receipt_id is not None or purge.scope == "retention"):
        return Step(0, [])
    purge.counts = purge.counts + outcome.counts
    if purge.receipt_id is None:
        purge.receipt_id = await repository.insert_receipt(
            session, purge.org_id, purge.scope, purge.account_id, purge.cutoff, purge.counts
        )
    else:
        await repository.update_receipt(session, purge.receipt_id, purge.counts)
    return Step(outcome.counts.emails, outcome.storage_keys)


@dataclass(frozen=True, slots=True)
class MailboxPurge:
    receipt_id: UUID | None
    counts: PurgeCounts
    storage_keys: list[str]
    """Files to remove from the store once the caller's transaction committed."""


async def purge_mailbox(session: AsyncSession, org_id: UUID, account_id: UUID) -> MailboxPurge:
    """Delete all of an account's mail (a disconnect with purge) in the caller's
    transaction, batch by batch, and write a `disconnect` receipt (even when there was no
    mail)."""
    purge = AccountPurge(org_id, account_id, "disconnect", None)
    keys: list[str] = []
    while True:
        step = await purge_step(session, purge)
        keys.extend(step.storage_keys)
        if step.last:
            break
    return MailboxPurge(purge.receipt_id, purge.counts, keys)


async def remove_files(storage: DocumentStorage, storage_keys: Sequence[str]) -> int:
    """Delete the files of purged documents from the store (after their rows' commit).
    A file that cannot be deleted is logged by count and left; its row is gone already."""
    if not storage_keys:
        return 0

    def delete_all() -> int:
        failed = 0
        for key in storage_keys:
            try:
                storage.delete(key)
            except (OSError, ValueError):
                failed += 1
        return failed

    failed = await asyncio.to_thread(delete_all)
    if failed:
        logger.warning("purged document files not deleted", extra={"count": failed})
    return len(storage_keys) - failed


async def list_receipts(
    session: AsyncSession, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[Receipt]:
    return await repository.list_receipts(session, after=after, limit=limit)
