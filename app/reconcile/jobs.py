"""Reconciliation jobs: one account's (queued by the API or the periodic driver), and the
periodic driver that queues the accounts due (args are ids only)."""

from __future__ import annotations

import logging
from uuid import UUID

import procrastinate

from app.db.rls import org_transaction, system_transaction
from app.jobs.queue import QUEUE_MAINTENANCE, QUEUE_SYNC
from app.jobs.runtime import RUNTIME
from app.logs import job_id_var
from app.reconcile import repository
from app.reconcile.queue import enqueue_reconcile
from app.reconcile.service import run_reconcile

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()
BATCH = 500


@blueprint.task(name="reconcile_account", queue=QUEUE_SYNC, pass_context=True)
async def reconcile_account(
    context: procrastinate.JobContext, org_id: str, account_id: str
) -> None:
    token = job_id_var.set(str(context.job.id) if context.job else None)
    try:
        await run_reconcile(RUNTIME.require(), UUID(org_id), UUID(account_id))
    finally:
        job_id_var.reset(token)


@blueprint.periodic(cron="*/10 * * * *", periodic_id="reconcile")
@blueprint.task(name="reconcile_due_accounts", queue=QUEUE_MAINTENANCE, queueing_lock="reconcile")
async def reconcile_due_accounts(timestamp: int) -> None:
    """Every account whose last verification is older than its org's
    `email_reconcile_interval_hours` gets a (coalesced, low-priority) reconciliation."""
    ctx = RUNTIME.require()
    async with system_transaction(ctx.engine) as session:
        due = await repository.accounts_due(session, BATCH)
    for org_id, account_id in due:
        async with org_transaction(ctx.engine, org_id) as session:
            await enqueue_reconcile(session, org_id, account_id)
    if due:
        logger.info("reconciliations queued", extra={"count": len(due)})
