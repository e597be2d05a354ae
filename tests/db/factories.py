"""Rows for every org table, written as the owner (the way other modules would)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def insert(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.begin() as conn:
        result = await conn.execute(text(sql), params)
        return result.scalar() if result.returns_rows else None


async def make_account(
    engine: AsyncEngine,
    org_id: uuid.UUID,
    owner: uuid.UUID,
    address: str | None = None,
    provider: str = "gmail",
) -> uuid.UUID:
    return await insert(
        engine,
        "INSERT INTO ce_email_accounts (org_id, owner_user_id, provider, email_address) "
        "VALUES (:org, :owner, :provider, :address) RETURNING id",
        org=org_id,
        owner=owner,
        provider=provider,
        address=address or f"box-{uuid.uuid4().hex[:8]}@clinic.example",
    )


async def make_email(
    engine: AsyncEngine,
    org_id: uuid.UUID,
    account_id: uuid.UUID,
    subject: str = "Hello",
    direction: str = "inbound",
) -> uuid.UUID:
    return await insert(
        engine,
        "INSERT INTO ce_emails (org_id, account_id, provider_message_id, direction, status, "
        "subject, occurred_at) VALUES (:org, :account, :pid, :direction, :status, :subject, "
        "now()) RETURNING id",
        org=org_id,
        account=account_id,
        pid=uuid.uuid4().hex,
        direction=direction,
        status="received" if direction == "inbound" else "sent",
        subject=subject,
    )


async def make_contact(engine: AsyncEngine, org_id: uuid.UUID, address: str) -> uuid.UUID:
    contact_id = await insert(
        engine, "INSERT INTO contacts (org_id, name) VALUES (:org, 'C') RETURNING id", org=org_id
    )
    await insert(
        engine,
        "INSERT INTO contact_emails (org_id, contact_id, email) VALUES (:org, :c, :e)",
        org=org_id,
        c=contact_id,
        e=address,
    )
    return contact_id


async def make_partner(engine: AsyncEngine, org_id: uuid.UUID, domain: str) -> uuid.UUID:
    partner_id = await insert(
        engine, "INSERT INTO partners (org_id, name) VALUES (:org, 'P') RETURNING id", org=org_id
    )
    await insert(
        engine,
        "INSERT INTO partner_domains (org_id, partner_id, domain) VALUES (:org, :p, :d)",
        org=org_id,
        p=partner_id,
        d=domain,
    )
    return partner_id


async def populate_every_table(engine: AsyncEngine, org: dict[str, Any]) -> dict[str, Any]:
    """One or more rows in every org table for `org` (a seed-org result)."""
    org_id = uuid.UUID(org["org_id"])
    admin = uuid.UUID(org["admin"]["user_id"])
    contact = await make_contact(engine, org_id, f"pat-{uuid.uuid4().hex[:6]}@example.net")
    partner = await make_partner(engine, org_id, f"h{uuid.uuid4().hex[:6]}.org")
    account = await make_account(engine, org_id, admin)
    email = await make_email(engine, org_id, account)
    await insert(
        engine,
        "INSERT INTO ce_email_links (org_id, email_id, contact_id) VALUES (:o, :e, :c)",
        o=org_id,
        e=email,
        c=contact,
    )
    document = await insert(
        engine,
        "INSERT INTO documents (org_id, filename, size, sha256, storage_key) "
        "VALUES (:o, 'a.pdf', 1, 'x', 'k') RETURNING id",
        o=org_id,
    )
    await insert(
        engine,
        "INSERT INTO ce_email_attachments (org_id, email_id, filename, document_id) "
        "VALUES (:o, :e, 'a.pdf', :d)",
        o=org_id,
        e=email,
        d=document,
    )
    await insert(
        engine,
        "INSERT INTO ce_email_tracking_events (org_id, email_id, type) VALUES (:o, :e, 'opened')",
        o=org_id,
        e=email,
    )
    await insert(
        engine,
        "INSERT INTO ce_module_settings (org_id, email_sync_history_days) VALUES (:o, 45)",
        o=org_id,
    )
    await insert(
        engine,
        "INSERT INTO notifications (org_id, user_id, type) VALUES (:o, :u, 'email_opened')",
        o=org_id,
        u=admin,
    )
    await insert(
        engine,
        "INSERT INTO vault.secrets (org_id, account_id, kind, key_id, nonce, ciphertext) "
        "VALUES (:o, :a, 'access_token', 'k', '\\x00', '\\x00')",
        o=org_id,
        a=account,
    )
    return {
        "contact": contact,
        "partner": partner,
        "account": account,
        "email": email,
        "document": document,
    }
