"""One sync of one account: initial (windowed) or incremental, page by page.

Each page's messages are stored, and its progress recorded, in one transaction; the cursor is
saved only after everything it covers is stored, so a crash loses nothing (the next run
starts from the old cursor) and duplicates nothing (rows are unique per provider id). An
expired cursor falls back to a windowed resync that also removes what left the mailbox.
Provider errors become account state in one place: `run_sync`'s handler.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import multiprocessing
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text

from app.accounts import repository as accounts_repository
from app.config import Settings
from app.context import ServiceContext
from app.db.rls import org_transaction
from app.jobs.queue import enqueue
from app.messages.service import (
    PreparedPage,
    delete_remote_messages,
    prepare_page_cooperatively,
    prepare_page_for_transfer,
    store_prepared_page,
)
from app.observability.metrics import MESSAGES_SYNCED
from app.platform.documents import DocumentStorage, document_storage
from app.providers.base import ChangePage, Folder, MailProvider, MessageRef
from app.providers.errors import (
    AuthRevoked,
    CursorExpired,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from app.settings.service import get_module_settings
from app.sync import repository
from app.sync.bounces import find_bounce_reports, link_bounce_reports

logger = logging.getLogger(__name__)

FETCH_CHUNK = 50
FOLDERS: tuple[Folder, Folder] = ("inbox", "sent")
SYNC_TASK = "ce:sync_account"


# A listing, page by page: (messages listed, provider ids deleted).
Listing = AsyncIterator[tuple[Sequence[MessageRef], Sequence[str]]]


@dataclass
class SyncRun:
    ctx: ServiceContext
    org_id: UUID
    account: Any
    provider: MailProvider
    since: datetime
    body_limit_kb: int
    fetched: int = 0
    stored: int = 0
    deleted: int = 0
    listed: int = 0
    seen: set[str] = field(default_factory=set)
    bounce_reports: dict[int, list[Any]] = field(default_factory=dict)

    @property
    def account_id(self) -> UUID:
        return UUID(str(self.account["id"]))

    async def ingest(self, listing: Listing, phase: str, folder: Folder | None = None) -> None:
        """Fetch what we do not have yet of the listed messages (one fetch per message),
        store it, and apply the listed deletions.

        A pipeline over pages of FETCH_CHUNK messages that runs across the listing's pages:
        up to `sync_fetch_pipeline_depth` fetches are in flight, the next listing page is
        read when the queue runs dry (so the pipeline does not empty at every page of a
        long listing), a fetched page is parsed while earlier ones are written, and up to
        `sync_concurrent_writes` pages are written at once, each in its own transaction
        with its progress. Deletions wait until everything listed before them is stored.
        It returns (and so the caller saves a cursor) only once every page is stored; on
        an error, what is in flight is dropped or finished (a started write commits whole
        or not at all) before the error goes on.
        """
        storage = document_storage(self.ctx.settings)
        depth = max(1, self.ctx.settings.sync_fetch_pipeline_depth)
        concurrent_writes = max(1, self.ctx.settings.sync_concurrent_writes)
        chunks: deque[list[MessageRef]] = deque()
        deletes: list[str] = []
        pages: deque[tuple[list[MessageRef], asyncio.Task[PreparedPage]]] = deque()
        writes: deque[asyncio.Task[None]] = deque()
        queued: set[str] = set()  # ids this call has queued to fetch
        listing_open = True

        async def top_up() -> None:
            nonlocal listing_open
            while len(pages) < depth:
                if chunks:
                    chunk = chunks.popleft()
                    pages.append(
                        (chunk, asyncio.ensure_future(self._fetch_and_prepare(chunk, folder)))
                    )
                elif listing_open and not deletes:
                    listing_open = await self._list_next(listing, chunks, queued, deletes, phase)
                else:
                    return

        try:
            while True:
                await top_up()
                if pages:
                    chunk, task = pages.popleft()
                    page = await task
                    self.fetched += len(chunk)
                    await top_up()
                    while len(writes) >= concurrent_writes:
                        await writes.popleft()
                    writes.append(
                        asyncio.ensure_future(self._write(page, len(chunk), phase, storage))
                    )
                    continue
                while writes:
                    await writes.popleft()
                if not deletes:
                    break  # the listing is done and everything is stored
                await self.remove(deletes)
                queued.difference_update(deletes)  # a message may come back later
                deletes.clear()
        finally:
            pending: list[asyncio.Task[Any]] = [task for _, task in pages]
            for task in pending:
                task.cancel()
            pending.extend(write for write in writes if not write.done())
            await asyncio.gather(*pending, return_exceptions=True)

    async def _list_next(
        self,
        listing: Listing,
        chunks: deque[list[MessageRef]],
        queued: set[str],
        deletes: list[str],
        phase: str,
    ) -> bool:
        """Queue the next listed page's messages we do not have; False at the end."""
        listed = await anext(listing, None)
        if listed is None:
            return False
        refs, deleted = listed
        deletes.extend(deleted)
        self.listed += len(refs)
        self.seen.update(r.id for r in refs)
        async with org_transaction(self.ctx.engine, self.org_id) as session:
            known = await repository.known_provider_ids(
                session, self.account_id, [r.id for r in refs]
            )
        # Not known, nor already queued by an earlier page of this run (listings repeat
        # items across pages, and that page's write may not have committed yet).
        missing = [
            r
            for r in dict((r.id, r) for r in refs).values()
            if r.id not in known and r.id not in queued
        ]
        queued.update(r.id for r in missing)
        chunks.extend(
            missing[start : start + FETCH_CHUNK] for start in range(0, len(missing), FETCH_CHUNK)
        )
        if not missing and refs:
            async with org_transaction(self.ctx.engine, self.org_id) as session:
                await repository.progress(
                    session, self.account_id, phase=phase, processed_delta=0, estimate=self.listed
                )
        return True

    async def _fetch_and_prepare(
        self, chunk: list[MessageRef], folder: Folder | None
    ) -> PreparedPage:
        messages = [m for m in await self.provider.get_messages(chunk, folder) if m]
        bounces = find_bounce_reports(messages)
        page = await self._prepare(messages)
        if bounces:
            self.bounce_reports[id(page)] = bounces  # linked when this page is written
        return page

    async def _prepare(self, messages: list[Any]) -> PreparedPage:
        pool = parse_pool(self.ctx.settings)
        if pool is not None:
            owner = {"email_address": self.account["email_address"]}
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    pool, prepare_page_for_transfer, owner, messages, self.body_limit_kb
                )
            except BrokenProcessPool:
                # A parse process died (killed, out of memory): start afresh next time and
                # parse this page here, so the sync goes on.
                logger.warning("parse process lost; parsing in the event loop")
                shutdown_parse_pool()
        return await prepare_page_cooperatively(self.account, messages, self.body_limit_kb)

    async def _write(
        self, page: PreparedPage, processed: int, phase: str, storage: DocumentStorage | None
    ) -> None:
        async with org_transaction(self.ctx.engine, self.org_id) as session:
            result = await store_prepared_page(
                session, org_id=self.org_id, account=self.account, page=page, storage=storage
            )
            reports = self.bounce_reports.pop(id(page), None)
            if reports:
                await link_bounce_reports(session, self.org_id, reports)
            await repository.progress(
                session,
                self.account_id,
                phase=phase,
                processed_delta=processed,
                estimate=self.listed,
            )
        self.stored += result.stored

    async def remove(self, provider_ids: Sequence[str]) -> None:
        if not provider_ids:
            return
        async with org_transaction(self.ctx.engine, self.org_id) as session:
            removed = await delete_remote_messages(session, self.account_id, list(provider_ids))
        self.deleted += int(removed or 0)


