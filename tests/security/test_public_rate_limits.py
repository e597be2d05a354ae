"""The OAuth callback and the webhooks are rate-limited per client address (429
problem+json with Retry-After), so nobody can hammer state or push verification."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from app.security.ratelimit import PublicLimiter

pytestmark = pytest.mark.asyncio


async def test_callback_and_webhooks_answer_429_over_the_limit(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    original = getattr(app.state, "public_limiter", None)
    app.state.public_limiter = PublicLimiter(None, "3/minute")
    try:
        for path, method in (
            ("/v1/oauth/gmail/callback?state=x&code=y", "GET"),
            ("/v1/webhooks/outlook", "POST"),
            ("/v1/webhooks/gmail", "POST"),
        ):
            answers = [(await client.request(method, path, json={})).status_code for _ in range(5)]
            assert 429 not in answers[:3], (path, answers)
            assert answers[3:] == [429, 429], (path, answers)
            r = await client.request(method, path, json={})
            assert r.headers["content-type"] == "application/problem+json"
            assert int(r.headers["retry-after"]) > 0
    finally:
        if original is None:
            del app.state.public_limiter
        else:
            app.state.public_limiter = original
