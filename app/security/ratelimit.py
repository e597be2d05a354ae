"""Rate limits for the endpoints reached from outside without a user (OAuth callback,
webhooks): per client address, fixed windows, with `limits` (memory by default, Redis when
REDIS_URL is set so several API instances share the counts). Over the limit: 429
problem+json with Retry-After."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from app.errors import TooManyRequests


class PublicLimiter:
    def __init__(self, redis_url: str | None, limit: str) -> None:
        storage: Storage = RedisStorage(f"async+{redis_url}") if redis_url else MemoryStorage()
        self.limiter = FixedWindowRateLimiter(storage)
        self.limit = parse(limit)

    async def check(self, scope: str, client: str) -> None:
        if not await self.limiter.hit(self.limit, scope, client):
            raise TooManyRequests(
                "Too many requests; retry later",
                headers={"Retry-After": str(self.limit.get_expiry())},
            )


def _limiter(request: Request) -> PublicLimiter:
    limiter = getattr(request.app.state, "public_limiter", None)
    if limiter is None:
        settings = request.app.state.settings
        limiter = PublicLimiter(settings.redis_url, settings.public_rate_limit)
        request.app.state.public_limiter = limiter
    return limiter  # type: ignore[no-any-return]


def limited(scope: str) -> Any:
    async def check(request: Request) -> None:
        client = request.client.host if request.client else "unknown"
        await _limiter(request).check(scope, client)

    dependency: Callable[[Request], Awaitable[None]] = check
    return Depends(dependency)
