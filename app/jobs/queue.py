"""The job queue: procrastinate on PostgreSQL (the database we already run and back up).

procrastinate because it keeps jobs in Postgres with real locks: `lock` serialises the jobs
of one account across any number of workers and machines, `queueing_lock` coalesces a
request with one already waiting, periodic tasks are deduplicated across workers, and it is
maintained and async-native. Jobs carry ids only; each reloads what it needs.

`enqueue` writes the job in the caller's own transaction (procrastinate's defer function,
called through our session), so a request or sync that rolls back queues nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import procrastinate
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.urls import app_url, libpq_url

QUEUE_SYNC = "sync"
QUEUE_PRIORITY = "priority"  # sends and push-triggered syncs: ahead of backfills
QUEUE_MAINTENANCE = "maintenance"

_DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority, :lock, "
    ":queueing_lock, CAST(:args AS jsonb), :scheduled_at)::procrastinate_job_to_defer_v1]))"
)


def create_job_app(settings: Settings) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(app_url(settings, "psycopg")),
        kwargs={"application_name": "ce-email-jobs"},
        min_size=1,
        max_size=max(2, settings.worker_concurrency + 2),
    )
    return procrastinate.App(connector=connector)


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
    params = {
        "queue": queue,
        "task": task_name,
        "priority": priority,
        "lock": lock,
        "queueing_lock": queueing_lock,
        "args": json.dumps(args),
        "scheduled_at": scheduled_at,
    }
    try:
        async with session.begin_nested():
            return int((await session.execute(_DEFER, params)).scalar_one())
    except IntegrityError as exc:
        if "procrastinate_jobs_queueing_lock_idx" in str(exc.orig):
            return None
        raise


_JOB_APPS: dict[str, procrastinate.App] = {}


def job_app_with_tasks(settings: Settings) -> procrastinate.App:
    """One job app per database per process: adding the blueprint's tasks renames them in
    place (the namespace prefix), so it must happen once."""
    from app.send.jobs import blueprint as send_blueprint
    from app.sync.jobs import blueprint as sync_blueprint

    key = libpq_url(app_url(settings, "psycopg"))
    if key not in _JOB_APPS:
        app = create_job_app(settings)
        app.add_tasks_from(sync_blueprint, namespace="ce")
        app.add_tasks_from(send_blueprint, namespace="ce")
        _JOB_APPS[key] = app
    return _JOB_APPS[key]
