"""Opens are recorded in batches, off the pixel's response path.

The pixel answers at once; the open goes into an in-process buffer that a background task
writes every TRACKING_FLUSH_MS (or sooner when it fills): one statement per org per batch
writes the events, moves the counters, creates the first-open notifications and announces
each event with ce.email.tracking. A flush that fails is retried once; on shutdown the
buffer is flushed. What a crash of the API process loses is at most one flush interval of
opens. TRACKING_FLUSH_MS=0 records each open inline, before the pixel is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction
from app.tracking.classify import PREFETCH_WINDOW_SECONDS

logger = logging.getLogger(__name__)

Hit = tuple[UUID, UUID, bool, datetime]  # org, email, machine user agent, when

_RECORD_OPENS = text("""
WITH hits AS (
    SELECT * FROM unnest(CAST(:email_ids AS uuid[]), CAST(:machine AS boolean[]),
                         CAST(:at AS timestamptz[])) AS h(email_id, machine, at)
), target AS (
    SELECT h.email_id, h.at, COALESCE(e.sent_by_user_id, a.owner_user_id) AS sender,
           CASE WHEN h.machine
                  OR e.sent_at > h.at - make_interval(secs => CAST(:window AS float8))
                THEN 'machine' ELSE 'human' END AS classification
    FROM hits h
    JOIN ce_emails e ON e.id = h.email_id
    JOIN ce_email_accounts a ON a.id = e.account_id
    WHERE e.direction = 'outbound' AND e.status IN ('sent', 'bounced')
), event AS (
    INSERT INTO ce_email_tracking_events (org_id, email_id, type, classification, occurred_at)
    SELECT CAST(:org_id AS uuid), email_id, 'opened', classification, at FROM target
    RETURNING id, email_id, classification, occurred_at
), human AS (
    SELECT email_id, count(*) AS n, min(occurred_at) AS first_at, max(occurred_at) AS last_at
    FROM event WHERE classification = 'human' GROUP BY email_id
), counted AS (
    UPDATE ce_emails e SET open_count = e.open_count + h.n,
           first_opened_at = COALESCE(e.first_opened_at, h.first_at),
           last_opened_at = GREATEST(COALESCE(e.last_opened_at, h.last_at), h.last_at)
    FROM human h WHERE e.id = h.email_id
    RETURNING e.id
), notified AS (
    INSERT INTO notifications (org_id, user_id, type, data, dedupe_key)
    SELECT DISTINCT ON (t.email_id) CAST(:org_id AS uuid), t.sender, 'email_opened',
           jsonb_build_object('email_id', t.email_id::text), 'email_opened:' || t.email_id
    FROM target t JOIN human h ON h.email_id = t.email_id
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT count(pg_notify('ce_email_events', json_build_object(
           'event', 'ce.email.tracking', 'event_id', id::text, 'org_id', CAST(:org_id AS text),
           'email_id', email_id::text, 'type', 'opened', 'occurred_at', occurred_at)::text)),
       (SELECT count(*) FROM counted), (SELECT count(*) FROM notified)
FROM event
""")


async def record_opens(engine: AsyncEngine, org_id: UUID, hits: list[Hit]) -> int:
    """Record the opens of one org in one transaction; returns the events written."""
    async with org_transaction(engine, org_id) as session:
        row = (
            await session.execute(
                _RECORD_OPENS,
                {
                    "org_id": str(org_id),
                    "email_ids": [h[1] for h in hits],
                    "machine": [h[2] for h in hits],
                    "at": [h[3] for h in hits],
                    "window": PREFETCH_WINDOW_SECONDS,
                },
            )
        ).one()
    return int(row[0])


class OpenRecorder:
    def __init__(self, engine: AsyncEngine, flush_ms: int, max_batch: int = 2000) -> None:
        self.engine = engine
        self.flush_seconds = flush_ms / 1000
        self.max_batch = max_batch
        self._buffer: list[Hit] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()

    @property
    def inline(self) -> bool:
        return self.flush_seconds <= 0

    async def add(self, org_id: UUID, email_id: UUID, machine_agent: bool) -> None:
        hit = (org_id, email_id, machine_agent, datetime.now(UTC))
        if self.inline:
            await record_opens(self.engine, org_id, [hit])
            return
        self._buffer.append(hit)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="tracking-open-recorder")
        if len(self._buffer) >= self.max_batch:
            self._full.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_seconds)
            self._full.clear()
            await self.flush()

    async def flush(self) -> int:
        async with self._flushing:
            batch, self._buffer = self._buffer, []
            by_org: dict[UUID, list[Hit]] = defaultdict(list)
            for hit in batch:
                by_org[hit[0]].append(hit)
            written = 0
            for org_id, hits in by_org.items():
                for attempt in (1, 2):
                    try:
                        written += await record_opens(self.engine, org_id, hits)
                        break
                    except Exception as exc:
                        logger.error(
                            "opens not recorded",
                            extra={
                                "org_id": str(org_id),
                                "count": len(hits),
                                "attempt": attempt,
                                "error_type": type(exc).__name__,
                            },
                        )
            return written

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
