"""Retrying a job that failed only because PostgreSQL was unreachable (a restart, a
failover): the work is redone from what was committed, after a short backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from app.errors import database_unavailable


class RetryWhenDatabaseUnavailable(BaseRetryStrategy):
    """Any other failure is final, as without a strategy. The delay doubles from
    `first_delay` to `max_delay`; after `max_attempts` the job fails."""

    def __init__(
        self, *, max_attempts: int = 10, first_delay: float = 2.0, max_delay: float = 60.0
    ) -> None:
        self.max_attempts = max_attempts
        self.first_delay = first_delay
        self.max_delay = max_delay

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if job.attempts + 1 >= self.max_attempts or not database_unavailable(exception):
            return None
        delay = min(self.first_delay * 2**job.attempts, self.max_delay)
        return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=delay))
