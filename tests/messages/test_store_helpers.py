"""Building synced messages for the storage, matching and timeline tests (no tests here)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction
from app.messages.store import StoreResult, store_remote_messages
from app.platform.documents import DocumentStorage
from app.providers.base import Folder, RemoteMessage
from tests.db.factories import make_account


def build_raw(
    *,
    sender: str,
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    subject: str = "Hello",
    message_id: str | None = None,
    date: datetime | None = None,
    body: str = "Hello there.",
    html: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if bcc:
        message["Bcc"] = ", ".join(bcc)
    message["Subject"] = subject
    message_id = message_id or uuid.uuid4().hex
    message["Message-ID"] = f"<{message_id if '@' in message_id else message_id + '@mail.example'}>"
    message["Date"] = format_datetime(date or datetime(2026, 11, 2, 9, 30, tzinfo=UTC))
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return bytes(message)


def remote(
    raw: bytes,
    *,
    provider_id: str | None = None,
    folder: Folder = "inbox",
    received_at: datetime | None = None,
    thread_id: str | None = None,
) -> RemoteMessage:
    return RemoteMessage(
        id=provider_id or uuid.uuid4().hex,
        thread_id=thread_id,
        internet_message_id=None,
        folder=folder,
        received_at=received_at or datetime(2026, 11, 2, 9, 31, tzinfo=UTC),
        raw=raw,
        size=len(raw),
    )


async def new_account(
    owner_engine: AsyncEngine, org: Any, address: str, owner: str = "admin"
) -> dict[str, Any]:
    owner_id = uuid.UUID(org[owner]["user_id"])
    account_id = await make_account(owner_engine, org.id, owner_id, address=address)
    return {
        "id": account_id,
        "provider": "gmail",
        "email_address": address,
        "owner_user_id": owner_id,
    }


async def store(
    app_engine: AsyncEngine,
    org: Any,
    account: dict[str, Any],
    messages: Sequence[RemoteMessage],
    *,
    storage: DocumentStorage | None = None,
    body_limit_kb: int = 500,
    attachment_max_bytes: int = 25 * 1024 * 1024,
) -> StoreResult:
    async with org_transaction(app_engine, org.id) as session:
        return await store_remote_messages(
            session,
            org_id=org.id,
            account=account,
            messages=messages,
            body_limit_kb=body_limit_kb,
            storage=storage,
            attachment_max_bytes=attachment_max_bytes,
        )


async def rows(app_engine: AsyncEngine, org: Any, sql: str, **params: Any) -> list[dict]:
    async with org_transaction(app_engine, org.id) as session:
        result = await session.execute(text(sql), params)
        return [dict(r) for r in result.mappings()]
