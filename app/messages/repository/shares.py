"""SQL of per-thread sharing: a thread of one mailbox shown to the org at `org` level.

The policies consult ce_email_thread_shares through `ce_email_visible`; nothing here
decides who sees what.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class EmailThread:
    account_id: UUID
    owner_user_id: UUID
    provider_thread_id: str | None


async def thread_of(session: AsyncSession, email_id: UUID) -> EmailThread | None:
    """The email's mailbox, its owner and its thread, when the caller may see the email."""
    row = (
        await session.execute(
            text(
                "SELECT e.account_id, a.owner_user_id, e.provider_thread_id FROM ce_emails e "
                "JOIN ce_email_accounts a ON a.org_id = e.org_id AND a.id = e.account_id "
                "WHERE e.id = :id"
            ),
            {"id": email_id},
        )
    ).first()
    return EmailThread(*row) if row is not None else None


async def share_thread(
    session: AsyncSession, org_id: UUID, thread: EmailThread, user_id: UUID
) -> None:
    await session.execute(
        text(
            "INSERT INTO ce_email_thread_shares (org_id, account_id, provider_thread_id, "
            "shared_by) VALUES (:org_id, :account_id, :thread, :user_id) "
            "ON CONFLICT (org_id, account_id, provider_thread_id) DO NOTHING"
        ),
        {
            "org_id": org_id,
            "account_id": thread.account_id,
            "thread": thread.provider_thread_id,
            "user_id": user_id,
        },
    )


async def unshare_thread(session: AsyncSession, thread: EmailThread) -> None:
    await session.execute(
        text(
            "DELETE FROM ce_email_thread_shares "
            "WHERE account_id = :account_id AND provider_thread_id = :thread"
        ),
        {"account_id": thread.account_id, "thread": thread.provider_thread_id},
    )
