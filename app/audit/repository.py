"""SQL of the access audit: append a row, list rows, seal blocks, purge expired blocks.

RLS scopes every statement to the transaction's org. The service role may only INSERT and
SELECT here; marking rows sealed and deleting expired blocks go through SECURITY DEFINER
functions (sql/130_access_audit.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.chain import AuditRow

Action = Literal["read", "download", "list"]

_ROW_COLUMNS = "org_id, id, user_id, action, email_ids, attachment_id, occurred_at, request_id"

# One statement: the audit row and its by-email index rows. No RETURNING: a row returned
# must pass the table's SELECT policy, which judges every email the row names (sql/150),
# work an append does not need.
_INSERT = text(
    "WITH row AS MATERIALIZED (SELECT gen_random_uuid() AS id, clock_timestamp() AS at), "
    "audit AS (INSERT INTO ce_email_access_audit "
    "(org_id, id, user_id, action, email_ids, attachment_id, request_id, occurred_at) "
    "SELECT CAST(:org_id AS uuid), row.id, CAST(:user_id AS uuid), CAST(:action AS text), "
    "CAST(:email_ids AS uuid[]), CAST(:attachment_id AS uuid), CAST(:request_id AS text), "
    "row.at FROM row) "
    "INSERT INTO ce_email_access_audit_emails (org_id, email_id, occurred_at, audit_id) "
    "SELECT DISTINCT CAST(:org_id AS uuid), e.email_id, row.at, row.id "
    "FROM row, unnest(CAST(:email_ids AS uuid[])) AS e (email_id)"
)


async def append(
    session: AsyncSession,
    *,
    org_id: UUID,
    user_id: UUID,
    action: Action,
    email_ids: Sequence[UUID],
    attachment_id: UUID | None,
    request_id: str | None,
) -> None:
    await session.execute(
        _INSERT,
        {
            "org_id": org_id,
            "user_id": user_id,
            "action": action,
            "email_ids": list(email_ids),
            "attachment_id": attachment_id,
            "request_id": request_id,
        },
    )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: UUID
    user_id: UUID
    action: Action
    email_ids: list[UUID]
    attachment_id: UUID | None
    occurred_at: datetime
    request_id: str | None
    block_seq: int | None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    user_id: UUID | None = None
    email_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_entries(
    session: AsyncSession, q: AuditQuery, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[AuditEntry]:
    """Newest first, keyset on (occurred_at, id); `since` inclusive, `until` exclusive.

    With an email, the walk is over that email's side-table rows (an index range scan)."""
    if q.email_id is not None:
        source = (
            "ce_email_access_audit_emails k JOIN ce_email_access_audit a "
            "ON a.org_id = k.org_id AND a.id = k.audit_id AND k.email_id = :email_id"
        )
        order_time, order_id = "k.occurred_at", "k.audit_id"
    else:
        source, order_time, order_id = "ce_email_access_audit a", "a.occurred_at", "a.id"
    conditions = ["TRUE"]
    params: dict[str, Any] = {"limit": limit, "email_id": q.email_id}
    if q.user_id is not None:
        conditions.append("a.user_id = :user_id")
        params["user_id"] = q.user_id
    if q.since is not None:
        conditions.append(f"{order_time} >= :since")
        params["since"] = q.since
    if q.until is not None:
        conditions.append(f"{order_time} < :until")
        params["until"] = q.until
    if after is not None:
        conditions.append(f"({order_time}, {order_id}) < (:after_time, :after_id)")
        params["after_time"], params["after_id"] = after
    sql = (
        "SELECT a.id, a.user_id, a.action, a.email_ids, a.attachment_id, a.occurred_at, "
        f"a.request_id, a.block_seq FROM {source} WHERE {' AND '.join(conditions)} "
        f"ORDER BY {order_time} DESC, {order_id} DESC LIMIT :limit"
    )
    rows = await session.execute(text(sql), {k: v for k, v in params.items() if f":{k}" in sql})
    return [AuditEntry(*row) for row in rows]


async def mailbox_owner_of(session: AsyncSession, email_id: UUID) -> UUID | None:
    """The user who connected the mailbox holding the email; None when the email does not
    exist for the caller (row-level security hides it)."""
    result = await session.execute(
        text(
            "SELECT a.owner_user_id FROM ce_emails e "
            "JOIN ce_email_accounts a ON a.id = e.account_id WHERE e.id = :id"
        ),
        {"id": email_id},
    )
    owner: UUID | None = result.scalar()
    return owner


