"""Development fixtures (SANDBOX.md "Development fixtures"): orgs, users, tokens, contacts,
partners and documents. The platform owns these tables in production, so these run on the
owner connection and refuse to run when CE_ENV=production.

Each function is a unit of work of its own (the CLI and the demo call them one by one):
it opens its transaction on the engine it is given."""

from __future__ import annotations

import asyncio
import mimetypes
import uuid
from pathlib import Path
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth.tokens import issue_token
from app.config import Settings
from app.db.engine import create_database
from app.db.rls import org_transaction
from app.dev import repository
from app.matching.service import (
    link_existing_emails_for_contact,
    link_existing_emails_for_partner,
)
from app.platform.documents import document_storage, sha256_hex


class FixturesRefused(RuntimeError):
    pass


class SeededPerson(TypedDict):
    user_id: str
    email: str
    token: str


class SeededOrg(TypedDict):
    """`ce-email dev seed-org`'s JSON (SANDBOX.md)."""

    org_id: str
    admin: SeededPerson
    member: SeededPerson


class CreatedContact(TypedDict):
    contact_id: str


class CreatedPartner(TypedDict):
    partner_id: str


class CreatedDocument(TypedDict):
    document_id: str


def _refuse_in_production(settings: Settings) -> None:
    if settings.is_production:
        raise FixturesRefused("development fixtures are refused when CE_ENV=production")


def _normalize_address(value: str) -> str:
    address = value.strip().lower()
    if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
        raise ValueError("not an email address")
    return address


def _normalize_domain(value: str) -> str:
    domain = value.strip().lower().lstrip("@").strip(".")
    if "." not in domain or "/" in domain or " " in domain:
        raise ValueError("not a domain")
    return domain


async def _link_existing_mail(
    settings: Settings,
    org_id: uuid.UUID,
    *,
    contact_id: uuid.UUID | None = None,
    partner_id: uuid.UUID | None = None,
) -> None:
    """Own transaction: link a contact or partner created later to the mail already synced
    (as the CE-01/CE-02 change events do in production), through RLS as ce_app."""
    db = create_database(settings)
    try:
        async with org_transaction(db.engine, org_id) as session:
            if contact_id is not None:
                await link_existing_emails_for_contact(session, contact_id)
            if partner_id is not None:
                await link_existing_emails_for_partner(session, partner_id)
    finally:
        await db.dispose()


async def seed_org(engine: AsyncEngine, settings: Settings, name: str) -> SeededOrg:
    """Own transaction: an org with an admin and a member, and a 24 h token for each."""
    _refuse_in_production(settings)
    org_id = uuid.uuid4()
    slug = uuid.uuid4().hex[:8]
    people: dict[str, SeededPerson] = {}
    async with AsyncSession(engine) as session, session.begin():
        await repository.insert_organisation(session, org_id, name)
        for role in ("admin", "member"):
            user_id = uuid.uuid4()
            email = f"{role}-{slug}@staff.example.org"
            await repository.insert_member(session, org_id, user_id, email, f"{name} {role}", role)
            people[role] = SeededPerson(
                user_id=str(user_id), email=email, token=issue_token(settings, user_id, org_id)
            )
    return SeededOrg(org_id=str(org_id), admin=people["admin"], member=people["member"])


async def add_contact(
    engine: AsyncEngine,
    settings: Settings,
    org_id: uuid.UUID,
    emails: list[str],
    name: str | None = None,
) -> CreatedContact:
    """Own transaction: a CE-01 contact with its addresses, then linked to synced mail."""
    _refuse_in_production(settings)
    addresses = list(dict.fromkeys(_normalize_address(e) for e in emails))
    contact_id = uuid.uuid4()
    async with AsyncSession(engine) as session, session.begin():
        await repository.insert_contact(session, org_id, contact_id, name, addresses)
    await _link_existing_mail(settings, org_id, contact_id=contact_id)
    return CreatedContact(contact_id=str(contact_id))


async def add_partner(
    engine: AsyncEngine,
    settings: Settings,
    org_id: uuid.UUID,
    domains: list[str],
    name: str | None = None,
) -> CreatedPartner:
    """Own transaction: a CE-02 partner with its domains, then linked to synced mail."""
    _refuse_in_production(settings)
    cleaned = list(dict.fromkeys(_normalize_domain(d) for d in domains))
    partner_id = uuid.uuid4()
    async with AsyncSession(engine) as session, session.begin():
        await repository.insert_partner(session, org_id, partner_id, name, cleaned)
    await _link_existing_mail(settings, org_id, partner_id=partner_id)
    return CreatedPartner(partner_id=str(partner_id))


async def add_document(
    engine: AsyncEngine, settings: Settings, org_id: uuid.UUID, path: Path
) -> CreatedDocument:
    """Own transaction: the file stored as a PF-11 document of the org."""
    _refuse_in_production(settings)
    content = await asyncio.to_thread(path.read_bytes)
    storage_key = await asyncio.to_thread(document_storage(settings).put, content)
    document = repository.NewDocument(
        id=uuid.uuid4(),
        org_id=org_id,
        filename=path.name,
        content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        size=len(content),
        sha256=sha256_hex(content),
        storage_key=storage_key,
    )
    async with AsyncSession(engine) as session, session.begin():
        await repository.insert_document(session, document)
    return CreatedDocument(document_id=str(document.id))
