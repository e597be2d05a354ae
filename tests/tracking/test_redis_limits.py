"""With REDIS_URL set, the tracking limits live in Redis, so several API instances share
them: two limiters (two "instances") count the same hits. Runs where a Redis is reachable
(TEST_REDIS_URL, set by .ci/run when one answers); elsewhere the in-memory path is what
the other tracking tests exercise."""

from __future__ import annotations

import os
import uuid

import pytest

from app.config import Settings
from app.tracking.limiter import TrackingLimiter

REDIS_URL = os.environ.get("TEST_REDIS_URL")


@pytest.mark.asyncio
@pytest.mark.skipif(not REDIS_URL, reason="no Redis reachable (TEST_REDIS_URL unset)")
async def test_two_instances_share_the_token_limit() -> None:
    settings = Settings(
        _env_file=None,
        redis_url=REDIS_URL,  # type: ignore[call-arg]
        tracking_rate_limit="1000/minute",
        tracking_token_rate_limit="3/minute",
    )
    first, second = TrackingLimiter(settings), TrackingLimiter(settings)
    token = uuid.uuid4().hex
    answers = [
        await first.allow("10.0.0.1", token),
        await second.allow("10.0.0.1", token),
        await first.allow("10.0.0.1", token),
        await second.allow("10.0.0.1", token),
    ]
    assert answers == [True, True, True, False]
    # a batch continues the same shared windows
    assert await first.admit([("10.0.0.2", token)]) == [False]
