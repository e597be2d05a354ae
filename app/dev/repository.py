"""The SQL of the development fixtures and the demo: platform tables (organisations, users,
memberships, contacts, partners, documents, notifications) that the platform owns in
production. Run on the owner connection; every function joins its caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class NewDocument:
    id: uuid.UUID
    org_id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str


@dataclass(frozen=True)
class Notification:
    type: str
    created_at: datetime


async def insert_organisation(session: AsyncSession, org_id: uuid.UUID, name: str) -> None:
    await session.execute(
        text("INSERT INTO organisations (id, name) VALUES (:id, :name)"),
        {"id": org_id, "name": name},
    )


async def insert_member(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    email: str,
    display_name: str,
    role: str,
) -> None:
    """A user and their membership of the org, with `role`."""
    await session.execute(
        text("INSERT INTO users (id, email, display_name) VALUES (:id, :email, :n)"),
        {"id": user_id, "email": email, "n": display_name},
    )
    await session.execute(
        text(
            "INSERT INTO org_memberships (org_id, user_id, role) VALUES (:org_id, :user_id, :role)"
        ),
        {"org_id": org_id, "user_id": user_id, "role": role},
    )


async def insert_contact(
    session: AsyncSession,
    org_id: uuid.UUID,
    contact_id: uuid.UUID,
    name: str | None,
    addresses: list[str],
) -> None:
    await session.execute(
        text("INSERT INTO contacts (id, org_id, name) VALUES (:id, :org_id, :name)"),
        {"id": contact_id, "org_id": org_id, "name": name},
    )
    for address in addresses:
        await session.execute(
            text(
                "INSERT INTO contact_emails (org_id, contact_id, email) "
                "VALUES (:org_id, :contact_id, :email)"
            ),
            {"org_id": org_id, "contact_id": contact_id, "email": address},
        )


async def insert_partner(
    session: AsyncSession,
    org_id: uuid.UUID,
    partner_id: uuid.UUID,
    name: str | None,
    domains: list[str],
) -> None:
    await session.execute(
        text("INSERT INTO partners (id, org_id, name) VALUES (:id, :org_id, :name)"),
        {"id": partner_id, "org_id": org_id, "name": name},
    )
    for domain in domains:
        await session.execute(
            text(
                "INSERT INTO partner_domains (org_id, partner_id, domain) "
                "VALUES (:org_id, :partner_id, :domain)"
            ),
            {"org_id": org_id, "partner_id": partner_id, "domain": domain},
        )


async def insert_document(session: AsyncSession, document: NewDocument) -> None:
    await session.execute(
        text(
            "INSERT INTO documents (id, org_id, filename, content_type, size, sha256, "
            "storage_key) VALUES (:id, :org_id, :filename, :ct, :size, :sha, :key)"
        ),
        {
            "id": document.id,
            "org_id": document.org_id,
            "filename": document.filename,
            "ct": document.content_type,
            "size": document.size,
            "sha": document.sha256,
            "key": document.storage_key,
        },
    )


async def notifications_of_org(session: AsyncSession, org_id: uuid.UUID) -> list[Notification]:
    """Oldest first."""
    rows = await session.execute(
        text("SELECT type, created_at FROM notifications WHERE org_id = :o ORDER BY created_at"),
        {"o": org_id},
    )
    return [Notification(type=row.type, created_at=row.created_at) for row in rows]
