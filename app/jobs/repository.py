"""SQL of the job queue: procrastinate's own defer function, called through our session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

_DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority, :lock, "
    ":queueing_lock, CAST(:args AS jsonb), :scheduled_at)::procrastinate_job_to_defer_v1]))"
)


@dataclass(frozen=True)
class JobToDefer:
    queue: str
    task_name: str
    args: dict[str, Any]
    priority: int = 0
    lock: str | None = None
    queueing_lock: str | None = None
    scheduled_at: datetime | None = None


async def defer_job(session: AsyncSession, job: JobToDefer) -> int | None:
    """Insert the job in the session's transaction. Returns its id, or None when a job with
    the same queueing_lock is already waiting. A savepoint keeps the caller's transaction
    usable after that (expected) unique violation."""
    params = {
        "queue": job.queue,
        "task": job.task_name,
        "priority": job.priority,
        "lock": job.lock,
        "queueing_lock": job.queueing_lock,
        "args": json.dumps(job.args),
        "scheduled_at": job.scheduled_at,
    }
    try:
        async with session.begin_nested():
            return int((await session.execute(_DEFER, params)).scalar_one())
    except IntegrityError as exc:
        if "procrastinate_jobs_queueing_lock_idx" in str(exc.orig):
            return None
        raise
