"""Send jobs (procrastinate tasks; args are ids and flags only).

Register with `app.add_tasks_from(blueprint, namespace="ce")`: the tasks are then
`ce:send_email` (queue `priority`) and the periodic `ce:retry_stalled_sends`.

The job queue is the one owner of a send's retries: an attempt that cannot finish raises
(`RetrySend` with the delay the send path chose, or anything unexpected), and
`SendRetryStrategy` runs the same job again, keeping its lock; procrastinate counts the
attempts. A job whose worker died is handed back by `retry_stalled_sends`. Either way a
rerun starts as uncertain and looks in the Sent folder first (app/send/runner.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

import procrastinate
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from app.jobs.queue import QUEUE_MAINTENANCE, QUEUE_PRIORITY
from app.jobs.runtime import RUNTIME
from app.logs import job_id_var
from app.send.runner import MAX_ATTEMPTS, SEND_TASK, RetrySend, SendJob, retry_delay, run_send_job

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

STALLED_AFTER_SECONDS = 60.0
"""A send job whose worker sent no heartbeat for this long lost its worker."""


def _retry_in(seconds: float) -> RetryDecision:
    return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=seconds))


class SendRetryStrategy(BaseRetryStrategy):
    """`RetrySend` after the delay it carries; any other exception escaping an attempt
    (the database gone after the provider accepted, say) as an uncertain failure, until
    MAX_ATTEMPTS."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RetrySend):
            return _retry_in(exception.delay)
        attempt = job.attempts + 1
        if attempt >= MAX_ATTEMPTS:
            return None
        return _retry_in(retry_delay(attempt, uncertain=True))


@blueprint.task(
    name="send_email",
    queue=QUEUE_PRIORITY,
    pass_context=True,
    retry=SendRetryStrategy(),
)
async def send_email(
    context: procrastinate.JobContext,
    org_id: str,
    email_id: str,
    reply_to_email_id: str | None = None,
    track_opens: bool = False,
    track_clicks: bool = False,
    uncertain: bool = False,
    attempt: int = 1,
) -> None:
    # `uncertain` and `attempt` come only from jobs queued by earlier releases, which
    # queued each retry as a new job: such a job still looks in Sent first and keeps its
    # count of attempts.
    done = context.job.attempts if context.job is not None else 0
    job = SendJob(
        org_id=UUID(org_id),
        email_id=UUID(email_id),
        reply_to_email_id=UUID(reply_to_email_id) if reply_to_email_id else None,
        track_opens=track_opens,
        track_clicks=track_clicks,
    )
    token = job_id_var.set(str(context.job.id) if context.job else None)
    try:
        await run_send_job(
            RUNTIME.require(), job, attempt=max(done + 1, attempt, 2 if uncertain else 1)
        )
    finally:
        job_id_var.reset(token)


@blueprint.periodic(cron="* * * * *", periodic_id="send-stalled")
@blueprint.task(
    name="retry_stalled_sends",
    queue=QUEUE_MAINTENANCE,
    queueing_lock="send-stalled",
    pass_context=True,
)
async def retry_stalled_sends(context: procrastinate.JobContext, timestamp: int) -> None:
    """Send jobs left `doing` by a worker that died: run them again (as uncertain). Until
    then their procrastinate lock holds any later job of the same email."""
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(
        task_name=SEND_TASK, seconds_since_heartbeat=STALLED_AFTER_SECONDS
    )
    count = 0
    for job in stalled:
        await manager.retry_job(job)
        count += 1
    if count:
        logger.warning("stalled send jobs retried", extra={"count": count})
