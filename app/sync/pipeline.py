"""The ingest pipeline of one sync run: listed pages in, stored pages out.

Each page's messages are stored, and its progress recorded, in one transaction of its own
(an edge of the transaction rule: a page commits whole or not at all, and a long sync
never holds one transaction open). Fetches, parsing and writes overlap across pages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from app.accounts.repository import ConnectedAccount
from app.context import ServiceContext
from app.db.rls import org_transaction
from app.messages.store import (
    PreparedPage,
    delete_remote_messages,
    prepare_page_cooperatively,
    prepare_page_for_transfer,
    store_prepared_page,
)
from app.platform.documents import DocumentStorage, document_storage
from app.providers.base import Folder, MailProvider, MessageRef, RemoteMessage, SyncCursor
from app.sync import repository
from app.sync.bounces import find_bounce_reports, link_bounce_reports
from app.sync.parse_pool import parse_pool, shutdown_parse_pool
from app.tracking.bounces import BounceReport

logger = logging.getLogger(__name__)

FETCH_CHUNK = 50

# A listing, page by page: (messages listed, provider ids deleted).
Listing = AsyncIterator[tuple[Sequence[MessageRef], Sequence[str]]]


@dataclass
class SyncRun:
    """One sync of one account: what it reads from, and what it has done so far."""

    ctx: ServiceContext
    org_id: UUID
    account: ConnectedAccount
    """The account row as `app.accounts.repository.get_account` returns it."""
    provider: MailProvider
    since: datetime
    body_limit_kb: int
    fetched: int = 0
    stored: int = 0
    deleted: int = 0
    listed: int = 0
    seen: set[str] = field(default_factory=set)
    bounce_reports: dict[int, list[BounceReport]] = field(default_factory=dict)

    @property
    def account_id(self) -> UUID:
        return self.account.id

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

    async def _prepare(self, messages: list[RemoteMessage]) -> PreparedPage:
        pool = parse_pool(self.ctx.settings)
        if pool is not None:
            owner = {"email_address": self.account.email_address}
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
                session,
                org_id=self.org_id,
                account=self.account,
                page=page,
                storage=storage,
                attachment_max_bytes=self.ctx.settings.attachment_max_bytes,
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
        """Own transaction: delete the messages that left the mailbox."""
        if not provider_ids:
            return
        async with org_transaction(self.ctx.engine, self.org_id) as session:
            removed = await delete_remote_messages(session, self.account_id, list(provider_ids))
        self.deleted += int(removed or 0)

    async def held_in_window(self, folders: tuple[Folder, ...] | None) -> set[str]:
        """Own transaction: the provider ids stored for the account in the sync window."""
        async with org_transaction(self.ctx.engine, self.org_id) as session:
            return await repository.window_provider_ids(
                session, self.account_id, self.since, folders=folders
            )

    async def save_cursor(self, cursor: SyncCursor) -> None:
        """Own transaction: keep `cursor`, once everything it covers is stored."""
        async with org_transaction(self.ctx.engine, self.org_id) as session:
            await repository.save_cursor(session, self.account_id, cursor)
