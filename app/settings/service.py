from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import UnprocessableEntity
from app.settings import repository
from app.settings.schemas import ModuleSettings, ModuleSettingsPatch

_RETENTION_RULE = {"email_retention_days", "email_sync_history_days"}


async def get_module_settings(session: AsyncSession) -> ModuleSettings:
    stored = await repository.get_stored(session)
    return ModuleSettings(**stored.set_values())


async def update_module_settings(
    session: AsyncSession, org_id: UUID, user_id: UUID, patch: ModuleSettingsPatch
) -> ModuleSettings:
    changes = {name: getattr(patch, name) for name in patch.model_fields_set}
    if _RETENTION_RULE & changes.keys():
        stored = (await repository.get_stored(session)).set_values()
        # an explicit null resets a field to its default
        after = {**stored, **changes}
        _check_retention_covers_history(
            ModuleSettings(**{k: v for k, v in after.items() if v is not None})
        )
    await repository.upsert(session, org_id, changes, user_id)
    return await get_module_settings(session)


def _check_retention_covers_history(after: ModuleSettings) -> None:
    """Retention shorter than the sync window would purge mail that the next sync fetches
    again; refused, whichever of the two the patch changes (the CHECK in sql/140 agrees)."""
    retention = after.email_retention_days
    history = after.email_sync_history_days
    if retention is None or retention >= history:
        return
    field = "email_retention_days"
    message = f"must be at least email_sync_history_days ({history}); it is {retention}"
    raise UnprocessableEntity(f"{field}: {message}", errors=[{"field": field, "message": message}])
