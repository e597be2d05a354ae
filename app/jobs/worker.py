"""Running the job worker: as its own process (`ce-email worker`) or beside the API
(`ce-email serve --with-worker`, what `make run` does)."""

from __future__ import annotations

import logging

import procrastinate
from procrastinate.app import WorkerOptions

from app.config import Settings
from app.context import ServiceContext
from app.jobs.registry import job_app_with_tasks
from app.jobs.runtime import RUNTIME

logger = logging.getLogger(__name__)

POLLING_INTERVAL = 0.5  # procrastinate's default 5 s is slow for push-triggered syncs


async def run_worker(
    settings: Settings,
    ctx: ServiceContext,
    *,
    wait: bool = True,
    concurrency: int | None = None,
    install_signal_handlers: bool = True,
    queues: list[str] | None = None,
) -> None:
    """Runs jobs until stopped (wait=True) or until the queue is empty (wait=False)."""
    RUNTIME.ctx = ctx
    options = WorkerOptions(
        concurrency=concurrency or settings.worker_concurrency,
        fetch_job_polling_interval=POLLING_INTERVAL,
        wait=wait,
        install_signal_handlers=install_signal_handlers,
        delete_jobs="successful",
    )
    if queues is not None:  # left out: every queue ([] would listen to none)
        options["queues"] = queues
    job_app: procrastinate.App = job_app_with_tasks(settings)
    async with job_app.open_async():
        await job_app.run_worker_async(**options)
