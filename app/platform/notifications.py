"""PF-10 notifications: the one platform-integration point that writes them.

Written in the caller's transaction (with the data that caused them). `dedupe_key` makes
"notify once" a database constraint: a second notification with the same key is dropped.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.platform import repository


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
    return await repository.insert_notification(
        session, org_id=org_id, user_id=user_id, type=type, data=data, dedupe_key=dedupe_key
    )
