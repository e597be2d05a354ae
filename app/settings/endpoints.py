from __future__ import annotations

from fastapi import APIRouter

from app.auth.deps import AdminDep, CallerDep
from app.settings import service
from app.settings.schemas import ModuleSettings, ModuleSettingsPatch

router = APIRouter(prefix="/v1/settings", tags=["settings"])


@router.get("", summary="The org's email module settings (defaults where unset)")
async def read_settings(caller: CallerDep) -> ModuleSettings:
    return await service.get_module_settings(caller.session)


@router.patch(
    "",
    summary="Change module settings (org admins only)",
    responses={403: {"description": "Not an org admin"}, 422: {"description": "Out of range"}},
)
async def patch_settings(patch: ModuleSettingsPatch, caller: AdminDep) -> ModuleSettings:
    return await service.update_module_settings(
        caller.session, caller.org_id, caller.user_id, patch
    )
