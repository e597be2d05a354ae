from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

COLUMNS = (
    "email_sync_history_days",
    "email_body_size_limit_kb",
    "email_sync_interval_minutes",
    "email_tracking_enabled",
    "email_custom_tracking_domain",
)


async def get_stored(session: AsyncSession) -> dict[str, Any]:
    row = (
        (await session.execute(text(f"SELECT {', '.join(COLUMNS)} FROM ce_module_settings")))
        .mappings()
        .first()
    )
    return dict(row) if row else {}


async def upsert(
    session: AsyncSession, org_id: UUID, values: dict[str, Any], user_id: UUID
) -> None:
    names = [c for c in COLUMNS if c in values]
    if not names:
        return
    cols = ", ".join(names)
    params = ", ".join(f":{c}" for c in names)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names)
    await session.execute(
        text(
            f"INSERT INTO ce_module_settings (org_id, updated_by, {cols}) "
            f"VALUES (:org_id, :user_id, {params}) "
            f"ON CONFLICT (org_id) DO UPDATE SET {updates}, "
            "updated_by = EXCLUDED.updated_by, updated_at = now()"
        ),
        {"org_id": org_id, "user_id": user_id, **{c: values[c] for c in names}},
    )
