"""SQL of sync state: cursors, progress, known provider ids."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def known_provider_ids(
    session: AsyncSession, account_id: UUID, provider_ids: Sequence[str]
) -> set[str]:
    if not provider_ids:
        return set()
    # sql/070: one index probe per id, robust to statistics that do not know the account
    rows = await session.execute(
        text("SELECT ce_known_provider_ids(:a, CAST(:ids AS text[]))"),
        {"a": account_id, "ids": list(provider_ids)},
    )
    return set(rows.scalars())


async def save_cursor(session: AsyncSession, account_id: UUID, cursor: dict[str, Any]) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET sync_cursor = CAST(:c AS jsonb), updated_at = now() "
            "WHERE id = :id"
        ),
        {"c": json.dumps(cursor), "id": account_id},
    )


async def mark_queued(session: AsyncSession, account_id: UUID) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET sync_state = 'queued' "
            "WHERE id = :id AND sync_state IN ('idle', 'failed')"
        ),
        {"id": account_id},
    )


async def start_run(session: AsyncSession, account_id: UUID, phase: str) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET sync_state = 'running', sync_phase = :phase, "
            "sync_processed = 0, sync_estimate = NULL, sync_started_at = now(), "
            "sync_finished_at = NULL, sync_heartbeat_at = now(), "
            "status = CASE WHEN status IN ('active', 'error') THEN 'syncing' ELSE status END "
            "WHERE id = :id"
        ),
        {"id": account_id, "phase": phase},
    )


async def progress(
    session: AsyncSession,
    account_id: UUID,
    *,
    phase: str,
    processed_delta: int,
    estimate: int | None = None,
) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET sync_phase = :phase, "
            "sync_processed = sync_processed + :delta, "
            "sync_estimate = COALESCE(:estimate, sync_estimate), sync_heartbeat_at = now() "
            "WHERE id = :id"
        ),
        {"id": account_id, "phase": phase, "delta": processed_delta, "estimate": estimate},
    )


async def finish_run(session: AsyncSession, account_id: UUID) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET sync_state = 'idle', sync_phase = 'done', "
            "sync_finished_at = now(), last_synced_at = now(), last_error = NULL, "
            "last_error_at = NULL, "
            "status = CASE WHEN status IN ('syncing', 'error') THEN 'active' ELSE status END "
            "WHERE id = :id"
        ),
        {"id": account_id},
    )


async def fail_run(
    session: AsyncSession,
    account_id: UUID,
    error: str,
    *,
    status: str | None = None,
    state: str = "failed",
) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET sync_state = :state, sync_finished_at = now(), "
            "last_error = :error, last_error_at = now(), "
            "status = CASE WHEN status IN ('reauth_required', 'disconnected') THEN status "
            "ELSE COALESCE(:status, CASE WHEN status = 'syncing' THEN 'active' ELSE status END) "
            "END WHERE id = :id"
        ),
        {"id": account_id, "error": error, "status": status, "state": state},
    )


async def set_push_channel(
    session: AsyncSession,
    account_id: UUID,
    channel_id: str | None,
    expires_at: Any,
    resource: str | None,
) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET push_channel_id = :c, push_expires_at = :e, "
            "push_resource = :r, updated_at = now() WHERE id = :id"
        ),
        {"c": channel_id, "e": expires_at, "r": resource, "id": account_id},
    )


async def window_provider_ids(
    session: AsyncSession, account_id: UUID, since: Any, folders: tuple[str, ...] | None
) -> set[str]:
    sql = (
        "SELECT provider_message_id FROM ce_emails WHERE account_id = :a AND "
        "provider_message_id IS NOT NULL AND received_at >= :since"
    )
    params: dict[str, Any] = {"a": account_id, "since": since}
    if folders:
        sql += " AND folder = ANY(:folders)"
        params["folders"] = list(folders)
    return set((await session.execute(text(sql), params)).scalars())
