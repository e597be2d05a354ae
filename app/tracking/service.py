"""Recording opens, clicks and bounces: the tracking event, the email's counters, the
sender's notification (PF-10) and the `ce.email.tracking` event, in one transaction.

Only human opens and clicks move the counters and notify (the first human open notifies,
later ones are counted; the first human click on each link notifies); machine fetches
are recorded as events with `classification = machine` and nothing more.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.rls import org_transaction
from app.platform.notifications import notify
from app.tracking.classify import classify

logger = logging.getLogger(__name__)

_EMAIL = text(
    "SELECT e.id, e.sent_at, COALESCE(e.sent_by_user_id, a.owner_user_id) AS sender "
    "FROM ce_emails e JOIN ce_email_accounts a ON a.id = e.account_id "
    "WHERE e.id = :id AND e.direction = 'outbound' AND e.status IN ('sent', 'bounced')"
)


async def _publish(
    session: AsyncSession, org_id: UUID, email_id: UUID, type_: str, link_url: str | None = None
) -> None:
    payload: dict[str, Any] = {
        "event": "ce.email.tracking",
        "org_id": str(org_id),
        "email_id": str(email_id),
        "type": type_,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if link_url is not None:
        payload["link_url"] = link_url
    await session.execute(
        text("SELECT pg_notify('ce_email_events', :p)"), {"p": json.dumps(payload)}
    )


def _age(sent_at: datetime | None) -> float | None:
    return (datetime.now(UTC) - sent_at).total_seconds() if sent_at else None


async def record_click(
    engine: AsyncEngine,
    org_id: UUID,
    link_id: UUID,
    *,
    user_agent: str | None,
    record: bool = True,
) -> str | None:
    """The stored URL of the link (None when unknown); the click is recorded if `record`."""
    async with org_transaction(engine, org_id) as session:
        link = (
            await session.execute(
                text("SELECT email_id, url FROM ce_email_tracked_links WHERE id = :id"),
                {"id": link_id},
            )
        ).first()
        if link is None:
            return None
        email = (await session.execute(_EMAIL, {"id": link.email_id})).first()
        if email is None or not record:
            return str(link.url) if email is not None else None
        kind = classify(user_agent, _age(email.sent_at))
        await session.execute(
            text(
                "INSERT INTO ce_email_tracking_events (org_id, email_id, type, classification, "
                "link_url) VALUES (:o, :e, 'clicked', :c, :u)"
            ),
            {"o": org_id, "e": link.email_id, "c": kind, "u": link.url},
        )
        if kind == "human":
            await session.execute(
                text("UPDATE ce_emails SET click_count = click_count + 1 WHERE id = :e"),
                {"e": link.email_id},
            )
            await notify(
                session,
                org_id=org_id,
                user_id=email.sender,
                type="email_clicked",
                data={"email_id": str(link.email_id), "link_id": str(link_id)},
                dedupe_key=f"email_clicked:{link.email_id}:{link_id}",
            )
        await _publish(session, org_id, link.email_id, "clicked", str(link.url))
        return str(link.url)


async def record_bounce(
    session: AsyncSession,
    *,
    org_id: UUID,
    email_id: UUID,
    recipients: list[str],
    detail: dict[str, Any],
) -> bool:
    """In the caller's (sync) transaction. Returns False when the email is not one of
    ours or was already marked bounced for these recipients."""
    email = (await session.execute(_EMAIL, {"id": email_id})).first()
    if email is None:
        return False
    already = set(
        (
            await session.execute(
                text(
                    "SELECT recipient FROM ce_email_tracking_events WHERE email_id = :e "
                    "AND type = 'bounced'"
                ),
                {"e": email_id},
            )
        ).scalars()
    )
    new = [r for r in recipients if r not in already]
    if not new:
        return False
    for recipient in new:
        await session.execute(
            text(
                "INSERT INTO ce_email_tracking_events (org_id, email_id, type, recipient, detail) "
                "VALUES (:o, :e, 'bounced', :r, CAST(:d AS jsonb))"
            ),
            {"o": org_id, "e": email_id, "r": recipient, "d": json.dumps(detail)},
        )
    await session.execute(
        text(
            "UPDATE ce_emails SET status = 'bounced', bounced_at = COALESCE(bounced_at, now()) "
            "WHERE id = :e"
        ),
        {"e": email_id},
    )
    await notify(
        session,
        org_id=org_id,
        user_id=email.sender,
        type="email_bounced",
        data={"email_id": str(email_id), "recipients": len(new)},
        dedupe_key=f"email_bounced:{email_id}",
    )
    await _publish(session, org_id, email_id, "bounced")
    logger.info("email bounced", extra={"email_id": str(email_id), "count": len(new)})
    return True