_parse_pool: ProcessPoolExecutor | None = None


def parse_pool(settings: Settings) -> ProcessPoolExecutor | None:
    """The processes that parse synced mail when `sync_parse_processes` > 0: one pool per
    process, shared by its syncs, started on first use (or by `start_parse_pool`)."""
    global _parse_pool
    if settings.sync_parse_processes <= 0:
        return None
    if _parse_pool is None:
        # forkserver: a clean process to fork workers from, never a copy of this one with
        # its event loop, connections and threads.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["app.messages.service"])
        _parse_pool = ProcessPoolExecutor(settings.sync_parse_processes, mp_context=context)
    return _parse_pool


def start_parse_pool(settings: Settings) -> None:
    """Start the parse processes now (a worker at startup), not in the first sync."""
    pool = parse_pool(settings)
    if pool is not None:
        pool.submit(prepare_page_for_transfer, {"email_address": ""}, [], 0).result()


def shutdown_parse_pool() -> None:
    global _parse_pool
    pool, _parse_pool = _parse_pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def push_client_state(ctx: ServiceContext, account_id: UUID) -> str:
    """The Graph subscription's clientState: an HMAC of the account id, so a notification
    is checked without storing a secret per account."""
    key = ctx.settings.outlook_client_state_secret.get_secret_value().encode()
    return hmac.new(key, str(account_id).encode(), hashlib.sha256).hexdigest()[:64]


