"""Rate limits for the endpoints reached from outside without a user (OAuth callback,
webhooks): per client address, fixed windows, with `limits` (memory by default, Redis when
REDIS_URL is set so several API instances share the counts). Over the limit: 429
problem+json with Retry-After."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import Depends, Request
from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from app.errors import TooManyRequests


def async_storage(redis_url: str | None) -> Storage:
    """Where `limits` keeps its counts: Redis when REDIS_URL is set (shared by every API
    instance), else this process's memory."""
    return RedisStorage(f"async+{redis_url}") if redis_url else MemoryStorage()


def trusted_proxies(setting: str) -> frozenset[str]:
    return frozenset(p.strip() for p in setting.split(",") if p.strip())


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str:
    """The peer, or the first X-Forwarded-For hop when the peer is a trusted proxy (behind
    one, every client would otherwise share the proxy's limit)."""
    peer = peer or "unknown"
    if forwarded_for and peer in trusted:
        return forwarded_for.split(",")[0].strip()[:64]
    return peer


class PublicLimiter:
    def __init__(
        self, redis_url: str | None, limit: str, trusted: frozenset[str] = frozenset()
    ) -> None:
        self.limiter = FixedWindowRateLimiter(async_storage(redis_url))
        self.limit = parse(limit)
        self.trusted = trusted

    async def check(self, scope: str, request: Request) -> None:
        client = client_address(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            self.trusted,
        )
        if not await self.limiter.hit(self.limit, scope, client):
            raise TooManyRequests(
                "Too many requests; retry later",
                headers={"Retry-After": str(self.limit.get_expiry())},
            )


def _limiter(request: Request) -> PublicLimiter:
    limiter: PublicLimiter | None = getattr(request.app.state, "public_limiter", None)
    if limiter is None:
        settings = request.app.state.settings
        limiter = PublicLimiter(
            settings.redis_url,
            settings.public_rate_limit,
            trusted_proxies(settings.trusted_proxies),
        )
        request.app.state.public_limiter = limiter
    return limiter


def limited(scope: str) -> Any:
    async def check(request: Request) -> None:
        await _limiter(request).check(scope, request)

    dependency: Callable[[Request], Awaitable[None]] = check
    return Depends(dependency)
