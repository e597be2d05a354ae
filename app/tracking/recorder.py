"""Opens are recorded in batches, off the pixel's response path.

The pixel answers at once with the same GIF whatever the token: all it does is note the
token, the client address, the user agent and the time. A background task takes the notes
every TRACKING_FLUSH_MS (or sooner when they fill a batch) and does the rest: verifies each
token (forged ones are dropped), applies the per-client and per-token rate limits (over
them, nothing is recorded), classifies the user agent, and writes each org's opens with one
statement: the events, the counters, the first-open notifications and one
ce.email.tracking announcement per event. On shutdown the notes are flushed. What a crash
of the API process loses is at most one flush interval of opens (and what is held, below).
TRACKING_FLUSH_MS=0 records each open inline, before the pixel is sent.

When PostgreSQL does not answer (a restart, a failover), the opens of the failed write are
held in memory, ready to write, and retried with a backoff (RETRY_FIRST_DELAY doubling to
RETRY_MAX_DELAY); opens arriving meanwhile join them without a write being tried. At most
MAX_HELD_OPENS are held (about 100 bytes each): past that the oldest are dropped, counted in
`ce_email_tracking_opens_dropped_total` and in a log line with counts only. Any other write
error is retried once and the batch dropped, as before (it would fail again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction
from app.errors import database_unavailable
from app.observability.metrics import TRACKING_OPENS_DROPPED
from app.tracking import repository
from app.tracking.classify import PREFETCH_WINDOW_SECONDS, classify
from app.tracking.limiter import TrackingLimiter
from app.tracking.repository import Open
from app.tracking.tokens import read_token

logger = logging.getLogger(__name__)

Note = tuple[str, str, str | None, float]  # token, client address, user agent, unix time

# Bounded memo tables: a mailing's opens repeat the same tokens and user agents.
_MEMO_LIMIT = 100_000

# The longest a pixel is held back while the database catches up (see OpenRecorder).
MAX_PACE_SECONDS = 0.02

MAX_HELD_OPENS = 100_000
"""Opens held while the database is unreachable; past this the oldest are dropped."""
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 10.0


class OpenRecorder:
    """Batches of opens, written one at a time by a background task.

    Notes are written every `flush_ms`, or at once when `max_batch` of them wait. When the
    database falls behind, the pixel is paced instead of the backlog growing: past
    `2 * max_batch` waiting notes each pixel is held back a little before it answers, in
    proportion to the backlog (up to MAX_PACE_SECONDS at `max_pending`), and at
    `max_pending` it also waits for the writer to take the notes. The pixel's rate so
    settles smoothly at what PostgreSQL can record, and memory, and what a crash could
    lose, stay bounded by `max_pending` notes.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        token_secret: str,
        limiter: TrackingLimiter,
        flush_ms: int,
        max_batch: int = 500,
        max_pending: int = 10_000,
        max_held: int = MAX_HELD_OPENS,
    ) -> None:
        self.engine = engine
        self.token_secret = token_secret
        self.limiter = limiter
        self.flush_seconds = flush_ms / 1000
        self.max_batch = max_batch
        self.max_pending = max(max_pending, max_batch + 1)
        self._pace_from = min(2 * max_batch, self.max_pending - 1)
        self._pace_per_note = MAX_PACE_SECONDS / (self.max_pending - self._pace_from)
        self._notes: list[Note] = []
        self._full = asyncio.Event()
        self._taken: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._verified: dict[str, tuple[UUID, UUID]] = {}
        self._machine: dict[str | None, bool] = {}
        # (org, open) written by no transaction yet because the database was unreachable
        self._held: deque[tuple[UUID, Open]] = deque()
        self.max_held = max_held
        self.dropped = 0
        self._retry_delay = 0.0
        self._retry_at = 0.0  # monotonic; no write is tried before it while opens are held

    @property
    def inline(self) -> bool:
        return self.flush_seconds <= 0

    def note(self, token: str, client: str, user_agent: str | None, at: float) -> float:
        """The pixel's whole share of the work (the hot path): keep the hit for the batch.
        Returns 0, or the seconds to `pace()` before answering when the writer is behind."""
        notes = self._notes
        notes.append((token, client, user_agent, at))
        pending = len(notes)
        if pending == 1 and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="tracking-open-recorder")
        elif pending >= self.max_batch:
            self._full.set()
        if pending <= self._pace_from:
            return 0.0
        return (pending - self._pace_from) * self._pace_per_note

    async def pace(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        while len(self._notes) >= self.max_pending:
            if self._taken is None:
                self._taken = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._taken)

    async def record_now(self, token: str, client: str, user_agent: str | None, at: float) -> int:
        """TRACKING_FLUSH_MS=0: this one hit, written before the pixel is answered."""
        return await self._record([(token, client, user_agent, at)])

    async def _run(self) -> None:
        while True:
            if len(self._notes) < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_seconds)
            self._full.clear()
            await self.flush()

    async def flush(self) -> int:
        async with self._flushing:
            notes, self._notes = self._notes, []
            taken, self._taken = self._taken, None
            if taken is not None and not taken.done():
                taken.set_result(None)
            if notes:
                return await self._record(notes)
            return await self._write_all({}) if self._held else 0

    @property
    def held(self) -> int:
        """Opens waiting for the database to answer again."""
        return len(self._held)

    async def _record(self, notes: list[Note]) -> int:
        verified: list[tuple[Note, tuple[UUID, UUID]]] = []
        for note in notes:
            ids = self._verify(note[0])
            if ids is not None:
                verified.append((note, ids))
        if not verified:
            return 0
        admitted = await self.limiter.admit([(note[1], note[0]) for note, _ in verified])
        by_org: dict[UUID, list[Open]] = defaultdict(list)
        for (note, (org_id, email_id)), allowed in zip(verified, admitted, strict=True):
            if allowed:
                machine = self._is_machine(note[2])
                by_org[org_id].append((email_id, machine, datetime.fromtimestamp(note[3], UTC)))
        return await self._write_all(by_org)

    async def _write_all(self, by_org: dict[UUID, list[Open]], *, force: bool = False) -> int:
        """Writes the held opens and `by_org`'s, one transaction per org; holds them all
        while the database is unreachable (without trying before the backoff is over,
        unless `force`)."""
        if self._held:
            if not force and time.monotonic() < self._retry_at:
                self._hold(by_org.items())
                return 0
            held, self._held = self._held, deque()
            for org_id, one in held:
                by_org.setdefault(org_id, []).append(one)
        written = 0
        pending = list(by_org.items())
        for index, (org_id, opens) in enumerate(pending):
            for attempt in (1, 2):
                try:
                    written += await self._write(org_id, opens)
                    break
                except Exception as exc:
                    if database_unavailable(exc):
                        self._hold(pending[index:])
                        self._back_off(exc)
                        return written
                    logger.error(
                        "opens not recorded",
                        extra={
                            "org_id": str(org_id),
                            "count": len(opens),
                            "attempt": attempt,
                            "error_type": type(exc).__name__,
                        },
                    )
        if self._retry_delay:
            logger.warning("held opens recorded", extra={"count": written})
            self._retry_delay = 0.0
        return written

    def _hold(self, batches: Iterable[tuple[UUID, list[Open]]]) -> None:
        held = self._held
        for org_id, opens in batches:
            held.extend((org_id, one) for one in opens)
        over = len(held) - self.max_held
        if over > 0:
            for _ in range(over):
                held.popleft()
            self.dropped += over
            TRACKING_OPENS_DROPPED.inc(over)
            logger.error(
                "held opens dropped: the database is unreachable and the hold is full",
                extra={"count": over, "held": len(held), "dropped": self.dropped},
            )

    def _back_off(self, exc: BaseException) -> None:
        self._retry_delay = min(max(self._retry_delay * 2, RETRY_FIRST_DELAY), RETRY_MAX_DELAY)
        self._retry_at = time.monotonic() + self._retry_delay
        logger.warning(
            "opens held: the database is unreachable",
            extra={
                "held": len(self._held),
                "retry_after": self._retry_delay,
                "error_type": type(exc).__name__,
            },
        )

    async def _write(self, org_id: UUID, opens: list[Open]) -> int:
        # The batch write is a unit of work of its own: one transaction per org and batch.
        async with org_transaction(self.engine, org_id) as session:
            return await repository.record_opens(
                session, org_id, opens, prefetch_window=PREFETCH_WINDOW_SECONDS
            )

    def _verify(self, token: str) -> tuple[UUID, UUID] | None:
        ids = self._verified.get(token)
        if ids is None:
            ids = read_token(self.token_secret, "o", token)
            if ids is not None:  # only signed tokens are remembered
                if len(self._verified) >= _MEMO_LIMIT:
                    self._verified.clear()
                self._verified[token] = ids
        return ids

    def _is_machine(self, user_agent: str | None) -> bool:
        machine = self._machine.get(user_agent)
        if machine is None:
            machine = classify(user_agent, None) == "machine"
            if len(self._machine) >= _MEMO_LIMIT:
                self._machine.clear()
            self._machine[user_agent] = machine
        return machine

    async def close(self) -> None:
        if self._task is not None:
            # under the lock, so a batch being written is finished, not cancelled half-way
            async with self._flushing:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._held:  # one last try, whatever the backoff says
            await self._write_all({}, force=True)
        if self._held:
            logger.error("held opens lost at shutdown", extra={"count": len(self._held)})