# --- sealing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    seq: int
    first_row_id: UUID
    last_row_id: UUID
    first_occurred_at: datetime
    last_occurred_at: datetime
    row_count: int
    prev_hash: str
    hash: str
    sealed_at: datetime


_BLOCK_COLUMNS = (
    "seq, first_row_id, last_row_id, first_occurred_at, last_occurred_at, row_count, "
    "prev_hash, hash, sealed_at"
)


def _audit_row(row: Any) -> AuditRow:
    org_id, id_, user_id, action, email_ids, attachment_id, occurred_at, request_id = row
    return AuditRow(
        org_id, id_, user_id, action, tuple(email_ids), attachment_id, occurred_at, request_id
    )


async def lock_sealing(session: AsyncSession, org_id: UUID) -> None:
    """One sealer per org at a time (the job and `ce-email audit seal` may overlap)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('ce_email_audit_seal:' || :org, 0))"),
        {"org": str(org_id)},
    )


async def last_block(session: AsyncSession) -> Block | None:
    row = (
        await session.execute(
            text(f"SELECT {_BLOCK_COLUMNS} FROM ce_email_audit_blocks ORDER BY seq DESC LIMIT 1")
        )
    ).first()
    return Block(*row) if row is not None else None


async def unsealed_rows(session: AsyncSession, limit: int) -> list[AuditRow]:
    rows = await session.execute(
        text(
            f"SELECT {_ROW_COLUMNS} FROM ce_email_access_audit WHERE block_seq IS NULL "
            "ORDER BY occurred_at, id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [_audit_row(r) for r in rows]


async def append_block(session: AsyncSession, org_id: UUID, block: Block) -> None:
    await session.execute(
        text(
            f"INSERT INTO ce_email_audit_blocks (org_id, {_BLOCK_COLUMNS}) VALUES (:org_id, "
            ":seq, :first_row_id, :last_row_id, :first_occurred_at, :last_occurred_at, "
            ":row_count, :prev_hash, :hash, :sealed_at)"
        ),
        {
            "org_id": org_id,
            "seq": block.seq,
            "first_row_id": block.first_row_id,
            "last_row_id": block.last_row_id,
            "first_occurred_at": block.first_occurred_at,
            "last_occurred_at": block.last_occurred_at,
            "row_count": block.row_count,
            "prev_hash": block.prev_hash,
            "hash": block.hash,
            "sealed_at": block.sealed_at,
        },
    )


async def mark_sealed(session: AsyncSession, seq: int, row_ids: Sequence[UUID]) -> int:
    marked: int = (
        await session.execute(
            text("SELECT ce_email_audit_mark_sealed(:seq, CAST(:ids AS uuid[]))"),
            {"seq": seq, "ids": list(row_ids)},
        )
    ).scalar_one()
    return marked


async def blocks(session: AsyncSession) -> list[Block]:
    rows = await session.execute(
        text(f"SELECT {_BLOCK_COLUMNS} FROM ce_email_audit_blocks ORDER BY seq")
    )
    return [Block(*r) for r in rows]


async def block_rows(session: AsyncSession, seq: int) -> list[AuditRow]:
    rows = await session.execute(
        text(
            f"SELECT {_ROW_COLUMNS} FROM ce_email_access_audit WHERE block_seq = :seq "
            "ORDER BY occurred_at, id"
        ),
        {"seq": seq},
    )
    return [_audit_row(r) for r in rows]


async def purge_expired(session: AsyncSession) -> tuple[int, int]:
    """(blocks, rows) deleted: whole oldest blocks past the org's audit retention."""
    row = (await session.execute(text("SELECT * FROM ce_email_audit_purge_expired()"))).one()
    return int(row[0]), int(row[1])


async def orgs_with_audit(session: AsyncSession, *, unsealed_only: bool, limit: int) -> list[UUID]:
    """Orgs with rows to seal (or, for verification, with any block or row): no org context
    needed, through a SECURITY DEFINER lookup that reads org ids only."""
    rows = await session.execute(
        text("SELECT org_id FROM ce_orgs_with_email_audit(:unsealed_only, :limit)"),
        {"unsealed_only": unsealed_only, "limit": limit},
    )
    return list(rows.scalars())
