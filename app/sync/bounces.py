"""Bounces found by sync: a delivery status notification in a synced mailbox is linked to
the sent email it reports on, which is then marked bounced (per recipient), with a tracking
event and a notification to the sender (app.tracking.service.record_bounce).

A delayed DSN (Action: delayed, 4.x.x) is not a bounce and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.providers.base import RemoteMessage
from app.sync import repository
from app.tracking.bounces import BounceReport, detect_bounce
from app.tracking.service import record_bounce

logger = logging.getLogger(__name__)

# Cheap first look at the head of a message, so ordinary mail is never parsed twice:
# plain substring tests on the lower-cased head (a regex with IGNORECASE over 8 KB of every
# synced message cost as much as the rest of the sync loop).
_REPORT_MARKERS = (
    b"multipart/report",
    b"x-failed-recipients",
    b"mailer-daemon",
    b"postmaster@",
    b"delivery status notification",
    b"undeliverable",
    b"undelivered mail",
    b"delivery has failed",
    b"returned mail",
    b"failure notice",
)


def looks_like_bounce(raw: bytes) -> bool:
    head = raw[:8192].lower()
    return any(marker in head for marker in _REPORT_MARKERS)


def find_bounce_reports(messages: Sequence[RemoteMessage]) -> list[BounceReport]:
    """The permanent-failure reports among inbound messages (a cheap look first, so
    ordinary mail is not parsed twice). Delays are not bounces and are left out."""
    reports = []
    for message in messages:
        if message.folder != "inbox" or not looks_like_bounce(message.raw):
            continue
        report = detect_bounce(message.raw)
        if report is not None and report.permanent:
            reports.append(report)
    return reports


async def link_bounce_reports(
    session: AsyncSession, org_id: UUID, reports: Sequence[BounceReport]
) -> int:
    """Mark the sent emails the reports are about as bounced, in the sync's page
    transaction. Returns the number of emails marked."""
    marked = 0
    for report in reports:
        ids = [i for i in (report.original_message_id, *report.candidate_message_ids) if i]
        email_id = await repository.sent_email_by_message_ids(session, ids) if ids else None
        if email_id is None:
            continue
        if await record_bounce(
            session,
            org_id=org_id,
            email_id=email_id,
            recipients=sorted(report.permanent),
            detail={"status_codes": report.status_codes, "reporting_mta": report.reporting_mta},
        ):
            marked += 1
    if marked:
        logger.info("bounces linked", extra={"count": marked})
    return marked