def _listing(
    fetch: Callable[[str | None], Awaitable[ChangePage]], on_page: Callable[[ChangePage], None]
) -> Listing:
    """A provider listing read page by page (`fetch(page_token)`), as `SyncRun.ingest`
    consumes it; `on_page` sees each page first (to keep its cursor)."""

    async def pages() -> Listing:
        token: str | None = None
        while True:
            page = await fetch(token)
            on_page(page)
            yield page.added, page.deleted
            token = page.next_page_token
            if not token:
                return

    return pages()


async def _full_gmail(run: SyncRun) -> dict[str, Any]:
    cursor: str | None = None

    def keep_cursor(page: ChangePage) -> None:
        nonlocal cursor
        if page.new_cursor and cursor is None:
            cursor = page.new_cursor  # the first folder's: it predates both listings

    for folder in FOLDERS:
        listing = _listing(
            lambda token, f=folder: run.provider.list_messages(f, run.since, token), keep_cursor
        )
        await run.ingest(listing, phase=f"backfill:{folder}", folder=folder)
    await _reconcile_window(run, folders=None)
    return {"history_id": cursor} if cursor else {}


async def _incremental_gmail(run: SyncRun, history_id: str) -> dict[str, Any]:
    new_cursor = history_id

    def keep_cursor(page: ChangePage) -> None:
        nonlocal new_cursor
        new_cursor = page.new_cursor or new_cursor

    listing = _listing(lambda token: run.provider.list_changes(history_id, token), keep_cursor)
    await run.ingest(listing, phase="incremental")
    return {"history_id": new_cursor}


async def _full_graph_folder(run: SyncRun, folder: Folder) -> str | None:
    cursor: str | None = None

    def keep_cursor(page: ChangePage) -> None:
        nonlocal cursor
        cursor = page.new_cursor or cursor

    listing = _listing(
        lambda token: run.provider.list_messages(folder, run.since, token), keep_cursor
    )
    await run.ingest(listing, phase=f"backfill:{folder}", folder=folder)
    await _reconcile_window(run, folders=(folder,))
    return cursor


async def _incremental_graph_folder(run: SyncRun, folder: Folder, delta_link: str) -> str:
    cursor = delta_link

    def keep_cursor(page: ChangePage) -> None:
        nonlocal cursor
        cursor = page.new_cursor or cursor

    listing = _listing(
        lambda token: run.provider.list_changes(delta_link, token, folder), keep_cursor
    )
    await run.ingest(listing, phase="incremental", folder=folder)
    return cursor


async def _reconcile_window(run: SyncRun, folders: tuple[Folder, ...] | None) -> None:
    """After a full listing of the window: what we hold in it but the provider no longer
    listed has left the mailbox."""
    async with org_transaction(run.ctx.engine, run.org_id) as session:
        held = await repository.window_provider_ids(
            session, run.account_id, run.since, folders=folders
        )
    await run.remove(sorted(held - run.seen))


async def _sync(run: SyncRun, cursor: dict[str, Any]) -> dict[str, Any]:
    if run.provider.name == "gmail":
        history_id = cursor.get("history_id")
        if history_id:
            try:
                return await _incremental_gmail(run, str(history_id))
            except CursorExpired:
                logger.info(
                    "cursor expired, windowed resync", extra={"account_id": str(run.account_id)}
                )
        return await _full_gmail(run)
    new_cursor = dict(cursor)
    for folder in FOLDERS:
        link = cursor.get(folder)
        result: str | None = None
        if link:
            try:
                result = await _incremental_graph_folder(run, folder, str(link))
            except CursorExpired:
                logger.info(
                    "cursor expired, windowed resync", extra={"account_id": str(run.account_id)}
                )
        if result is None:
            result = await _full_graph_folder(run, folder)
        if result:
            new_cursor[folder] = result
        # each folder's cursor is saved as soon as that folder is complete
        async with org_transaction(run.ctx.engine, run.org_id) as session:
            await repository.save_cursor(session, run.account_id, new_cursor)
    return new_cursor


