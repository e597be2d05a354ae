"""SQL of tracking: tracked links, opens, clicks and bounces. RLS scopes every statement to
the org of the caller's transaction; nothing here begins or commits one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import notify_sql

Open = tuple[UUID, bool, datetime]
"""One open of a batch: (email id, fetched by a machine user agent, when)."""


@dataclass(frozen=True, slots=True)
class TrackedEmail:
    """A sent email that opens, clicks and bounces may be recorded for."""

    id: UUID
    sent_at: datetime | None
    sender: UUID
    """The user told of opens, clicks and bounces: who sent it, else the mailbox's owner."""


@dataclass(frozen=True, slots=True)
class TrackedLink:
    email_id: UUID
    url: str


_SENT_EMAIL = text(
    "SELECT e.id, e.sent_at, COALESCE(e.sent_by_user_id, a.owner_user_id) AS sender "
    "FROM ce_emails e JOIN ce_email_accounts a ON a.id = e.account_id "
    "WHERE e.id = :id AND e.direction = 'outbound' AND e.status IN ('sent', 'bounced')"
)

# One ce.email.tracking event per open written (an `event` row).
_PUBLISH_EACH_OPEN = notify_sql("""json_build_object(
           'event', 'ce.email.tracking', 'event_id', id::text, 'org_id', CAST(:org_id AS text),
           'email_id', email_id::text, 'type', 'opened', 'occurred_at', occurred_at)::text""")

# The benchmark's hot path (bench/tracking.py): keep the statement as it is.
# `notified` reads `target` alone: a first-open notification exists exactly when the email
# already has a first_opened_at (both are written by this statement), so only emails
# without one are tried, and ON CONFLICT covers two API processes racing.
_RECORD_OPENS = text(f"""
WITH hits AS (
    SELECT * FROM unnest(CAST(:email_ids AS uuid[]), CAST(:machine AS boolean[]),
                         CAST(:at AS timestamptz[])) AS h(email_id, machine, at)
), target AS (
    SELECT h.email_id, h.at, COALESCE(e.sent_by_user_id, a.owner_user_id) AS sender,
           e.first_opened_at IS NULL AS first,
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
    FROM target t WHERE t.first AND t.classification = 'human'
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT count({_PUBLISH_EACH_OPEN}),
       (SELECT count(*) FROM counted), (SELECT count(*) FROM notified)
FROM event
""")


async def record_opens(
    session: AsyncSession, org_id: UUID, opens: Sequence[Open], *, prefetch_window: float
) -> int:
    """One org's opens with one statement: the events (classified `machine` for a machine
    user agent or within `prefetch_window` seconds of sending), the counters, the
    first-open notifications and one `ce.email.tracking` event each. Returns the events
    written (opens of emails that are not sent ones of ours write nothing)."""
    row = (
        await session.execute(
            _RECORD_OPENS,
            {
                "org_id": str(org_id),
                "email_ids": [o[0] for o in opens],
                "machine": [o[1] for o in opens],
                "at": [o[2] for o in opens],
                "window": prefetch_window,
            },
        )
    ).one()
    return int(row[0])


async def sent_email(session: AsyncSession, email_id: UUID) -> TrackedEmail | None:
    row = (await session.execute(_SENT_EMAIL, {"id": email_id})).first()
    if row is None:
        return None
    return TrackedEmail(id=row.id, sent_at=row.sent_at, sender=row.sender)


async def tracked_link(session: AsyncSession, link_id: UUID) -> TrackedLink | None:
    row = (
        await session.execute(
            text("SELECT email_id, url FROM ce_email_tracked_links WHERE id = :id"),
            {"id": link_id},
        )
    ).first()
    return TrackedLink(email_id=row.email_id, url=str(row.url)) if row is not None else None


async def save_tracked_link(
    session: AsyncSession, *, org_id: UUID, email_id: UUID, position: int, url: str
) -> UUID:
    """The id of the email's link at `position` (the same id when a retried send
    instruments the HTML again)."""
    link_id = (
        await session.execute(
            text(
                "INSERT INTO ce_email_tracked_links (org_id, email_id, position, url) "
                "VALUES (:org, :email, :pos, :url) ON CONFLICT (org_id, email_id, position) "
                "DO UPDATE SET url = EXCLUDED.url RETURNING id"
            ),
            {"org": org_id, "email": email_id, "pos": position, "url": url},
        )
    ).scalar_one()
    return UUID(str(link_id))


async def insert_click(
    session: AsyncSession, *, org_id: UUID, email_id: UUID, classification: str, url: str
) -> None:
    await session.execute(
        text(
            "INSERT INTO ce_email_tracking_events (org_id, email_id, type, classification, "
            "link_url) VALUES (:o, :e, 'clicked', :c, :u)"
        ),
        {"o": org_id, "e": email_id, "c": classification, "u": url},
    )


async def count_click(session: AsyncSession, email_id: UUID) -> None:
    await session.execute(
        text("UPDATE ce_emails SET click_count = click_count + 1 WHERE id = :e"),
        {"e": email_id},
    )


async def bounced_recipients(session: AsyncSession, email_id: UUID) -> set[str]:
    rows = await session.execute(
        text(
            "SELECT recipient FROM ce_email_tracking_events WHERE email_id = :e "
            "AND type = 'bounced'"
        ),
        {"e": email_id},
    )
    return set(rows.scalars())


async def insert_bounce(
    session: AsyncSession, *, org_id: UUID, email_id: UUID, recipient: str, detail: dict[str, Any]
) -> None:
    await session.execute(
        text(
            "INSERT INTO ce_email_tracking_events (org_id, email_id, type, recipient, detail) "
            "VALUES (:o, :e, 'bounced', :r, CAST(:d AS jsonb))"
        ),
        {"o": org_id, "e": email_id, "r": recipient, "d": json.dumps(detail)},
    )


async def mark_bounced(session: AsyncSession, email_id: UUID) -> None:
    await session.execute(
        text(
            "UPDATE ce_emails SET status = 'bounced', bounced_at = COALESCE(bounced_at, now()) "
            "WHERE id = :e"
        ),
        {"e": email_id},
    )
