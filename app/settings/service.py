from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import repository
from app.settings.schemas import ModuleSettings, ModuleSettingsPatch


async def get_module_settings(session: AsyncSession) -> ModuleSettings:
    stored = await repository.get_stored(session)
    return ModuleSettings(**stored.set_values())


async def update_module_settings(
    session: AsyncSession, org_id: UUID, user_id: UUID, patch: ModuleSettingsPatch
) -> ModuleSettings:
    changes = {name: getattr(patch, name) for name in patch.model_fields_set}
    await repository.upsert(session, org_id, changes, user_id)
    return await get_module_settings(session)
