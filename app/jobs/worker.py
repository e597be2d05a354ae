"""Running the job worker: as its own process (`ce-email worker`) or beside the API
(`ce-email serve --with-worker`, what `make run` does).

procrastinate's worker stops for good when its database connection fails (a side task,
the heartbeat or the listener, raises; it logs "Stopped worker on all queues" and returns
or raises). `run_worker` supervises it: unless it was asked to stop, it waits, with a
bounded backoff, until PostgreSQL answers again, reopens the connection pool and starts a
new worker, with no restart of the process. The jobs the stopped worker was running when
the connection dropped are left `doing` (their outcome could not be written); on restart
they are handed back to the queue (`recover_orphaned_jobs`): a sync carries on from its
stored cursor, a send runs again as uncertain and looks in Sent before sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as job_errors
from procrastinate.app import WorkerOptions
from procrastinate.job_context import JobContext
from procrastinate.jobs import Job, Status
from procrastinate.worker import Worker

from app.config import Settings
from app.context import ServiceContext
from app.db.urls import app_url, libpq_url
from app.jobs.registry import job_app_with_tasks
from app.jobs.runtime import RUNTIME

logger = logging.getLogger(__name__)

POLLING_INTERVAL = 0.5  # procrastinate's default 5 s is slow for push-triggered syncs

RESTART_FIRST_DELAY = 0.5
RESTART_MAX_DELAY = 10.0
"""Backoff between checks that the database answers again: doubling, capped, jittered."""

CONNECT_TIMEOUT_SECONDS = 5

FAILURE_GRACE_SECONDS = 15.0
"""How long a worker whose connection failed waits for its running jobs before aborting
them (a long backfill would otherwise hold back every other job until it ends)."""

ORPHANED_AFTER_SECONDS = 60.0
"""Jobs of another worker are handed back only when it sent no heartbeat for this long
(procrastinate's heartbeat is every 10 s); those of this process's stopped worker at once."""


class _Supervisor:
    """The stop request (a signal, or the task being cancelled) versus a worker that stopped
    on its own because its connection failed."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.worker: Worker | None = None
        self.aborted: list[Job] = []

    def new_worker(
        self, job_app: procrastinate.App, options: WorkerOptions, failure_grace: float | None
    ) -> Worker:
        with_middleware: WorkerOptions = {**options, "worker_middleware": [self._note_aborted]}
        worker = self.worker = Worker(app=job_app, **with_middleware)
        # Read by the worker when it shuts down: a worker that stops on its own (its
        # connection failed) gives its jobs this long, then aborts them to start again;
        # `request_stop` puts back the wait without limit of a deliberate stop.
        worker.shutdown_graceful_timeout = failure_grace
        return worker

    def request_stop(self) -> None:
        self.stopping.set()
        if self.worker is not None:
            self.worker.shutdown_graceful_timeout = None
            self.worker.stop()  # type: ignore[no-untyped-call]  # procrastinate: unannotated

    async def _note_aborted(
        self, call_next: Callable[[], Awaitable[Any]], context: JobContext, worker: Worker
    ) -> Any:
        try:
            return await call_next()
        except asyncio.CancelledError:
            if not self.stopping.is_set():  # cut short by the failure grace, not a stop
                self.aborted.append(context.job)
            raise

    @contextlib.contextmanager
    def signal_handlers(self, install: bool) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        if install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
                    installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


async def run_worker(
    settings: Settings,
    ctx: ServiceContext,
    *,
    wait: bool = True,
    concurrency: int | None = None,
    install_signal_handlers: bool = True,
    queues: list[str] | None = None,
) -> None:
    """Runs jobs until stopped (wait=True) or until the queue is empty (wait=False),
    restarting the worker whenever it stops because the database went away."""
    RUNTIME.ctx = ctx
    options = WorkerOptions(
        concurrency=concurrency or settings.worker_concurrency,
        fetch_job_polling_interval=POLLING_INTERVAL,
        wait=wait,
        # ours (below): procrastinate's would be gone while we wait for the database
        install_signal_handlers=False,
        delete_jobs="successful",
    )
    if queues is not None:  # left out: every queue ([] would listen to none)
        options["queues"] = queues
    job_app: procrastinate.App = job_app_with_tasks(settings)
    conninfo = libpq_url(app_url(settings, "psycopg"))
    supervisor = _Supervisor()
    restarts = 0
    with supervisor.signal_handlers(install_signal_handlers):
        while True:
            failure: str | None = None
            try:
                async with job_app.open_async():
                    if restarts:
                        await recover_orphaned_jobs(job_app, supervisor.worker, supervisor.aborted)
                        supervisor.aborted.clear()
                    if supervisor.stopping.is_set():
                        return
                    worker = supervisor.new_worker(
                        job_app, options, FAILURE_GRACE_SECONDS if wait else None
                    )
                    running = asyncio.ensure_future(worker.run())  # type: ignore[no-untyped-call]  # unannotated
                    try:
                        await asyncio.shield(running)
                    except asyncio.CancelledError:
                        # a deliberate stop: running jobs may finish, however long
                        supervisor.request_stop()
                        await running
                        raise
            except (asyncio.CancelledError, KeyboardInterrupt):
                supervisor.request_stop()
                raise
            except Exception as exc:
                failure = type(exc).__name__
            if supervisor.stopping.is_set():
                return
            if failure is None and not wait:
                return  # caught up with the queues, as asked
            restarts += 1
            logger.error(
                "job worker stopped: waiting for the database to start it again",
                extra={
                    "error_type": failure or "WorkerStopped",
                    "worker_id": supervisor.worker.worker_id if supervisor.worker else None,
                    "restart": restarts,
                },
            )
            if not await _wait_for_database(conninfo, supervisor.stopping):
                return
            logger.warning("job worker restarting", extra={"restart": restarts})


async def _wait_for_database(conninfo: str, stopping: asyncio.Event) -> bool:
    """Until a connection succeeds (True) or a stop is requested (False)."""
    delay = RESTART_FIRST_DELAY
    attempts = 0
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay * random.uniform(0.8, 1.2))
        if stopping.is_set():
            break
        attempts += 1
        try:
            connection = await psycopg.AsyncConnection.connect(
                conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except (psycopg.Error, OSError) as exc:
            logger.info(
                "database not answering yet",
                extra={"attempt": attempts, "error_type": type(exc).__name__},
            )
            delay = min(delay * 2, RESTART_MAX_DELAY)
            continue
        await connection.close()
        return True
    return False


async def recover_orphaned_jobs(
    job_app: procrastinate.App, stopped: Worker | None, aborted: list[Job]
) -> int:
    """Hand back to the queue the jobs left `doing` by a worker that is gone: the one this
    process just lost (its outcome could not be written) and any silent for
    ORPHANED_AFTER_SECONDS. procrastinate counts the attempt; a send rerun is uncertain.
    Jobs the lost worker aborted (`aborted`) and recorded as such are queued again."""
    manager = job_app.job_manager
    for job in aborted:
        assert job.id is not None
        current = next(iter(await manager.list_jobs_async(id=job.id)), None)
        if current is not None and current.status == Status.ABORTED.value:
            deferrer = job_app.configure_task(
                job.task_name,
                lock=job.lock,
                queueing_lock=job.queueing_lock,
                priority=job.priority,
                queue=job.queue,
            )
            with contextlib.suppress(job_errors.AlreadyEnqueued):  # one waits already
                await deferrer.defer_async(**job.task_kwargs)
    if stopped is not None and stopped.worker_id is not None:
        # its shutdown could not unregister it; doing so leaves its jobs without a worker
        await manager.unregister_worker(stopped.worker_id)
        stopped.worker_id = None
    count = 0
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=ORPHANED_AFTER_SECONDS):
        try:
            await manager.retry_job(job)
        except job_errors.UniqueViolation:
            # the same job (a coalesced sync) was queued again meanwhile: that one runs
            await manager.finish_job(job, status=Status.ABORTED, delete_job=False)
        count += 1
    if count:
        logger.warning("orphaned jobs queued again", extra={"count": count})
    return count
