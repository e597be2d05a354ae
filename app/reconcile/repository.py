"""SQL of reconciliation: the last outcome per account, due accounts, the retention hook."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class ReconcileOutcome(NamedTuple):
    """What the last reconciliation of an account found (all None before the first)."""

    verified_at: datetime | None
    provider_count: int | None
    stored_count: int | None
    missing_fetched: int | None
    stale_removed: int | None


class DueAccount(NamedTuple):
    org_id: UUID
    account_id: UUID


async def record_outcome(
    session: AsyncSession, account_id: UUID, outcome: ReconcileOutcome
) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET reconcile_verified_at = :verified_at, "
            "reconcile_provider_count = :provider_count, "
            "reconcile_stored_count = :stored_count, "
            "reconcile_missing_fetched = :missing_fetched, "
            "reconcile_stale_removed = :stale_removed WHERE id = :id"
        ),
        {**outcome._asdict(), "id": account_id},
    )


async def last_outcome(session: AsyncSession, account_id: UUID) -> ReconcileOutcome | None:
    row = (
        await session.execute(
            text(
                "SELECT reconcile_verified_at, reconcile_provider_count, reconcile_stored_count, "
                "reconcile_missing_fetched, reconcile_stale_removed "
                "FROM ce_email_accounts WHERE id = :id"
            ),
            {"id": account_id},
        )
    ).first()
    return None if row is None else ReconcileOutcome(*row)


async def accounts_due(session: AsyncSession, limit: int) -> list[DueAccount]:
    """Accounts of every org whose last verification is older than their org's
    `email_reconcile_interval_hours` (system role; sql/110)."""
    rows = await session.execute(
        text("SELECT org_id, account_id FROM ce_accounts_due_for_reconcile(:n)"), {"n": limit}
    )
    return [DueAccount(*row) for row in rows]


class WaitingJob(NamedTuple):
    scheduled_at: datetime | None


async def take_waiting_job(session: AsyncSession, queueing_lock: str) -> WaitingJob | None:
    """Remove the job waiting (not yet running) under `queueing_lock`, if any."""
    row = (
        await session.execute(
            text(
                "DELETE FROM procrastinate_jobs WHERE queueing_lock = :lock AND status = 'todo' "
                "RETURNING scheduled_at"
            ),
            {"lock": queueing_lock},
        )
    ).first()
    return None if row is None else WaitingJob(row[0])


async def purged_provider_ids(session: AsyncSession, account_id: UUID, since: datetime) -> set[str]:
    """The provider ids of this account's mail since `since` that retention purged
    (`ce_email_purged_ids`), so that reconciliation never imports them again."""
    rows = await session.execute(
        text(
            "SELECT provider_message_id FROM ce_email_purged_ids "
            "WHERE account_id = :a AND occurred_at >= :since"
        ),
        {"a": account_id, "since": since},
    )
    return set(rows.scalars())
