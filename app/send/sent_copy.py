"""Finding a send's own copy in the mailbox's Sent folder: how a rerun of a send job
tells whether an earlier attempt went out (see app/send/runner.py)."""

from __future__ import annotations

from datetime import datetime

from app.messages.mime import normalise_message_id
from app.providers.base import MailProvider, SentMessage
from app.providers.rfc822 import header_values
from app.send.compose import SEND_MARKER_HEADER


def _is_our_copy(raw: bytes, internet_message_id: str | None, message_id: str) -> bool:
    if normalise_message_id(internet_message_id) == message_id:
        return True
    headers = header_values(raw, "message-id", SEND_MARKER_HEADER)
    return message_id in (
        normalise_message_id(headers["message-id"]),
        normalise_message_id(headers[SEND_MARKER_HEADER]),
    )


async def find_sent_copy(
    provider: MailProvider, message_id: str, since: datetime
) -> SentMessage | None:
    """Our message in the mailbox's Sent folder (sent since `since`), by Message-ID or by
    the `X-CE-Message-ID` header."""
    page_token: str | None = None
    while True:
        page = await provider.list_messages("sent", since, page_token)
        for start in range(0, len(page.added), 50):
            chunk = page.added[start : start + 50]
            for found in await provider.get_messages(chunk, folder="sent"):
                if found is not None and _is_our_copy(
                    found.raw, found.internet_message_id, message_id
                ):
                    return SentMessage(
                        provider_message_id=found.id,
                        thread_id=found.thread_id,
                        internet_message_id=found.internet_message_id,
                    )
        if not page.next_page_token:
            return None
        page_token = page.next_page_token
