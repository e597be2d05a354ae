"""Temporary: the names that moved to `app.messages.store` (storing synced mail) and
`app.events` (`synced_payload`), for callers not yet updated. Delete with their update.

`store_prepared_page` here still takes no `attachment_max_bytes`: it passes the
`Settings` default until the sync pipeline passes its own settings' value.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.events import synced_payload
from app.messages import store
from app.messages.store import (
    PreparedPage,
    StoreResult,
    delete_remote_messages,
    prepare_page_cooperatively,
    prepare_page_for_transfer,
)
from app.platform.documents import DocumentStorage

__all__ = [
    "PreparedPage",
    "StoreResult",
    "delete_remote_messages",
    "prepare_page_cooperatively",
    "prepare_page_for_transfer",
    "store_prepared_page",
    "synced_payload",
]

_DEFAULT_ATTACHMENT_MAX_BYTES: int = Settings.model_fields["attachment_max_bytes"].default


async def store_prepared_page(
    session: AsyncSession,
    *,
    org_id: UUID,
    account: Any,
    page: PreparedPage,
    storage: DocumentStorage | None,
) -> StoreResult:
    return await store.store_prepared_page(
        session,
        org_id=org_id,
        account=account,
        page=page,
        storage=storage,
        attachment_max_bytes=_DEFAULT_ATTACHMENT_MAX_BYTES,
    )
