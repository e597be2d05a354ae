"""Rate limits of the public tracking endpoints: per client address and per token.

Fixed windows of the `limits` library: in this process's memory by default, in Redis when
REDIS_URL is set (so several API instances share the counts). Opens are limited in
batches (the recorder's): every hit still counts against both windows, in arrival order,
and a hit is admitted exactly when `FixedWindowRateLimiter.hit` would have admitted it, but
a batch costs one storage increment per distinct key instead of two per hit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage

from app.config import Settings
from app.security.ratelimit import async_storage, client_address, trusted_proxies

logger = logging.getLogger(__name__)

Hit = tuple[str, str]  # client address, token


class TrackingLimiter:
    def __init__(self, settings: Settings) -> None:
        self.per_client = parse(settings.tracking_rate_limit)
        self.per_token = parse(settings.tracking_token_rate_limit)
        self.trusted = trusted_proxies(settings.trusted_proxies)
        # The synchronous memory storage: no coroutine and no asyncio lock per increment.
        self._local = None if settings.redis_url else MemoryStorage()
        self._shared = async_storage(settings.redis_url) if settings.redis_url else None

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        return client_address(peer, forwarded_for, self.trusted)

    async def allow(self, client: str, token: str) -> bool:
        return (await self.admit([(client, token)]))[0]

    async def admit(self, hits: Sequence[Hit]) -> list[bool]:
        """For each hit in order: within both its client's and its token's limit."""
        keyed = [
            (
                self.per_client.key_for("track-ip", client),
                self.per_token.key_for("track-token", token),
            )
            for client, token in hits
        ]
        wanted: dict[str, tuple[RateLimitItem, int]] = {}
        for client_key, token_key in keyed:
            for key, item in ((client_key, self.per_client), (token_key, self.per_token)):
                seen = wanted.get(key)
                wanted[key] = (item, seen[1] + 1 if seen else 1)
        try:
            after = await self._increment(wanted)
        except Exception as exc:  # a limiter outage must not break the endpoints
            logger.warning("tracking limiter failed", extra={"error_type": type(exc).__name__})
            return [False] * len(hits)
        # The window's count before this batch, then each hit's place in it.
        position = {key: after[key] - n for key, (_, n) in wanted.items()}
        admitted = []
        for client_key, token_key in keyed:
            position[client_key] += 1
            position[token_key] += 1
            admitted.append(
                position[client_key] <= self.per_client.amount
                and position[token_key] <= self.per_token.amount
            )
        return admitted

    async def _increment(self, wanted: dict[str, tuple[RateLimitItem, int]]) -> dict[str, int]:
        if self._local is not None:
            local = self._local
            return {
                key: local.incr(key, item.get_expiry(), amount=n)
                for key, (item, n) in wanted.items()
            }
        assert self._shared is not None
        shared = self._shared
        counts = await asyncio.gather(
            *(shared.incr(key, item.get_expiry(), amount=n) for key, (item, n) in wanted.items())
        )
        return dict(zip(wanted, counts, strict=True))
