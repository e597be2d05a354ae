"""Walking a mailbox's sync scopes from its cursor.

The driver says which scopes a sync walks (`MailProvider.sync_scopes`: Gmail one for the
whole mailbox, Graph one per folder) and each scope keeps one opaque position in the
stored `SyncCursor`. A scope with a position is synced incrementally (the changes since);
without one, or when the provider no longer knows it (CursorExpired), the window is listed
afresh and what we hold in it but the provider no longer listed is removed. Each scope's
position is saved as soon as everything it covers is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from app.providers.base import ChangePage, Folder, SyncCursor, SyncScope
from app.providers.errors import CursorExpired
from app.sync.pipeline import Listing, SyncRun

logger = logging.getLogger(__name__)

FOLDERS: tuple[Folder, Folder] = ("inbox", "sent")


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


def _window_pages(run: SyncRun, folder: Folder) -> Callable[[str | None], Awaitable[ChangePage]]:
    def fetch(token: str | None) -> Awaitable[ChangePage]:
        return run.provider.list_messages(folder, run.since, token)

    return fetch


async def _full(run: SyncRun, scope: SyncScope) -> str | None:
    """List the scope's folders in the window; the position to keep is the first one a
    listing gave (for a mailbox-wide scope it predates every folder's listing)."""
    position: str | None = None

    def keep_position(page: ChangePage) -> None:
        nonlocal position
        if page.new_cursor and position is None:
            position = page.new_cursor

    folders = (scope.folder,) if scope.folder else FOLDERS
    for folder in folders:
        listing = _listing(_window_pages(run, folder), keep_position)
        await run.ingest(listing, phase=f"backfill:{folder}", folder=folder)
    # After a full listing of the window: what we hold in it but the provider no longer
    # listed has left the mailbox.
    held = await run.held_in_window(folders=(scope.folder,) if scope.folder else None)
    await run.remove(sorted(held - run.seen))
    return position


async def _incremental(run: SyncRun, scope: SyncScope, since_position: str) -> str:
    position = since_position

    def keep_position(page: ChangePage) -> None:
        nonlocal position
        position = page.new_cursor or position

    listing = _listing(
        lambda token: run.provider.list_changes(since_position, token, scope.folder),
        keep_position,
    )
    await run.ingest(listing, phase="incremental", folder=scope.folder)
    return position


async def sync_scopes(run: SyncRun, cursor: SyncCursor) -> SyncCursor:
    """Bring every scope of the mailbox up to date; returns the cursor to keep."""
    for scope in run.provider.sync_scopes:
        since_position = cursor.position(scope)
        position: str | None = None
        if since_position:
            try:
                position = await _incremental(run, scope, since_position)
            except CursorExpired:
                logger.info(
                    "cursor expired, windowed resync", extra={"account_id": str(run.account_id)}
                )
        if position is None:
            position = await _full(run, scope)
        cursor = cursor.moved(scope, position)
        await run.save_cursor(cursor)
    return cursor
