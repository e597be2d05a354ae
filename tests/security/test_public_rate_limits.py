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


@pytest.mark.parametrize("trusted", [True, False])
async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    client: httpx.AsyncClient, app: FastAPI, trusted: bool
) -> None:
    # the test client's peer is 127.0.0.1: the proxy, when trusted
    original = getattr(app.state, "public_limiter", None)
    proxies = frozenset({"127.0.0.1"}) if trusted else frozenset()
    app.state.public_limiter = PublicLimiter(None, "2/minute", proxies)
    path = "/v1/webhooks/outlook"
    try:
        first = [
            (await client.post(path, json={}, headers={"X-Forwarded-For": "10.0.0.1"})).status_code
            for _ in range(3)
        ]
        other = await client.post(path, json={}, headers={"X-Forwarded-For": "10.0.0.2"})
        assert first[2] == 429
        # behind a trusted proxy each client has its own window; otherwise the header is
        # a client's claim and changes nothing
        assert (other.status_code != 429) is trusted
    finally:
        if original is None:
            del app.state.public_limiter
        else:
            app.state.public_limiter = original
