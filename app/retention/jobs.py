"""Retention jobs: the daily purge of mail past each org's `email_retention_days`, and the
removal of deleted documents' files from the store.

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
from app.platform import repository as platform_repository
from app.platform.documents import DocumentStorage, document_storage, remove_deleted_files
from app.retention import repository, service
from app.retention.repository import PurgeCounts

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

ORGS_PER_RUN = 10_000
FILE_BATCHES_PER_ORG = 20
"""At most this many batches of files per org per call (500 a batch)."""


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
                if step.documents:
                    report.files_removed += await remove_files_of_org(engine, storage, org)
                if step.last:
                    break
            if purge.receipt_id is not None:
                report.accounts += 1
                report.receipts.append(purge.receipt_id)
                report.counts = report.counts + purge.counts
    if org_id is None:
        # files an earlier purge (a disconnect too) queued and could not remove
        report.files_removed += await remove_queued_files(engine, settings)
    return report


async def remove_files_of_org(engine: AsyncEngine, storage: DocumentStorage, org_id: UUID) -> int:
    """Own transactions: remove the files of the org's deleted documents, batch by batch,
    until none is left or only files the store refused (they wait for the next run)."""
    removed = 0
    for _ in range(FILE_BATCHES_PER_ORG):
        async with org_transaction(engine, org_id) as session:
            outcome = await remove_deleted_files(session, storage)
        removed += outcome.removed
        if outcome.removed == 0:
            break
    return removed


async def remove_queued_files(engine: AsyncEngine, settings: Settings) -> int:
    """Every org's files still queued: left by a process that stopped between a purge's
    commit and its file removal, or refused by the store last time."""
    async with system_transaction(engine) as session:
        org_ids = await platform_repository.orgs_with_file_removals(session, ORGS_PER_RUN)
    storage = document_storage(settings)
    return sum([await remove_files_of_org(engine, storage, org) for org in org_ids])


@blueprint.periodic(cron="*/15 * * * *", periodic_id="document-files")
@blueprint.task(
    name="remove_deleted_document_files", queue=QUEUE_MAINTENANCE, queueing_lock="doc-files"
)
async def remove_deleted_document_files(timestamp: int) -> None:
    """Every 15 minutes: remove the files of deleted documents still in the store."""
    ctx = RUNTIME.require()
    removed = await remove_queued_files(ctx.engine, ctx.settings)
    if removed:
        logger.info("deleted documents' files removed", extra={"count": removed})


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
