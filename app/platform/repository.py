"""SQL of the platform integration points (PF-10 notifications)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_notification(
    session: AsyncSession,
    *,
    org_id: UUID,
    user_id: UUID,
    type: str,
    data: dict[str, Any],
    dedupe_key: str | None,
) -> bool:
    """True when written, False when a notification with the same dedupe_key exists."""
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
