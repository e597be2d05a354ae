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


# --- files of deleted documents (sql/190) -------------------------------------------------


async def claim_file_removals(session: AsyncSession, limit: int) -> list[str]:
    """Storage keys of the org's deleted documents whose files are still to be removed,
    oldest first, locked for this transaction (a concurrent remover skips them)."""
    rows = await session.execute(
        text(
            "SELECT storage_key FROM ce_document_file_removals "
            "ORDER BY queued_at, storage_key LIMIT :n FOR UPDATE SKIP LOCKED"
        ),
        {"n": limit},
    )
    return list(rows.scalars())


async def forget_file_removals(session: AsyncSession, storage_keys: list[str]) -> None:
    await session.execute(
        text(
            "DELETE FROM ce_document_file_removals WHERE storage_key = ANY(CAST(:keys AS text[]))"
        ),
        {"keys": storage_keys},
    )


async def note_failed_file_removals(session: AsyncSession, storage_keys: list[str]) -> None:
    await session.execute(
        text(
            "UPDATE ce_document_file_removals "
            "SET attempts = attempts + 1, last_attempt_at = now() "
            "WHERE storage_key = ANY(CAST(:keys AS text[]))"
        ),
        {"keys": storage_keys},
    )


async def orgs_with_file_removals(session: AsyncSession, limit: int) -> list[UUID]:
    rows = await session.execute(
        text("SELECT org_id FROM ce_orgs_with_file_removals(:n)"), {"n": limit}
    )
    return list(rows.scalars())
