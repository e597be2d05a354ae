"""Retention jobs: the daily purge of mail past each org's `email_retention_days`.

`run_retention` is also what `ce-email retention run` runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import procrastinate
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.rls import org_transaction, system_transaction
from app.jobs.queue import QUEUE_MAINTENANCE
from app.jobs.runtime import RUNTIME
from app.platform.documents import document_storage
from app.retention import repository, service
from app.retention.repository import PurgeCounts

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

ORGS_PER_RUN = 10_000


@dataclass
class RetentionReport:
    orgs: int = 0
    accounts: int = 0
    receipts: list[UUID] = field(default_factory=list)
    counts: PurgeCounts = field(default_factory=PurgeCounts)
    files_removed: int = 0


async def run_retention(
    engine: AsyncEngine,
    settings: Settings,
    *,
    org_id: UUID | None = None,
    now: datetime | None = None,
) -> RetentionReport:
    """Own transaction: one per batch of an account's mail. Purges, in every org that set
    `email_retention_days` (or only `org_id`), the mail that occurred before its cutoff;
    one receipt per account that lost mail; files leave the store after each commit."""
    now = now or datetime.now(UTC)
    if org_id is None:
        async with system_transaction(engine) as session:
            org_ids = await repository.orgs_with_retention(session, ORGS_PER_RUN)
    else:
        org_ids = [org_id]
    storage = document_storage(settings)
    report = RetentionReport()
    for org in org_ids:
        async with org_transaction(engine, org) as session:
            cutoff = await service.retention_cutoff(session, now)
            account_ids = await service.accounts(session)
        if cutoff is None:
            continue
        report.orgs += 1
        for account_id in account_ids:
            purge = service.AccountPurge(org, account_id, "retention", cutoff)
            while True:
                async with org_transaction(engine, org) as session:
                    step = await service.purge_step(session, purge)
                report.files_removed += await service.remove_files(storage, step.storage_keys)
                if step.last:
                    break
            if purge.receipt_id is not None:
                report.accounts += 1
                report.receipts.append(purge.receipt_id)
                report.counts = report.counts + purge.counts
    return report


@blueprint.periodic(cron="41 3 * * *", periodic_id="email-retention")
@blueprint.task(name="purge_email_retention", queue=QUEUE_MAINTENANCE, queueing_lock="retention")
async def purge_email_retention(timestamp: int) -> None:
    """Daily: delete mail past each org's retention, with a purge receipt per account."""
    ctx = RUNTIME.require()
    report = await run_retention(ctx.engine, ctx.settings)
    if report.receipts:
        logger.info(
            "email retention purged",
            extra={
                "deleted": report.counts.emails,
                "count": report.orgs,
                "processed": report.accounts,
            },
        )
