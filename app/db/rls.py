"""The one place that sets the org (and user) context of a transaction.

Requests and jobs alike open their transaction through `org_transaction`; RLS policies read
`app.org_id` / `app.user_id`. `set_config(..., true)` is transaction-local, so a pooled
connection never carries one org's context into another's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

logger = logging.getLogger(__name__)

_UNDO_ON_ROLLBACK = "ce_undo_on_rollback"

_SET_CONTEXT = text(
    "SELECT set_config('app.org_id', :org_id, true), set_config('app.user_id', :user_id, true)"
)


async def set_org_context(session: AsyncSession, org_id: UUID, user_id: UUID | None) -> None:
    await session.execute(
        _SET_CONTEXT, {"org_id": str(org_id), "user_id": str(user_id) if user_id else ""}
    )


@asynccontextmanager
async def acting_for_the_service(
    session: AsyncSession, org_id: UUID, user_id: UUID | None
) -> AsyncIterator[None]:
    """Within the caller's transaction, run the enclosed statements in the service's
    context (the org, no user), then give the transaction back its user. For work the
    caller was authorised to order on rows RLS may hide from that user: an admin who
    disconnects and purges a private mailbox must delete all of it, not what they see."""
    await set_org_context(session, org_id, None)
    yield
    await set_org_context(session, org_id, user_id)


def undo_on_rollback(session: AsyncSession, action: Callable[[], None]) -> None:
    """Register work done outside the database for this transaction (a document's file
    written to the store) to be undone if the transaction fails before its commit, so a
    rolled-back page leaves no file behind. Not run when the commit itself fails: the
    commit may have happened, and a document must never lose its bytes."""
    session.info.setdefault(_UNDO_ON_ROLLBACK, []).append(action)


def _undo(session: AsyncSession) -> None:
    # Synchronous on purpose: it also runs when the task is being cancelled.
    failed = 0
    for action in session.info.pop(_UNDO_ON_ROLLBACK, []):
        try:
            action()
        except (OSError, ValueError):
            failed += 1
    if failed:
        logger.warning("work outside a rolled-back transaction not undone", extra={"count": failed})


@asynccontextmanager
async def org_transaction(
    engine: AsyncEngine, org_id: UUID, user_id: UUID | None = None
) -> AsyncIterator[AsyncSession]:
    """A session in one transaction scoped to `org_id`: commits on success, rolls back on
    error (undoing what `undo_on_rollback` registered)."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        await set_org_context(session, org_id, user_id)
        try:
            yield session
        except BaseException:
            _undo(session)
            raise
        session.info.pop(_UNDO_ON_ROLLBACK, None)


@asynccontextmanager
async def system_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A transaction with no org: RLS shows no org rows. For lookups that must find the org
    first through a SECURITY DEFINER function, and for health checks."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        yield session
