"""SQL of the org's module settings (RLS scopes every statement to the org)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class StoredSettings:
    """The org's row of ce_module_settings; None where a value was never set."""

    email_sync_history_days: int | None = None
    email_body_size_limit_kb: int | None = None
    email_sync_interval_minutes: int | None = None
    email_tracking_enabled: bool | None = None
    email_custom_tracking_domain: str | None = None
    email_audit_retention_days: int | None = None
    email_reconcile_interval_hours: int | None = None
    email_retention_days: int | None = None
    email_default_visibility: str | None = None

    def set_values(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


COLUMNS = tuple(f.name for f in fields(StoredSettings))


async def get_stored(session: AsyncSession) -> StoredSettings:
    row = (
        (await session.execute(text(f"SELECT {', '.join(COLUMNS)} FROM ce_module_settings")))
        .mappings()
        .first()
    )
    return StoredSettings(**row) if row else StoredSettings()


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
