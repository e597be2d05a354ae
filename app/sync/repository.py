"""SQL of sync state: cursors, progress, known provider ids, push channels and their
health, due accounts.

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


class PushRecord(NamedTuple):
    channel_id: str | None
    expires_at: datetime | None
    resource: str | None
    registered_at: datetime | None
    state: str


class PushStatusRow(NamedTuple):
    state: str
    expires_at: datetime | None
    last_notification_at: datetime | None
    rearmed: int
    poll_interval_seconds: int


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
    """Store the channel the provider registered; its lifetime counts from now."""
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET push_channel_id = :c, push_expires_at = :e, "
            "push_resource = :r, push_registered_at = CASE WHEN CAST(:c AS text) IS NULL "
            "THEN NULL ELSE now() END, updated_at = now() WHERE id = :id"
        ),
        {"c": channel_id, "e": expires_at, "r": resource, "id": account_id},
    )


async def push_record(session: AsyncSession, account_id: UUID) -> PushRecord | None:
    row = (
        await session.execute(
            text(
                "SELECT push_channel_id, push_expires_at, push_resource, push_registered_at, "
                "ce_push_state(push_channel_id, push_expires_at, push_silent_since) "
                "FROM ce_email_accounts WHERE id = :id"
            ),
            {"id": account_id},
        )
    ).first()
    return None if row is None else PushRecord(*row)


async def record_notification(session: AsyncSession, account_id: UUID) -> None:
    """A verified notification arrived: push works (again)."""
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET push_last_notification_at = now(), "
            "push_silent_since = NULL WHERE id = :id"
        ),
        {"id": account_id},
    )


async def unannounced_mail(
    session: AsyncSession,
    account_id: UUID,
    *,
    stored_since: datetime,
    grace_seconds: int,
    burst_seconds: float,
    quiet_seconds: int,
) -> bool:
    """Whether inbox mail is stored that push should have announced and did not.

    Mail counts when it arrived after the channel was registered (plus the grace) and
    after the last notification (plus the grace, or the provider's coalescing window: one
    notification may stand for a burst), and long enough ago for its notification to have
    come. It must have been stored since `stored_since` (by this sync), unless push has
    been quiet for the whole quiet period (then any such mail counts).
    """
    found = await session.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM ce_emails e JOIN ce_email_accounts a "
            "ON a.id = e.account_id AND a.org_id = e.org_id "
            "WHERE a.id = :a AND a.push_channel_id IS NOT NULL "
            "AND e.direction = 'inbound' AND e.folder = 'inbox' "
            "AND e.occurred_at > a.push_registered_at + make_interval(secs => :grace) "
            "AND (a.push_last_notification_at IS NULL OR e.occurred_at > "
            "a.push_last_notification_at + make_interval(secs => GREATEST(:grace, :burst))) "
            "AND e.occurred_at <= now() - make_interval(secs => :grace) "
            "AND (e.created_at >= :since OR GREATEST(a.push_registered_at, "
            "a.push_last_notification_at) < now() - make_interval(secs => :quiet)))"
        ),
        {
            "a": account_id,
            "grace": float(grace_seconds),
            "burst": float(burst_seconds),
            "quiet": float(quiet_seconds),
            "since": stored_since,
        },
    )
    return bool(found.scalar_one())


async def mark_push_silent(session: AsyncSession, account_id: UUID, *, rearmed: bool) -> None:
    """Push is silent (until a notification arrives); `rearmed`: its channel was
    registered again for it."""
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET push_silent_since = COALESCE(push_silent_since, now()), "
            "push_rearmed = push_rearmed + CASE WHEN :r THEN 1 ELSE 0 END WHERE id = :id"
        ),
        {"r": rearmed, "id": account_id},
    )


async def note_new_mail(session: AsyncSession, account_id: UUID) -> None:
    """A sync stored new mail (idle mailboxes without push are polled less often)."""
    await session.execute(
        text("UPDATE ce_email_accounts SET last_mail_at = now() WHERE id = :id"),
        {"id": account_id},
    )


async def push_status(
    session: AsyncSession, account_id: UUID, min_interval_seconds: int
) -> PushStatusRow | None:
    row = (
        await session.execute(
            text(
                "SELECT ce_push_state(a.push_channel_id, a.push_expires_at, a.push_silent_since), "
                "a.push_expires_at, a.push_last_notification_at, a.push_rearmed, "
                "CAST(extract(epoch FROM ce_poll_interval("
                "ce_push_state(a.push_channel_id, a.push_expires_at, a.push_silent_since), "
                "now() - COALESCE(a.last_mail_at, a.created_at), "
                "COALESCE(s.email_sync_interval_minutes, 15), :min)) AS integer) "
                "FROM ce_email_accounts a "
                "LEFT JOIN ce_module_settings s ON s.org_id = a.org_id WHERE a.id = :id"
            ),
            {"id": account_id, "min": min_interval_seconds},
        )
    ).first()
    return None if row is None else PushStatusRow(*row)


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


async def accounts_due_for_sync(
    session: AsyncSession, limit: int, min_interval_seconds: int
) -> list[AccountRef]:
    """Accounts whose polling interval has passed (sql/120: by push health)."""
    rows = await session.execute(
        text("SELECT org_id, account_id FROM ce_accounts_due_for_poll(:m, :n)"),
        {"m": min_interval_seconds, "n": limit},
    )
    return [AccountRef(*row) for row in rows]


async def accounts_push_renewal_due(session: AsyncSession, limit: int) -> list[ExpiringPush]:
    """Push channels to renew before they expire (sql/120: from the granted lifetime)."""
    rows = await session.execute(
        text("SELECT org_id, account_id, provider FROM ce_accounts_push_renewal_due(:n)"),
        {"n": limit},
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
