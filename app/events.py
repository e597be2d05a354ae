"""The one writer of `ce.email.*` events (DESIGN §5).

Events are delivered with PostgreSQL NOTIFY on one channel, inside the writing
transaction: NOTIFY is delivered at commit, so listeners only hear of committed data, and
a rolled-back unit of work announces nothing. Every event leaves through this module:
`publish` for one event from Python, `notify_sql` for statements that announce a whole
batch in SQL (a page of synced mail, a batch of opens) without a round trip per event.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

CHANNEL = "ce_email_events"

_PUBLISH = text(f"SELECT pg_notify('{CHANNEL}', :payload)")


def notify_sql(payload_expression: str) -> str:
    """The SQL expression that publishes `payload_expression` (text) on the events channel;
    for repositories that announce a batch in the statement that writes it."""
    return f"pg_notify('{CHANNEL}', {payload_expression})"


# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_NOTIFY_BYTES = 7900

# What says which event it is and what it is about: never cut.
_IDENTITY = frozenset(
    {"event", "event_id", "org_id", "email_id", "account_id", "type", "direction", "occurred_at"}
)


def fit_payload(body: dict[str, Any]) -> str:
    """The event as JSON under NOTIFY's limit: while it is too long, the longest other
    field gives way (a list keeps its first half, anything else goes) and the event says
    `truncated: true`. A NOTIFY over the limit would fail the transaction that writes
    what the event announces (a synced page, a click's redirect)."""
    payload = json.dumps(body, separators=(",", ":"))
    while len(payload.encode()) > MAX_NOTIFY_BYTES:
        body = {**body, "truncated": True}
        cuttable = [k for k in body if k not in _IDENTITY and k != "truncated"]
        if not cuttable:
            break
        longest = max(cuttable, key=lambda k: len(json.dumps(body[k])))
        value = body[longest]
        if isinstance(value, list) and value:
            body[longest] = value[: len(value) // 2]
        else:
            del body[longest]
        payload = json.dumps(body, separators=(",", ":"))
    return payload


def synced_payload(
    *,
    org_id: UUID,
    email_id: UUID,
    account_id: UUID,
    direction: str,
    occurred_at: datetime,
    contact_ids: Sequence[UUID],
    partner_ids: Sequence[UUID],
) -> str:
    """The ce.email.synced event (DESIGN §5). An email linked to so many contacts that the
    payload would pass NOTIFY's limit lists as many as fit and says `truncated: true`."""
    return fit_payload(
        {
            "event": "ce.email.synced",
            "org_id": str(org_id),
            "email_id": str(email_id),
            "account_id": str(account_id),
            "direction": direction,
            "occurred_at": occurred_at.isoformat(),
            "contact_ids": [str(c) for c in contact_ids],
            "partner_ids": [str(p) for p in partner_ids],
        }
    )


def tracking_payload(
    org_id: UUID, email_id: UUID, type_: str, *, link_url: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event": "ce.email.tracking",
        "org_id": str(org_id),
        "email_id": str(email_id),
        "type": type_,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if link_url is not None:
        payload["link_url"] = link_url
    return payload


async def publish(session: AsyncSession, payload: dict[str, Any] | str) -> None:
    """Publish one event in the session's transaction (delivered at its commit), cut to
    NOTIFY's limit (`fit_payload`)."""
    body = payload if isinstance(payload, str) else fit_payload(payload)
    await session.execute(_PUBLISH, {"payload": body})
