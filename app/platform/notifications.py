"""PF-10 notifications: the one platform-integration point that writes them.

Written in the caller's transaction (with the data that caused them). `dedupe_key` makes
"notify once" a database constraint: a second notification with the same key is dropped.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def notify(
    session: AsyncSession,
    *,
    org_id: UUID,
    user_id: UUID,
    type: str,
    data: dict[str, Any],
    dedupe_key: str | None = None,
) -> bool:
    """Returns True when a notification was written, False when deduplicated."""
    result = await session.execute(
        text(
            "INSERT INTO notifications (org_id, user_id, type, data, dedupe_key) "
            "VALUES (:org_id, :user_id, :type, CAST(:data AS jsonb), :dedupe_key) "
            "ON CONFLICT DO NOTHING RETURNING id"
        ),
        {
            "org_id": org_id,
            "user_id": user_id,
            "type": type,
            "data": json.dumps(data, default=str),
            "dedupe_key": dedupe_key,
        },
    )
    return result.first() is not None
