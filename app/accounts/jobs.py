"""Account jobs (procrastinate tasks): housekeeping of the OAuth flow."""

from __future__ import annotations

import logging

import procrastinate

from app.accounts import repository
from app.db.rls import org_transaction, system_transaction
from app.jobs.queue import QUEUE_MAINTENANCE
from app.jobs.runtime import RUNTIME

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

ORGS_PER_RUN = 500


@blueprint.periodic(cron="17 * * * *", periodic_id="oauth-states")
@blueprint.task(
    name="purge_expired_oauth_states", queue=QUEUE_MAINTENANCE, queueing_lock="oauth-states"
)
async def purge_expired_oauth_states(timestamp: int) -> None:
    """Hourly: OAuth states a day past their expiry can never be consumed; delete them, org
    by org, each in its own RLS transaction."""
    ctx = RUNTIME.require()
    async with system_transaction(ctx.engine) as session:
        org_ids = await repository.orgs_with_expired_states(session, ORGS_PER_RUN)
    purged = 0
    for org_id in org_ids:
        async with org_transaction(ctx.engine, org_id) as session:
            purged += await repository.delete_expired_states(session)
    if purged:
        logger.info("expired oauth states purged", extra={"count": purged, "orgs": len(org_ids)})
