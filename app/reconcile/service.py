"""Reconciliation of one mailbox: the provider's ids in the sync window against ours.

A change feed (Gmail history, Graph delta) can lose a message, and push can be dropped;
reconciliation does not trust either. It lists Inbox and Sent in the window with the
provider's cheapest id listing (`MailProvider.list_message_ids`), fetches and stores what
we lack through the sync's own pipeline (`SyncRun.ingest`: the same parsing, matching,
links, activities and events as synced mail, and the same drivers with their quota
pacing), and removes what we hold in the window that the provider no longer has: what
the listing no longer names, unless the driver says it is still in the mailbox as a sync
sees it (`MailProvider.still_in_mailbox`: Gmail's archived mail). It runs as a job under
the account's sync lock, so never beside a sync of the same account, and leaves the
cursor alone. Mail that retention purged is never imported again
(`repository.purged_provider_ids`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

from app.accounts import repository as accounts_repository
from app.context import ServiceContext
from app.db.rls import org_transaction
from app.observability.metrics import RECONCILE_MISSING, RECONCILE_STALE
from app.providers.base import Folder, MessageRef
from app.providers.errors import ProviderError
from app.providers.failures import Outcome, mailbox_action
from app.reconcile import repository
from app.reconcile.queue import enqueue_reconcile
from app.reconcile.repository import ReconcileOutcome
from app.settings.service import get_module_settings
from app.sync.cursors import FOLDERS
from app.sync.pipeline import SyncRun

logger = logging.getLogger(__name__)


async def _id_pages(
    run: SyncRun, folder: Folder, purged: set[str]
) -> AsyncIterator[tuple[Sequence[MessageRef], Sequence[str]]]:
    """The provider's id listing as the pipeline consumes it (no deletions: what left
    the mailbox is what the listing does not name), less what retention purged."""
    async for refs in run.provider.list_message_ids(folder, run.since):
        yield [ref for ref in refs if ref.id not in purged], ()


async def run_reconcile(
    ctx: ServiceContext, org_id: UUID, account_id: UUID
) -> ReconcileOutcome | None:
    """Own transactions: reconcile one account (the job's body) and record the outcome.
    None when the account is gone or inactive, or the provider failed (a throttled or
    unavailable provider queues the reconciliation again after its delay)."""
    async with org_transaction(ctx.engine, org_id) as session:
        account = await accounts_repository.get_account(session, account_id)
        if account is None or account.status in accounts_repository.INACTIVE:
            return None
        settings = await get_module_settings(session)
        started = datetime.now(UTC)
        since = started - timedelta(days=settings.email_sync_history_days)
        purged = await repository.purged_provider_ids(session, account_id, since)
    run = SyncRun(
        ctx,
        org_id,
        account,
        ctx.account_provider(account.provider, org_id, account_id),
        since=since,
        body_limit_kb=settings.email_body_size_limit_kb,
    )
    log = {"account_id": str(account_id), "org_id": str(org_id), "provider": account.provider}
    try:
        for folder in FOLDERS:
            await run.ingest(_id_pages(run, folder, purged), f"reconcile:{folder}", folder)
        unlisted = sorted(await run.held_in_window(folders=None) - run.seen)
        kept = await run.provider.still_in_mailbox(unlisted) if unlisted else set()
        await run.remove([provider_id for provider_id in unlisted if provider_id not in kept])
    except ProviderError as exc:
        action = mailbox_action(exc)
        if action.outcome is Outcome.RETRY:
            async with org_transaction(ctx.engine, org_id) as session:
                await enqueue_reconcile(
                    session,
                    org_id,
                    account_id,
                    scheduled_at=datetime.now(UTC) + timedelta(seconds=action.delay or 0.0),
                )
        logger.warning(
            "reconciliation stopped",
            extra={**log, "error_type": type(exc).__name__, "outcome": action.outcome},
        )
        return None
    stored_now = await run.held_in_window(folders=None)
    outcome = ReconcileOutcome(
        verified_at=started,
        provider_count=len(run.seen),
        stored_count=len(stored_now),
        missing_fetched=run.stored,
        stale_removed=run.deleted,
    )
    async with org_transaction(ctx.engine, org_id) as session:
        await repository.record_outcome(session, account_id, outcome)
    RECONCILE_MISSING.labels(account.provider).inc(run.stored)
    RECONCILE_STALE.labels(account.provider).inc(run.deleted)
    logger.info(
        "reconciled",
        extra={
            **log,
            "provider_count": outcome.provider_count,
            "stored_count": outcome.stored_count,
            "missing_fetched": outcome.missing_fetched,
            "stale_removed": outcome.stale_removed,
        },
    )
    return outcome
