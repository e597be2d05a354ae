"""Send jobs (procrastinate tasks; args are ids and flags only).

Register with `app.add_tasks_from(blueprint, namespace="ce")`: the tasks are then
`ce:send_email` (queue `priority`) and the periodic `ce:retry_stalled_sends`.
"""

from __future__ import annotations

import logging

import procrastinate

from app.jobs.queue import QUEUE_MAINTENANCE, QUEUE_PRIORITY
from app.logs import job_id_var
from app.send.service import SEND_TASK, SendJob, run_send_job
from app.sync.jobs import RUNTIME

logger = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

STALLED_AFTER_SECONDS = 60.0
"""A send job whose worker sent no heartbeat for this long lost its worker."""


@blueprint.task(
    name="send_email",
    queue=QUEUE_PRIORITY,
    pass_context=True,
    # An exception escaping the task (the database gone after the provider accepted, say)
    # retries the same job; a retried job starts as "uncertain" and looks in Sent first.
    retry=procrastinate.RetryStrategy(max_attempts=5, exponential_wait=5),
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
    # A job that ran before and did not finish (its worker died, or it raised): its
    # attempt may have gone out.
    rerun = context.job is not None and bool(context.job.attempts)
    job = SendJob.from_args(
        org_id=org_id,
        email_id=email_id,
        reply_to_email_id=reply_to_email_id,
        track_opens=track_opens,
        track_clicks=track_clicks,
        uncertain=uncertain or rerun,
        attempt=attempt,
    )
    token = job_id_var.set(str(context.job.id) if context.job else None)
    try:
        await run_send_job(RUNTIME.require(), job)
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
