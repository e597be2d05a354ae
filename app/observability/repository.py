"""SQL of the scrape-time gauges: id/count-only functions readable without an org context."""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class SyncLag(NamedTuple):
    account_id: UUID
    provider: str
    status: str
    lag_seconds: float


class ReconcileAge(NamedTuple):
    account_id: UUID
    age_seconds: float


class QueueCount(NamedTuple):
    queue_name: str
    status: str
    total: int


class EmailCount(NamedTuple):
    direction: str
    status: str
    total: int


class TrackingCount(NamedTuple):
    type: str
    total: int


async def sync_lag(session: AsyncSession) -> list[SyncLag]:
    rows = await session.execute(text("SELECT * FROM ce_metrics_sync_lag()"))
    return [SyncLag(UUID(str(a)), p, s, float(lag)) for a, p, s, lag in rows]


async def queue_depth(session: AsyncSession) -> list[QueueCount]:
    rows = await session.execute(
        text(
            "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs "
            "WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
        )
    )
    return [QueueCount(q, s, int(n)) for q, s, n in rows]


async def email_counts(session: AsyncSession) -> list[EmailCount]:
    rows = await session.execute(text("SELECT * FROM ce_metrics_email_counts()"))
    return [EmailCount(d, s, int(n)) for d, s, n in rows]


async def tracking_counts(session: AsyncSession) -> list[TrackingCount]:
    rows = await session.execute(text("SELECT * FROM ce_metrics_tracking_counts()"))
    return [TrackingCount(t, int(n)) for t, n in rows]


async def reconcile_age(session: AsyncSession) -> list[ReconcileAge]:
    """Seconds since each mailbox's last verification (sql/110; verified mailboxes only)."""
    rows = await session.execute(text("SELECT * FROM ce_metrics_reconcile_age()"))
    return [ReconcileAge(UUID(str(a)), float(age)) for a, age in rows]
