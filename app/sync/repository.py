"""SQL of sync state: cursors, progress, known provider ids, push channels, due accounts.

`known_provider_ids` and the page write (app.messages) are the sync's hot path: their
statements are tuned (sql/070) and kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.providers.base import Folder, SyncCursor


class AccountRef(NamedTuple):
    org_id: UUID
    account_id: UUID


class ExpiringPush(NamedTuple):
    org_id: UUID
    account_id: UUID
    provider: str


class SyncProgress(NamedTuple):
    state: str
    phase: str | None
    processed: int
    estimate: int | None
    started_at: datetime | None
    finished_at: datetime | None
    last_synced_at: datetime | None
    last_error: str | None


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


async def save_cursor(session: AsyncSession, account_id: UUID, cursor: SyncCursor) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET sync_cursor = CAST(:c AS jsonb), updated_at = now() "
            "WHERE id = :id"
        ),
        {"c": json.dumps(cursor.to_stored()), "id": account_id},
    )


async def stored_cursor(session: AsyncSession, account_id: UUID) -> SyncCursor | None:
    stored = (
        await session.execute(
            text("SELECT sync_cursor FROM ce_email_accounts WHERE id = :id"), {"id": account_id}
        )
    ).scalar_one_or_none()
    return None if stored is None else SyncCursor.from_stored(stored)


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
    expires_at: datetime | None,
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
    session: AsyncSession,
    account_id: UUID,
    since: datetime,
    folders: tuple[Folder, ...] | None,
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


async def sync_progress(session: AsyncSession, account_id: UUID) -> SyncProgress | None:
    row = (
        await session.execute(
            text(
                "SELECT sync_state, sync_phase, sync_processed, sync_estimate, sync_started_at, "
                "sync_finished_at, last_synced_at, last_error FROM ce_email_accounts WHERE id = :id"
            ),
            {"id": account_id},
        )
    ).first()
    return None if row is None else SyncProgress(*row)


async def hasten_waiting_sync(session: AsyncSession, queueing_lock: str, priority: int) -> None:
    """A sync waiting under `queueing_lock` gets at least `priority` and runs within a few
    seconds, even if it was a retry scheduled for later."""
    await session.execute(
        text(
            "UPDATE procrastinate_jobs SET priority = GREATEST(priority, :p), "
            "scheduled_at = CASE WHEN scheduled_at > now() + interval '5 seconds' "
            "THEN now() + interval '5 seconds' ELSE scheduled_at END "
            "WHERE queueing_lock = :lock AND status = 'todo'"
        ),
        {"p": priority, "lock": queueing_lock},
    )


async def accounts_by_address(
    session: AsyncSession, provider: str, address: str
) -> list[AccountRef]:
    """Every account connected with `address` at `provider`, across orgs (system role)."""
    rows = await session.execute(
        text("SELECT org_id, account_id FROM ce_find_accounts_by_address(:p, :a)"),
        {"p": provider, "a": address},
    )
    return [AccountRef(*row) for row in rows]


async def account_by_push_channel(
    session: AsyncSession, provider: str, channel_id: str
) -> AccountRef | None:
    """The account whose push channel is `channel_id` (system role)."""
    row = (
        await session.execute(
            text("SELECT org_id, account_id FROM ce_find_account_by_push_channel(:p, :s)"),
            {"p": provider, "s": channel_id},
        )
    ).first()
    return None if row is None else AccountRef(*row)


async def accounts_due_for_sync(session: AsyncSession, limit: int) -> list[AccountRef]:
    rows = await session.execute(
        text("SELECT org_id, account_id FROM ce_accounts_due_for_sync(:n)"), {"n": limit}
    )
    return [AccountRef(*row) for row in rows]


async def accounts_push_expiring(
    session: AsyncSession, before: datetime, limit: int
) -> list[ExpiringPush]:
    rows = await session.execute(
        text("SELECT org_id, account_id, provider FROM ce_accounts_push_expiring(:b, :n)"),
        {"b": before, "n": limit},
    )
    return [ExpiringPush(*row) for row in rows]


async def stale_syncs(session: AsyncSession, before: datetime, limit: int) -> list[AccountRef]:
    rows = await session.execute(
        text("SELECT org_id, account_id FROM ce_stale_syncs(:b, :n)"), {"b": before, "n": limit}
    )
    return [AccountRef(*row) for row in rows]


async def sent_email_by_message_ids(session: AsyncSession, ids: Sequence[str]) -> UUID | None:
    """The outbound email with the first of `ids` as its Message-ID (oldest first)."""
    row = (
        await session.execute(
            text(
                "SELECT id FROM ce_emails WHERE direction = 'outbound' "
                "AND internet_message_id = ANY(:ids) "
                "ORDER BY array_position(:ids, internet_message_id), created_at LIMIT 1"
            ),
            {"ids": list(ids)},
        )
    ).first()
    return UUID(str(row[0])) if row else None
