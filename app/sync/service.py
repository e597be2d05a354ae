"""What the rest of the app asks of sync: queue a sync, accept a push notice, run a sync.

A run syncs one account, initial (windowed) or incremental, page by page
(`app.sync.pipeline`), scope by scope (`app.sync.cursors`). The cursor is saved only after
everything it covers is stored, so a crash loses nothing (the next run starts from the old
cursor) and duplicates nothing (rows are unique per provider id). What a provider failure
means for the account is decided by `app.providers.failures.mailbox_action`; `run_sync`
acts on it here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.context import ServiceContext
from app.db.rls import org_transaction
from app.jobs.queue import QUEUE_MAINTENANCE, enqueue
from app.observability.metrics import MESSAGES_SYNCED, PUSH_REARMED
from app.providers.base import MailProvider, PushFormat, PushNotice, SyncCursor
from app.providers.errors import AuthRevoked, ProviderError
from app.providers.failures import MailboxAction, Outcome, mailbox_action
from app.reconcile.queue import requeue_behind_new_mail
from app.settings.service import get_module_settings
from app.sync import repository
from app.sync.cursors import sync_scopes
from app.sync.pipeline import SyncRun
from app.sync.push import push_went_silent, rearm_push, register_push, store_push_channel

logger = logging.getLogger(__name__)

SYNC_TASK = "ce:sync_account"
RENEW_PUSH_TASK = "ce:renew_push"
PUSH_PRIORITY = 10  # new mail ahead of polling and backfills


async def enqueue_sync(
    session: AsyncSession,
    org_id: UUID,
    account_id: UUID,
    *,
    reason: str,
    priority: int = 0,
    scheduled_at: datetime | None = None,
) -> int | None:
    """Queue a sync of the account; coalesces with one already waiting. One runs at a time
    per account (lock), on any number of workers."""
    job_id = await enqueue(
        session,
        SYNC_TASK,
        {"org_id": str(org_id), "account_id": str(account_id), "reason": reason},
        lock=f"sync:{account_id}",
        queueing_lock=f"sync:{account_id}",
        priority=priority,
        scheduled_at=scheduled_at,
    )
    if job_id is None and scheduled_at is None:
        # Coalesced into a waiting sync. If that one is a retry scheduled for later, new
        # mail (a push, a manual request) should not wait out its whole backoff: bring it
        # to within a few seconds, at the higher priority.
        await repository.hasten_waiting_sync(session, f"sync:{account_id}", priority)
    if priority > 0:  # new mail: a waiting reconciliation goes behind it
        await requeue_behind_new_mail(session, org_id, account_id)
    await repository.mark_queued(session, account_id)
    return job_id


async def enqueue_push_renewal(
    session: AsyncSession, org_id: UUID, account_id: UUID, provider: str
) -> None:
    await enqueue(
        session,
        RENEW_PUSH_TASK,
        {"org_id": str(org_id), "account_id": str(account_id), "provider": provider},
        queue=QUEUE_MAINTENANCE,
        queueing_lock=f"renew:{account_id}",
    )


async def accept_notice(
    session: AsyncSession,
    push_format: PushFormat,
    provider: str,
    org_id: UUID,
    account_id: UUID,
    notice: PushNotice,
) -> bool:
    """Queue what a verified push notice asks for, in the caller's transaction: a renewal
    of the channel, a sync (coalesced, ahead of polling). Any verified notice shows that
    the account's push works: a silent push is active again. False when it announced
    nothing new (an older or repeated notice)."""
    await repository.record_notification(session, account_id)
    if notice.renew_channel:
        await enqueue_push_renewal(session, org_id, account_id, provider)
    if not notice.sync:
        return True
    cursor = await repository.stored_cursor(session, account_id)
    if cursor is not None and not push_format.is_news(notice, cursor):
        return False
    await enqueue_sync(session, org_id, account_id, reason="push", priority=PUSH_PRIORITY)
    return True


async def renew_push(ctx: ServiceContext, org_id: UUID, account_id: UUID, provider: str) -> None:
    """Own transactions: renew the account's push channel now (a provider's lifecycle
    notice asked for it) and store it."""
    driver = ctx.account_provider(provider, org_id, account_id)
    async with org_transaction(ctx.engine, org_id) as session:
        current = await repository.push_record(session, account_id)
    channel = await register_push(ctx, driver, account_id, current, force=True)
    if channel is not None:
        async with org_transaction(ctx.engine, org_id) as session:
            await store_push_channel(session, account_id, channel)


async def run_sync(
    ctx: ServiceContext, org_id: UUID, account_id: UUID, *, reason: str = "poll"
) -> SyncRun | None:
    """Own transactions: sync one account (the sync job's body). Its start and outcome
    are one transaction each; each page is written in its own (`SyncRun.ingest`)."""
    async with org_transaction(ctx.engine, org_id) as session:
        account = await accounts_repository.get_account(session, account_id)
        if account is None:
            return None
        if account.status in accounts_repository.INACTIVE:
            await repository.fail_run(
                session,
                account_id,
                account.last_error or "The mailbox needs to be connected again.",
                state="idle",
            )
            return None
        settings = await get_module_settings(session)
        push = await repository.push_record(session, account_id)
        await repository.start_run(
            session, account_id, "incremental" if account.sync_cursor else "backfill"
        )
    provider = ctx.account_provider(account.provider, org_id, account_id)
    started = datetime.now(UTC)
    run = SyncRun(
        ctx,
        org_id,
        account,
        provider,
        since=datetime.now(UTC) - timedelta(days=settings.email_sync_history_days),
        body_limit_kb=settings.email_body_size_limit_kb,
    )
    log = {"account_id": str(account_id), "org_id": str(org_id), "provider": account.provider}
    # Push first: mail that arrives while (or right after) this sync lists the mailbox
    # then queues the next sync, instead of waiting for the polling interval.
    channel = await register_push(ctx, provider, account_id, push)
    if channel is not None:
        async with org_transaction(ctx.engine, org_id) as session:
            await store_push_channel(session, account_id, channel)
    try:
        cursor = await sync_scopes(run, SyncCursor.from_stored(account.sync_cursor))
        async with org_transaction(ctx.engine, org_id) as session:
            await repository.save_cursor(session, account_id, cursor)
            await repository.finish_run(session, account_id)
            if run.stored:
                await repository.note_new_mail(session, account_id)
            silent = await push_went_silent(ctx, session, account_id, started)
    except ProviderError as exc:
        await _act_on_failure(ctx, run, exc, log)
        return run
    except Exception as exc:
        async with org_transaction(ctx.engine, org_id) as session:
            await repository.fail_run(
                session, account_id, "Internal error during sync", status="error"
            )
        logger.error("sync crashed", extra={**log, "error_type": type(exc).__name__})
        raise
    MESSAGES_SYNCED.labels(account.provider).inc(run.stored)
    if silent:  # the mail is stored either way: re-arming is not part of the sync's outcome
        await _rearm_silent_push(ctx, org_id, account_id, account.provider, provider, log)
    logger.info(
        "sync done",
        extra={**log, "fetched": run.fetched, "stored": run.stored, "deleted": run.deleted},
    )
    return run


async def _rearm_silent_push(
    ctx: ServiceContext,
    org_id: UUID,
    account_id: UUID,
    provider_name: str,
    provider: MailProvider,
    log: dict[str, str],
) -> None:
    """Own transactions: push missed mail, so it is `silent` (polled at the minimum
    interval until a notification arrives); register its channel again and count that."""
    async with org_transaction(ctx.engine, org_id) as session:
        current = await repository.push_record(session, account_id)
    if current is None:
        return
    channel = await rearm_push(ctx, provider, account_id, current)
    async with org_transaction(ctx.engine, org_id) as session:
        if channel is not None:
            await store_push_channel(session, account_id, channel)
        await repository.mark_push_silent(session, account_id, rearmed=channel is not None)
    if channel is not None:
        PUSH_REARMED.labels(provider_name).inc()
    logger.warning("push silent", extra={**log, "rearmed": channel is not None})


async def _act_on_failure(
    ctx: ServiceContext, run: SyncRun, error: ProviderError, log: dict[str, str]
) -> None:
    """Own transaction: record what `error` means for the account (mailbox_action)."""
    org_id, account_id = run.org_id, run.account_id
    grant_refused = False
    if isinstance(error, AuthRevoked):
        # The token refresh marks the account when the grant itself is refused.
        async with org_transaction(ctx.engine, org_id) as session:
            current = await accounts_repository.get_account(session, account_id)
        grant_refused = current is not None and current.status == "reauth_required"
    action = mailbox_action(error, grant_refused=grant_refused)
    if action.outcome is Outcome.RETRY:
        await _retry_later(ctx, org_id, account_id, action)
        logger.warning(
            "sync rescheduled",
            extra={**log, "error_type": type(error).__name__, "retry_after": action.delay},
        )
        return
    async with org_transaction(ctx.engine, org_id) as session:
        if action.outcome is Outcome.REAUTH:
            # the grant itself is gone (invalid_grant): nothing retries it
            await repository.fail_run(session, account_id, action.reason)
        else:
            await repository.fail_run(session, account_id, action.reason, status="error")
    logger.warning(
        "sync failed", extra={**log, "error_type": type(error).__name__, "outcome": action.outcome}
    )


async def _retry_later(
    ctx: ServiceContext, org_id: UUID, account_id: UUID, action: MailboxAction
) -> None:
    """Own transaction: say so on the account and queue the next attempt after the delay."""
    delay = action.delay or 0.0
    async with org_transaction(ctx.engine, org_id) as session:
        await repository.fail_run(
            session,
            account_id,
            action.reason,
            status="error" if action.provider_unavailable else None,
            state="queued",
        )
        await enqueue_sync(
            session,
            org_id,
            account_id,
            reason="retry",
            scheduled_at=datetime.now(UTC) + timedelta(seconds=delay),
        )
