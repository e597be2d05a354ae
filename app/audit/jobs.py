"""Audit jobs: seal new audit rows into the hash chain, then apply the audit retention.

`seal_all` and `verify_all` are also what `ce-email audit seal` / `verify` run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from uuid import UUID

import procrastinate
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import repository, service
from app.audit.service import ChainReport
from app.db.rls import org_transaction, system_transaction
from app.jobs.queue import QUEUE_MAINTENANCE
from app.jobs.runtime import RUNTIME

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

ORGS_PER_RUN = 10_000


@dataclass
class SealReport:
    orgs: int = 0
    blocks: int = 0
    rows: int = 0
    purged_blocks: int = 0
    """Filled by `purge_all` where a caller runs both (`ce-email audit seal`)."""
    purged_rows: int = 0
    org_ids: list[UUID] = field(default_factory=list)


async def seal_all(engine: AsyncEngine) -> SealReport:
    """Own transaction: one per org. Seals every org's unsealed rows."""
    async with system_transaction(engine) as session:
        org_ids = await repository.orgs_with_audit(session, unsealed_only=True, limit=ORGS_PER_RUN)
    report = SealReport(org_ids=org_ids)
    for org_id in org_ids:
        async with org_transaction(engine, org_id) as session:
            blocks, rows = await service.seal_org(session, org_id)
        report.orgs += 1
        report.blocks += blocks
        report.rows += rows
    return report


async def purge_all(engine: AsyncEngine) -> tuple[int, int]:
    """Own transaction: one per org. Deletes, in every org with an audit (quiet ones too:
    an org that stopped reading mail still ages out), the whole oldest blocks past its
    `email_audit_retention_days` (only sealed rows ever are). Returns (blocks, rows)."""
    async with system_transaction(engine) as session:
        org_ids = await repository.orgs_with_audit(session, unsealed_only=False, limit=ORGS_PER_RUN)
    blocks = rows = 0
    for org_id in org_ids:
        async with org_transaction(engine, org_id) as session:
            purged_blocks, purged_rows = await repository.purge_expired(session)
        blocks += purged_blocks
        rows += purged_rows
    return blocks, rows


async def verify_all(
    engine: AsyncEngine, org_id: UUID | None = None, anchor: service.Anchor | None = None
) -> list[ChainReport]:
    """Own transaction: one read-only transaction per org; every org with audit rows or
    blocks unless `org_id` is given (an anchor is that org's)."""
    if org_id is None:
        async with system_transaction(engine) as session:
            org_ids = await repository.orgs_with_audit(
                session, unsealed_only=False, limit=ORGS_PER_RUN
            )
    else:
        org_ids = [org_id]
    reports = []
    for org in org_ids:
        async with org_transaction(engine, org) as session:
            reports.append(await service.verify_org(session, org, anchor))
    return reports


@blueprint.periodic(cron="*/10 * * * *", periodic_id="audit-seal")
@blueprint.task(name="seal_email_audit", queue=QUEUE_MAINTENANCE, queueing_lock="audit-seal")
async def seal_email_audit(timestamp: int) -> None:
    """Every 10 minutes: seal the audit rows written since the last run, org by org."""
    report = await seal_all(RUNTIME.require().engine)
    if report.blocks:
        logger.info("email audit sealed", extra={"count": report.rows, "processed": report.blocks})


@blueprint.periodic(cron="53 3 * * *", periodic_id="audit-retention")
@blueprint.task(name="purge_email_audit", queue=QUEUE_MAINTENANCE, queueing_lock="audit-retention")
async def purge_email_audit(timestamp: int) -> None:
    """Daily: delete the audit blocks past each org's audit retention, whole."""
    blocks, rows = await purge_all(RUNTIME.require().engine)
    if blocks:
        logger.info("email audit purged", extra={"count": blocks, "deleted": rows})
