"""Threading a reply: its In-Reply-To and References headers and the provider's thread.

The original's ids come from our copy of it; when it was synced in another mailbox than
the one the reply is sent from, the same message is looked up by Message-ID in the
sending mailbox. A reply whose original is gone is sent unthreaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.providers import errors as provider_errors
from app.providers.base import MailProvider
from app.providers.rfc822 import header_values
from app.send import repository

MAX_REFERENCES = 20
_MESSAGE_IDS = re.compile(r"<([^<>\s]+)>")


@dataclass
class Threading:
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    thread_id: str | None = None
    reply_to_provider_id: str | None = None


def references_of(parent_refs: Sequence[str], parent_id: str) -> list[str]:
    refs = list(dict.fromkeys([*parent_refs, parent_id]))
    if len(refs) > MAX_REFERENCES:  # keep the thread's root and the latest
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    return refs


async def reply_threading(
    session: AsyncSession, account_id: UUID, parent_id: UUID | None
) -> Threading:
    """How a send from `account_id` answering email `parent_id` (if any) is threaded."""
    if parent_id is None:
        return Threading()
    parent = await repository.reply_context(session, parent_id)
    if parent is None or not parent.internet_message_id:
        return Threading()  # the original was deleted meanwhile: send unthreaded
    imid = parent.internet_message_id
    threading = Threading(
        in_reply_to=imid,
        references=references_of([parent.in_reply_to] if parent.in_reply_to else [], imid),
    )
    if parent.account_id == account_id and parent.provider_message_id:
        threading.reply_to_provider_id = parent.provider_message_id
        threading.thread_id = parent.provider_thread_id
    else:
        copy = await repository.copy_in_account(session, account_id, imid)
        if copy is not None:
            threading.reply_to_provider_id = copy.provider_message_id
            threading.thread_id = copy.provider_thread_id
    return threading


async def complete_references(provider: MailProvider, threading: Threading) -> None:
    """A driver that threads by References (Gmail) needs the original's own References from
    the provider (they are not stored); Graph's createReply sets them itself."""
    if not (
        provider.needs_reply_references and threading.reply_to_provider_id and threading.in_reply_to
    ):
        return
    try:
        [original] = await provider.get_messages([threading.reply_to_provider_id])
    except provider_errors.NotFound:
        original = None
    if original is None:
        threading.thread_id = None  # gone from the mailbox: no thread to join
        threading.reply_to_provider_id = None
        return
    value = header_values(original.raw, "references")["references"] or ""
    threading.references = references_of(_MESSAGE_IDS.findall(value), threading.in_reply_to)
