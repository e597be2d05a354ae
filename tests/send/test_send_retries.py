"""The job queue owns a send's retries: what SendRetryStrategy decides for an attempt."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from procrastinate.jobs import Job

from app.send.jobs import SendRetryStrategy
from app.send.runner import MAX_ATTEMPTS, SENT_COPY_GRACE_SECONDS, RetrySend, retry_delay


def _job(attempts: int) -> Job:
    return Job(
        id=1,
        queue="priority",
        lock="send:x",
        queueing_lock="send:x",
        task_name="ce:send_email",
        attempts=attempts,
    )


def _seconds_until(when: datetime | None) -> float:
    assert when is not None
    return (when - datetime.now(UTC)).total_seconds()


def test_a_retry_the_send_path_asked_for_runs_after_its_delay() -> None:
    decision = SendRetryStrategy().get_retry_decision(
        exception=RetrySend(42.0, "rate"), job=_job(0)
    )
    assert decision is not None
    assert 40 < _seconds_until(decision.retry_at) <= 42


@pytest.mark.parametrize("attempts", [0, 3])
def test_anything_else_escaping_an_attempt_is_retried_as_uncertain(attempts: int) -> None:
    decision = SendRetryStrategy().get_retry_decision(
        exception=ConnectionError("database gone"), job=_job(attempts)
    )
    assert decision is not None
    assert _seconds_until(decision.retry_at) > SENT_COPY_GRACE_SECONDS - 5


def test_no_retry_after_the_last_attempt() -> None:
    strategy = SendRetryStrategy()
    assert strategy.get_retry_decision(exception=ValueError(), job=_job(MAX_ATTEMPTS - 1)) is None


def test_retry_delay_honours_retry_after_the_cap_and_the_grace() -> None:
    assert retry_delay(1, uncertain=False) < retry_delay(2, uncertain=False)
    assert retry_delay(1, 600.0, uncertain=False) == 600.0
    assert retry_delay(30, uncertain=False) == retry_delay(31, uncertain=False)  # capped
    assert retry_delay(1, 1.0, uncertain=True) == SENT_COPY_GRACE_SECONDS
