"""The job queue's names and `enqueue`: what domain services import to queue work.

procrastinate on PostgreSQL (the database we already run and back up): it keeps jobs in
Postgres with real locks: `lock` serialises the jobs of one account across any number of
workers and machines, `queueing_lock` coalesces a request with one already waiting,
periodic tasks are deduplicated across workers, and it is maintained and async-native. Jobs
carry ids only; each reloads what it needs.

`enqueue` writes the job in the caller's own transaction, so a request or sync that rolls
back queues nothing. This module imports nothing of the domains: the procrastinate app and
its tasks are put together in `app.jobs.registry`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs.repository import JobToDefer, defer_job

QUEUE_SYNC = "sync"
QUEUE_PRIORITY = "priority"  # sends and push-triggered syncs: ahead of backfills
QUEUE_MAINTENANCE = "maintenance"


async def enqueue(
    session: AsyncSession,
    task_name: str,
    args: dict[str, Any],
    *,
    queue: str = QUEUE_SYNC,
    lock: str | None = None,
    queueing_lock: str | None = None,
    priority: int = 0,
    scheduled_at: datetime | None = None,
) -> int | None:
    """Queue a job in the session's transaction. Returns its id, or None when a job with the
    same queueing_lock is already waiting (coalesced)."""
    return await defer_job(
        session,
        JobToDefer(
            queue=queue,
            task_name=task_name,
            args=args,
            priority=priority,
            lock=lock,
            queueing_lock=queueing_lock,
            scheduled_at=scheduled_at,
        ),
    )
