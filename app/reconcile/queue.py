"""Queueing a reconciliation, and keeping it behind new mail (imported by sync too, so it
depends on the job queue and the reconcile repository only)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs.queue import enqueue
from app.reconcile import repository

RECONCILE_TASK = "ce:reconcile_account"
# Below polling (0) and push-triggered syncs (10) on the sync queue; sends have their own
# queue. A reconciliation waits for new mail and sends, never the other way round.
RECONCILE_PRIORITY = -10


def _queueing_lock(account_id: UUID) -> str:
    return f"reconcile:{account_id}"


async def enqueue_reconcile(
    session: AsyncSession,
    org_id: UUID,
    account_id: UUID,
    *,
    scheduled_at: datetime | None = None,
) -> int | None:
    """Queue a reconciliation of the account in the caller's transaction; None when one
    is already waiting (coalesced). It holds the account's sync lock while it runs."""
    return await enqueue(
        session,
        RECONCILE_TASK,
        {"org_id": str(org_id), "account_id": str(account_id)},
        lock=f"sync:{account_id}",
        queueing_lock=_queueing_lock(account_id),
        priority=RECONCILE_PRIORITY,
        scheduled_at=scheduled_at,
    )


async def requeue_behind_new_mail(session: AsyncSession, org_id: UUID, account_id: UUID) -> None:
    """A reconciliation waiting for the account goes to the back of the account's jobs.

    Jobs under one lock run in the order they were queued, so a waiting reconciliation
    would hold back the sync of new mail queued after it until the queue had nothing of
    higher priority than a reconciliation. Queued again, it runs after that sync: the new
    mail comes first, and the reconciliation then counts as missing only what the change
    feed really lost, not mail that simply had not been synced yet."""
    waiting = await repository.take_waiting_job(session, _queueing_lock(account_id))
    if waiting is not None:
        await enqueue_reconcile(session, org_id, account_id, scheduled_at=waiting.scheduled_at)
