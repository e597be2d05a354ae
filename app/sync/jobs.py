"""Sync jobs and their periodic drivers (procrastinate tasks; args are ids only).

The worker process sets `RUNTIME.ctx` before it runs jobs; jobs reload what they need in
their own org transactions.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

import procrastinate

from app.db.rls import org_transaction, system_transaction
from app.jobs.queue import QUEUE_MAINTENANCE
from app.jobs.retry import RetryWhenDatabaseUnavailable
from app.jobs.runtime import RUNTIME
from app.logs import job_id_var
from app.sync import repository
from app.sync.service import enqueue_push_renewal, enqueue_sync, renew_push, run_sync

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()
STALE_AFTER = timedelta(minutes=10)
BATCH = 500


@blueprint.task(
    name="sync_account", queue="sync", pass_context=True, retry=RetryWhenDatabaseUnavailable()
)
async def sync_account(
    context: procrastinate.JobContext, org_id: str, account_id: str, reason: str = "poll"
) -> None:
    token = job_id_var.set(str(context.job.id) if context.job else None)
    try:
        await run_sync(RUNTIME.require(), UUID(org_id), UUID(account_id), reason=reason)
    finally:
        job_id_var.reset(token)


@blueprint.task(name="renew_push", queue=QUEUE_MAINTENANCE)
async def renew_push_channel(org_id: str, account_id: str, provider: str) -> None:
    await renew_push(RUNTIME.require(), UUID(org_id), UUID(account_id), provider)


@blueprint.periodic(cron="* * * * *", periodic_id="poll")
@blueprint.task(name="poll_due_accounts", queue=QUEUE_MAINTENANCE, queueing_lock="poll")
async def poll_due_accounts(timestamp: int) -> None:
    """Polling fallback: every account whose interval has passed gets a (coalesced) sync.
    The interval follows the account's push health (sql/120 `ce_poll_interval`). Runs each
    minute; with a `poll_tick_seconds` below 60 it looks again every tick within it."""
    settings = RUNTIME.require().settings
    tick = max(1, settings.poll_tick_seconds)
    passes = max(1, 60 // tick)
    for number in range(passes):
        if number:
            await asyncio.sleep(tick)
        await _poll_once(settings.poll_min_interval_seconds)


async def _poll_once(min_interval_seconds: int) -> None:
    ctx = RUNTIME.require()
    async with system_transaction(ctx.engine) as session:
        due = await repository.accounts_due_for_sync(session, BATCH, min_interval_seconds)
    for org_id, account_id in due:
        async with org_transaction(ctx.engine, org_id) as session:
            await enqueue_sync(session, org_id, account_id, reason="poll")
    if due:
        logger.info("polling queued syncs", extra={"count": len(due)})


@blueprint.periodic(cron="*/10 * * * *", periodic_id="renew")
@blueprint.task(name="renew_expiring_push", queue=QUEUE_MAINTENANCE, queueing_lock="renew")
async def renew_expiring_push(timestamp: int) -> None:
    """Renew push channels before they expire (from the expiry the provider returned)."""
    ctx = RUNTIME.require()
    async with system_transaction(ctx.engine) as session:
        for org_id, account_id, provider in await repository.accounts_push_renewal_due(
            session, BATCH
        ):
            await enqueue_push_renewal(session, org_id, account_id, provider)


@blueprint.periodic(cron="* * * * *", periodic_id="sweep")
@blueprint.task(name="sweep_stale_syncs", queue=QUEUE_MAINTENANCE, queueing_lock="sweep")
async def sweep_stale_syncs(timestamp: int) -> None:
    """A sync running far past its last heartbeat lost its worker: fail it and queue it
    again (the cursor was never advanced past what was stored, so nothing is lost)."""
    ctx = RUNTIME.require()
    before = datetime.now(UTC) - STALE_AFTER
    async with system_transaction(ctx.engine) as session:
        rows = await repository.stale_syncs(session, before, 100)
    for org_id, account_id in rows:
        async with org_transaction(ctx.engine, org_id) as session:
            await repository.fail_run(
                session, account_id, "The sync stopped responding and was restarted.", state="idle"
            )
            await enqueue_sync(session, org_id, account_id, reason="stale")
    if rows:
        logger.warning("stale syncs restarted", extra={"count": len(rows)})
