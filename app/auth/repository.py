"""SQL of the caller's identity: membership in the org of the transaction (RLS scopes it)."""

from __future__ import annotations

from typing import Literal, cast
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

Role = Literal["member", "admin"]


async def membership_role(session: AsyncSession, user_id: UUID) -> Role | None:
    """The user's role in the transaction's org, or None when not a member."""
    role = (
        await session.execute(
            text("SELECT role FROM org_memberships WHERE user_id = :user_id"),
            {"user_id": user_id},
        )
    ).scalar_one_or_none()
    # org_memberships.role is CHECKed to these two values in the schema
    return cast(Role | None, role)
