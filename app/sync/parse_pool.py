"""The processes that parse synced mail beside the event loop (`sync_parse_processes` > 0).

One pool per process, shared by its syncs, started on first use or at a worker's start.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from app.config import Settings
from app.messages.store import prepare_page_for_transfer

_parse_pool: ProcessPoolExecutor | None = None


def parse_pool(settings: Settings) -> ProcessPoolExecutor | None:
    """The pool, or None when syncs parse in the event loop (`sync_parse_processes` 0)."""
    global _parse_pool
    if settings.sync_parse_processes <= 0:
        return None
    if _parse_pool is None:
        # forkserver: a clean process to fork workers from, never a copy of this one with
        # its event loop, connections and threads.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["app.messages.store"])
        _parse_pool = ProcessPoolExecutor(settings.sync_parse_processes, mp_context=context)
    return _parse_pool


def running_pool() -> ProcessPoolExecutor | None:
    """The pool if it was started (the benchmark measures its processes)."""
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
