"""Per-thread sharing: the owner of a mailbox shows one thread (later messages included)
to the whole org at `org` level, whatever the mailbox's own level; and withdraws it."""

from __future__ import annotations

from uuid import UUID

from app.auth.deps import Caller
from app.errors import Conflict, Forbidden, NotFound
from app.messages.repository import shares
from app.messages.repository.shares import EmailThread


async def _owned_thread(caller: Caller, email_id: UUID) -> EmailThread:
    thread = await shares.thread_of(caller.session, email_id)
    if thread is None:
        raise NotFound("No such email")
    if thread.owner_user_id != caller.user_id:
        raise Forbidden("Only the mailbox's owner may share its mail")
    if thread.provider_thread_id is None:
        raise Conflict("The email has no provider thread to share yet")
    return thread


async def share(caller: Caller, email_id: UUID) -> None:
    thread = await _owned_thread(caller, email_id)
    await shares.share_thread(caller.session, caller.org_id, thread, caller.user_id)


async def withdraw(caller: Caller, email_id: UUID) -> None:
    thread = await _owned_thread(caller, email_id)
    await shares.unshare_thread(caller.session, thread)
