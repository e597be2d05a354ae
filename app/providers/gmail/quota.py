"""Gmail's per-user quota, kept on our side so a sync slows down instead of being refused.

Google counts quota units per user over a moving minute (`gmail_user_units_per_minute`:
6,000 for projects created since May 2026, 15,000 for older ones) and answers 429/403
`userRateLimitExceeded` past it. Each driver charges a call's units before making it and
waits while the last minute's spending would go over the budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

# Units per method (Google's quota table; `messages.get` is charged per batch part).
UNITS = {"profile": 1, "list": 5, "get": 5, "attachment": 5, "history": 2, "send": 100}
UNITS_WATCH = 100
UNITS_STOP = 50
WINDOW_SECONDS = 60.0


class UserQuota:
    """A moving-minute budget of quota units for one Gmail user (one driver, one mailbox)."""

    def __init__(
        self,
        units_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.units_per_minute = max(1, units_per_minute)
        self._clock = clock
        self._sleep = sleep
        self._spent: deque[tuple[float, int]] = deque()
        self._window_units = 0
        self._lock = asyncio.Lock()

    async def spend(self, units: int) -> None:
        """Wait until `units` fit in the last minute's budget, then count them as spent.
        A call costing more than the whole budget waits for an empty window."""
        async with self._lock:  # first come, first served
            while True:
                now = self._clock()
                while self._spent and self._spent[0][0] <= now - WINDOW_SECONDS:
                    self._window_units -= self._spent.popleft()[1]
                if not self._spent or self._window_units + units <= self.units_per_minute:
                    break
                await self._sleep(self._spent[0][0] + WINDOW_SECONDS - now)
            self._spent.append((now, units))
            self._window_units += units
