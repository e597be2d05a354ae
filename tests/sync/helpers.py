"""Seeding sandbox mailboxes and comparing them with what the service stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.messages.mime import parse_message
from tests.conftest import sandbox_of


def make_raw(
    sender: str, to: str, subject: str, body: str = "Hello", *, attachment: bytes | None = None
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="sandbox.test")
    msg.set_content(body)
    msg.add_alternative(f"<p>{body}</p>", subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="report.pdf")
    return bytes(msg)


async def seed(
    client: httpx.AsyncClient,
    provider: str,
    mailbox: str,
    raw: bytes,
    *,
    folder: str = "inbox",
    received_at: datetime | None = None,
) -> str:
    params = {"folder": folder}
    if received_at is not None:
        params["received_at"] = received_at.isoformat()
    r = await client.post(
        f"/_sandbox/{provider}/mailboxes/{mailbox}/messages",
        params=params,
        content=raw,
        headers={"Content-Type": "message/rfc822"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def seed_many(
    client: httpx.AsyncClient,
    provider: str,
    mailbox: str,
    count: int,
    *,
    folder: str = "inbox",
    sender: str | None = None,
) -> list[str]:
    ids = []
    for i in range(count):
        if folder == "sent":
            raw = make_raw(mailbox, f"patient{i}@example.net", f"Sent {i} {uuid.uuid4().hex[:6]}")
        else:
            raw = make_raw(
                sender or f"sender{i}@hospital.org", mailbox, f"Inbox {i} {uuid.uuid4().hex[:6]}"
            )
        ids.append(await seed(client, provider, mailbox, raw, folder=folder))
    return ids


def sandbox_messages(app: FastAPI, provider: str, mailbox: str, days: int = 30) -> dict[str, str]:
    """provider id → content hash of what the sandbox holds in inbox and sent, in the window."""
    box = getattr(sandbox_of(app), provider).mailboxes[mailbox]
    since_ms = (datetime.now(UTC) - timedelta(days=days)).timestamp() * 1000
    return {
        m.id: parse_message(m.raw, body_limit_bytes=500 * 1024).content_hash
        for m in box.messages.values()
        if m.folder in ("inbox", "sent") and m.received_ms >= since_ms
    }


async def stored_messages(owner_engine: AsyncEngine, account_id: str) -> dict[str, str]:
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT provider_message_id, content_hash FROM ce_emails WHERE account_id = :a"
                ),
                {"a": account_id},
            )
        ).all()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate rows"
    return {r[0]: r[1] for r in rows}


async def account_row(owner_engine: AsyncEngine, account_id: str) -> Any:
    async with owner_engine.connect() as conn:
        return (
            (
                await conn.execute(
                    text("SELECT * FROM ce_email_accounts WHERE id = :a"), {"a": account_id}
                )
            )
            .mappings()
            .one()
        )