async def run_sync(
    ctx: ServiceContext, org_id: UUID, account_id: UUID, *, reason: str = "poll"
) -> SyncRun | None:
    async with org_transaction(ctx.engine, org_id) as session:
        account = await accounts_repository.get_account(session, account_id)
        if account is None:
            return None
        if account["status"] in ("reauth_required", "disconnected"):
            await repository.fail_run(
                session,
                account_id,
                account["last_error"] or "The mailbox needs to be connected again.",
                state="idle",
            )
            return None
        settings = await get_module_settings(session)
        await repository.start_run(
            session, account_id, "incremental" if account["sync_cursor"] else "backfill"
        )
    account = dict(account)
    provider = ctx.account_provider(account["provider"], org_id, account_id)
    run = SyncRun(
        ctx,
        org_id,
        account,
        provider,
        since=datetime.now(UTC) - timedelta(days=settings.email_sync_history_days),
        body_limit_kb=settings.email_body_size_limit_kb,
    )
    log = {"account_id": str(account_id), "org_id": str(org_id), "provider": account["provider"]}
    # Push first: mail that arrives while (or right after) this sync lists the mailbox
    # then queues the next sync, instead of waiting for the polling interval.
    await ensure_push(ctx, org_id, account_id, provider)
    try:
        cursor = await _sync(run, dict(account["sync_cursor"] or {}))
        async with org_transaction(ctx.engine, org_id) as session:
            await repository.save_cursor(session, account_id, cursor)
            await repository.finish_run(session, account_id)
    except AuthRevoked:
        async with org_transaction(ctx.engine, org_id) as session:
            current = await accounts_repository.get_account(session, account_id)
        if current is not None and current["status"] == "reauth_required":
            # the grant itself is gone (invalid_grant): nothing retries it
            async with org_transaction(ctx.engine, org_id) as session:
                await repository.fail_run(session, account_id, "authorisation revoked")
            logger.warning("sync stopped: re-authorisation needed", extra=log)
        else:
            # a 401 that outlived one refresh while the grant still refreshes: transient
            await _retry_later(
                ctx,
                org_id,
                account_id,
                30.0,
                "The provider refused a fresh access token; the sync will be retried.",
            )
            logger.warning("sync rescheduled after repeated 401", extra=log)
        return run
    except RateLimited as exc:
        delay = max(exc.retry_after or 30.0, 1.0)
        await _retry_later(
            ctx, org_id, account_id, delay, "Throttled by the provider; the sync continues shortly."
        )
        logger.info("sync throttled, rescheduled", extra={**log, "retry_after": delay})
        return run
    except ProviderUnavailable:
        await _retry_later(
            ctx,
            org_id,
            account_id,
            60.0,
            "The provider is unavailable; the sync will be retried.",
            status="error",
        )
        logger.warning("sync failed: provider unavailable", extra=log)
        return run
    except ProviderError as exc:
        async with org_transaction(ctx.engine, org_id) as session:
            await repository.fail_run(
                session, account_id, f"Provider error ({type(exc).__name__})", status="error"
            )
        logger.warning("sync failed", extra={**log, "error_type": type(exc).__name__})
        return run
    except Exception as exc:
        async with org_transaction(ctx.engine, org_id) as session:
            await repository.fail_run(
                session, account_id, "Internal error during sync", status="error"
            )
        logger.error("sync crashed", extra={**log, "error_type": type(exc).__name__})
        raise
    MESSAGES_SYNCED.labels(account["provider"]).inc(run.stored)
    logger.info(
        "sync done",
        extra={**log, "fetched": run.fetched, "stored": run.stored, "deleted": run.deleted},
    )
    return run


async def _retry_later(
    ctx: ServiceContext,
    org_id: UUID,
    account_id: UUID,
    delay: float,
    message: str,
    status: str | None = None,
) -> None:
    async with org_transaction(ctx.engine, org_id) as session:
        await repository.fail_run(session, account_id, message, status=status, state="queued")
        await enqueue_sync(
            session,
            org_id,
            account_id,
            reason="retry",
            scheduled_at=datetime.now(UTC) + timedelta(seconds=delay),
        )


async def enqueue_sync(
    session: Any,
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
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET priority = GREATEST(priority, :p), "
                "scheduled_at = CASE WHEN scheduled_at > now() + interval '5 seconds' "
                "THEN now() + interval '5 seconds' ELSE scheduled_at END "
                "WHERE queueing_lock = :lock AND status = 'todo'"
            ),
            {"p": priority, "lock": f"sync:{account_id}"},
        )
    await repository.mark_queued(session, account_id)
    return job_id


async def ensure_push(
    ctx: ServiceContext,
    org_id: UUID,
    account_id: UUID,
    provider: MailProvider,
    *,
    force: bool = False,
) -> None:
    """Register (or renew) push for the mailbox; failures leave polling as the fallback."""
    async with org_transaction(ctx.engine, org_id) as session:
        account = await accounts_repository.get_account(session, account_id)
    if account is None:
        return
    expires = account["push_expires_at"]
    if not force and expires and expires > datetime.now(UTC) + timedelta(days=1):
        return
    callback = f"{ctx.settings.public_base_url}/v1/webhooks/outlook"
    try:
        channel = await provider.watch(callback, push_client_state(ctx, account_id))
    except ProviderError as exc:
        logger.warning(
            "push registration failed",
            extra={"account_id": str(account_id), "error_type": type(exc).__name__},
        )
        return
    async with org_transaction(ctx.engine, org_id) as session:
        await repository.set_push_channel(
            session, account_id, channel.channel_id, channel.expires_at, channel.resource_cursor
        )
