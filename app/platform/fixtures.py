"""Development fixtures (SANDBOX.md "Development fixtures"): orgs, users, tokens, contacts,
partners and documents. The platform owns these tables in production, so these run on the
owner connection and refuse to run when CE_ENV=production."""

from __future__ import annotations

import asyncio
import mimetypes
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.tokens import issue_token
from app.config import Settings
from app.platform.documents import document_storage, sha256_hex


class FixturesRefused(RuntimeError):
    pass


def _refuse_in_production(settings: Settings) -> None:
    if settings.is_production:
        raise FixturesRefused("development fixtures are refused when CE_ENV=production")


def normalize_fixture_address(value: str) -> str:
    address = value.strip().lower()
    if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
        raise ValueError("not an email address")
    return address


def normalize_fixture_domain(value: str) -> str:
    domain = value.strip().lower().lstrip("@").strip(".")
    if "." not in domain or "/" in domain or " " in domain:
        raise ValueError("not a domain")
    return domain


async def _link_existing(
    settings: Settings, org_id: uuid.UUID, kind: str, entity_id: uuid.UUID
) -> None:
    """A contact or partner created later is linked to the mail already synced (as the
    CE-01/CE-02 change events do in production), through RLS as ce_app."""
    from app.db.engine import create_database
    from app.db.rls import org_transaction
    from app.matching.service import (
        link_existing_emails_for_contact,
        link_existing_emails_for_partner,
    )

    db = create_database(settings)
    try:
        async with org_transaction(db.engine, org_id) as session:
            if kind == "contact":
                await link_existing_emails_for_contact(session, entity_id)
            else:
                await link_existing_emails_for_partner(session, entity_id)
    finally:
        await db.dispose()


async def seed_org(engine: AsyncEngine, settings: Settings, name: str) -> dict[str, Any]:
    _refuse_in_production(settings)
    org_id = uuid.uuid4()
    slug = uuid.uuid4().hex[:8]
    people = {}
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO organisations (id, name) VALUES (:id, :name)"),
            {"id": org_id, "name": name},
        )
        for role in ("admin", "member"):
            user_id = uuid.uuid4()
            email = f"{role}-{slug}@staff.example.org"
            await conn.execute(
                text("INSERT INTO users (id, email, display_name) VALUES (:id, :email, :n)"),
                {"id": user_id, "email": email, "n": f"{name} {role}"},
            )
            await conn.execute(
                text(
                    "INSERT INTO org_memberships (org_id, user_id, role) "
                    "VALUES (:org_id, :user_id, :role)"
                ),
                {"org_id": org_id, "user_id": user_id, "role": role},
            )
            people[role] = {
                "user_id": str(user_id),
                "email": email,
                "token": issue_token(settings, user_id, org_id),
            }
    return {"org_id": str(org_id), "admin": people["admin"], "member": people["member"]}


async def add_contact(
    engine: AsyncEngine,
    settings: Settings,
    org_id: uuid.UUID,
    emails: list[str],
    name: str | None = None,
) -> dict[str, Any]:
    _refuse_in_production(settings)
    addresses = list(dict.fromkeys(normalize_fixture_address(e) for e in emails))
    contact_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO contacts (id, org_id, name) VALUES (:id, :org_id, :name)"),
            {"id": contact_id, "org_id": org_id, "name": name},
        )
        for address in addresses:
            await conn.execute(
                text(
                    "INSERT INTO contact_emails (org_id, contact_id, email) "
                    "VALUES (:org_id, :contact_id, :email)"
                ),
                {"org_id": org_id, "contact_id": contact_id, "email": address},
            )
    await _link_existing(settings, org_id, "contact", contact_id)
    return {"contact_id": str(contact_id)}


async def add_partner(
    engine: AsyncEngine,
    settings: Settings,
    org_id: uuid.UUID,
    domains: list[str],
    name: str | None = None,
) -> dict[str, Any]:
    _refuse_in_production(settings)
    cleaned = list(dict.fromkeys(normalize_fixture_domain(d) for d in domains))
    partner_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO partners (id, org_id, name) VALUES (:id, :org_id, :name)"),
            {"id": partner_id, "org_id": org_id, "name": name},
        )
        for domain in cleaned:
            await conn.execute(
                text(
                    "INSERT INTO partner_domains (org_id, partner_id, domain) "
                    "VALUES (:org_id, :partner_id, :domain)"
                ),
                {"org_id": org_id, "partner_id": partner_id, "domain": domain},
            )
    await _link_existing(settings, org_id, "partner", partner_id)
    return {"partner_id": str(partner_id)}


async def add_document(
    engine: AsyncEngine, settings: Settings, org_id: uuid.UUID, path: Path
) -> dict[str, Any]:
    _refuse_in_production(settings)
    content = await asyncio.to_thread(path.read_bytes)
    storage_key = await asyncio.to_thread(document_storage(settings).put, content)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    document_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO documents (id, org_id, filename, content_type, size, sha256, "
                "storage_key) VALUES (:id, :org_id, :filename, :ct, :size, :sha, :key)"
            ),
            {
                "id": document_id,
                "org_id": org_id,
                "filename": path.name,
                "ct": content_type,
                "size": len(content),
                "sha": sha256_hex(content),
                "key": storage_key,
            },
        )
    return {"document_id": str(document_id)}
