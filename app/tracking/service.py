"""Recording clicks and bounces: the tracking event, the email's counters, the sender's
notification (PF-10) and the `ce.email.tracking` event, in the caller's transaction.
(Opens are recorded in batches by app/tracking/recorder.py.)

Only human clicks move the counters and notify (the first human click on each link
notifies); machine fetches are recorded as events with `classification = machine` and
nothing more.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import publish, tracking_payload
from app.platform.notifications import notify
from app.tracking import repository
from app.tracking.classify import classify

logger = logging.getLogger(__name__)


def _age(sent_at: datetime | None) -> float | None:
    return (datetime.now(UTC) - sent_at).total_seconds() if sent_at else None


async def record_click(
    session: AsyncSession,
    org_id: UUID,
    link_id: UUID,
    *,
    user_agent: str | None,
    record: bool = True,
) -> str | None:
    """The stored URL of the link (None when unknown); the click is recorded if `record`."""
    link = await repository.tracked_link(session, link_id)
    if link is None:
        return None
    email = await repository.sent_email(session, link.email_id)
    if email is None:
        return None
    if not record:
        return link.url
    kind = classify(user_agent, _age(email.sent_at))
    await repository.insert_click(
        session, org_id=org_id, email_id=link.email_id, classification=kind, url=link.url
    )
    if kind == "human":
        await repository.count_click(session, link.email_id)
        await notify(
            session,
            org_id=org_id,
            user_id=email.sender,
            type="email_clicked",
            data={"email_id": str(link.email_id), "link_id": str(link_id)},
            dedupe_key=f"email_clicked:{link.email_id}:{link_id}",
        )
    await publish(session, tracking_payload(org_id, link.email_id, "clicked", link_url=link.url))
    return link.url


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
    email = await repository.sent_email(session, email_id)
    if email is None:
        return False
    already = await repository.bounced_recipients(session, email_id)
    new = [r for r in recipients if r not in already]
    if not new:
        return False
    for recipient in new:
        await repository.insert_bounce(
            session, org_id=org_id, email_id=email_id, recipient=recipient, detail=detail
        )
    await repository.mark_bounced(session, email_id)
    await notify(
        session,
        org_id=org_id,
        user_id=email.sender,
        type="email_bounced",
        data={"email_id": str(email_id), "recipients": len(new)},
        dedupe_key=f"email_bounced:{email_id}",
    )
    await publish(session, tracking_payload(org_id, email_id, "bounced"))
    logger.info("email bounced", extra={"email_id": str(email_id), "count": len(new)})
    return True
