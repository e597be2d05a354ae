"""SQL of connected mailboxes and OAuth states (RLS scopes every statement to the org)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import CursorResult, text
from sqlalchemy.ext.asyncio import AsyncSession

INACTIVE = ("reauth_required", "disconnected")
"""Statuses of a mailbox that must be connected again before anything runs for it."""


@dataclass(frozen=True)
class ConnectedAccount:
    """A row of ce_email_accounts, without its secrets."""

    id: UUID
    org_id: UUID
    owner_user_id: UUID
    provider: str
    email_address: str
    display_name: str | None
    status: str
    status_reason: str | None
    visibility: str
    last_synced_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    push_channel_id: str | None
    push_expires_at: datetime | None
    push_resource: str | None
    token_expires_at: datetime | None
    sync_cursor: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PendingAuthorization:
    """What a consumed OAuth state carries to the rest of the callback."""

    user_id: UUID
    code_verifier: str
    return_to: str


ACCOUNT_COLUMNS = ", ".join(f.name for f in fields(ConnectedAccount))


async def insert_state(
    session: AsyncSession,
    *,
    org_id: UUID,
    user_id: UUID,
    provider: str,
    code_verifier: str,
    return_to: str,
    expires_at: datetime,
) -> UUID:
    result = await session.execute(
        text(
            "INSERT INTO ce_oauth_states (org_id, user_id, provider, code_verifier, return_to, "
            "expires_at) VALUES (:org_id, :user_id, :provider, :verifier, :return_to, "
            ":expires_at) RETURNING id"
        ),
        {
            "org_id": org_id,
            "user_id": user_id,
            "provider": provider,
            "verifier": code_verifier,
            "return_to": return_to,
            "expires_at": expires_at,
        },
    )
    return UUID(str(result.scalar_one()))


async def consume_state(
    session: AsyncSession, state_id: UUID, provider: str
) -> PendingAuthorization | None:
    """Marks the state used and returns it, or None when unknown, used, expired or for
    another provider. One UPDATE, so two callbacks racing with one state cannot both win."""
    row = (
        await session.execute(
            text(
                "UPDATE ce_oauth_states SET used_at = now() "
                "WHERE id = :id AND provider = :provider AND used_at IS NULL "
                "AND expires_at > now() RETURNING user_id, code_verifier, return_to"
            ),
            {"id": state_id, "provider": provider},
        )
    ).first()
    if row is None:
        return None
    return PendingAuthorization(UUID(str(row.user_id)), row.code_verifier, row.return_to)


async def orgs_with_expired_states(session: AsyncSession, limit: int) -> list[UUID]:
    """Orgs holding states a day past expiry; readable without an org context (a SECURITY
    DEFINER function that returns org ids only)."""
    rows = await session.execute(
        text("SELECT org_id FROM ce_orgs_with_expired_oauth_states(:limit)"), {"limit": limit}
    )
    return [UUID(str(org_id)) for (org_id,) in rows]


async def delete_expired_states(session: AsyncSession) -> int:
    """The transaction's org's states a day past expiry. Returns how many were deleted."""
    result = await session.execute(
        text("DELETE FROM ce_oauth_states WHERE expires_at < now() - interval '1 day'")
    )
    return cast(CursorResult[Any], result).rowcount


async def upsert_connected_account(
    session: AsyncSession,
    *,
    org_id: UUID,
    owner_user_id: UUID,
    provider: str,
    email_address: str,
    display_name: str | None,
    token_expires_at: datetime,
    scopes: str | None,
) -> tuple[UUID, bool]:
    """Same mailbox → same account: re-connecting reactivates it. Returns (id, created)."""
    row = (
        await session.execute(
            text(
                "INSERT INTO ce_email_accounts (org_id, owner_user_id, provider, email_address, "
                "display_name, status, token_expires_at, scopes, visibility) "
                "VALUES (:org_id, :owner, :provider, :address, :display_name, 'active', "
                ":expires_at, :scopes, COALESCE((SELECT s.email_default_visibility "
                "FROM ce_module_settings s WHERE s.org_id = :org_id), 'metadata')) "
                "ON CONFLICT (org_id, provider, email_address) DO UPDATE SET "
                "owner_user_id = EXCLUDED.owner_user_id, display_name = EXCLUDED.display_name, "
                "status = 'active', status_reason = NULL, last_error = NULL, "
                "last_error_at = NULL, token_expires_at = EXCLUDED.token_expires_at, "
                "scopes = EXCLUDED.scopes, updated_at = now() "
                "RETURNING id, (xmax = 0) AS created"
            ),
            {
                "org_id": org_id,
                "owner": owner_user_id,
                "provider": provider,
                "address": email_address,
                "display_name": display_name,
                "expires_at": token_expires_at,
                "scopes": scopes,
            },
        )
    ).one()
    return UUID(str(row.id)), bool(row.created)


async def set_secret_ids(
    session: AsyncSession, account_id: UUID, access_id: UUID, refresh_id: UUID | None
) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET access_secret_id = :a, "
            "refresh_secret_id = COALESCE(:r, refresh_secret_id), updated_at = now() "
            "WHERE id = :id"
        ),
        {"a": access_id, "r": refresh_id, "id": account_id},
    )


async def get_account(
    session: AsyncSession, account_id: UUID, *, lock: bool = False
) -> ConnectedAccount | None:
    sql = f"SELECT {ACCOUNT_COLUMNS} FROM ce_email_accounts WHERE id = :id"
    if lock:
        sql += " FOR UPDATE"
    row = (await session.execute(text(sql), {"id": account_id})).mappings().first()
    return ConnectedAccount(**row) if row is not None else None


async def list_accounts(session: AsyncSession) -> list[ConnectedAccount]:
    rows = await session.execute(
        text(f"SELECT {ACCOUNT_COLUMNS} FROM ce_email_accounts ORDER BY created_at, id")
    )
    return [ConnectedAccount(**row) for row in rows.mappings()]


async def set_visibility(session: AsyncSession, account_id: UUID, visibility: str) -> None:
    await session.execute(
        text("UPDATE ce_email_accounts SET visibility = :v, updated_at = now() WHERE id = :id"),
        {"v": visibility, "id": account_id},
    )


async def set_token_expiry(session: AsyncSession, account_id: UUID, expires_at: datetime) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET token_expires_at = :e, updated_at = now() WHERE id = :id"
        ),
        {"e": expires_at, "id": account_id},
    )


async def mark_reauth_required(session: AsyncSession, account_id: UUID, reason: str) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET status = 'reauth_required', status_reason = :reason, "
            "last_error = :reason, last_error_at = now(), updated_at = now() WHERE id = :id"
        ),
        {"reason": reason, "id": account_id},
    )


async def mark_disconnected(session: AsyncSession, account_id: UUID) -> None:
    await session.execute(
        text(
            "UPDATE ce_email_accounts SET status = 'disconnected', status_reason = 'deleted', "
            "push_channel_id = NULL, push_expires_at = NULL, push_resource = NULL, "
            "access_secret_id = NULL, refresh_secret_id = NULL, sync_cursor = '{}'::jsonb, "
            "updated_at = now() WHERE id = :id"
        ),
        {"id": account_id},
    )


async def delete_account(session: AsyncSession, account_id: UUID) -> None:
    await session.execute(text("DELETE FROM ce_email_accounts WHERE id = :id"), {"id": account_id})
