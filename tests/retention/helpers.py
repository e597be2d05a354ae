"""Counting what hangs on a set of emails, table by table, as the tables' owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.platform.documents import LocalDocumentStorage

# table name in a receipt -> (table, column naming the email)
BY_EMAIL = {
    "emails": ("ce_emails", "id"),
    "links": ("ce_email_links", "email_id"),
    "activities": ("activities", "source_email_id"),
    "participants": ("ce_email_participants", "email_id"),
    "attachments": ("ce_email_attachments", "email_id"),
    "tracking_events": ("ce_email_tracking_events", "email_id"),
    "tracked_links": ("ce_email_tracked_links", "email_id"),
}


async def rows_of(owner_engine: AsyncEngine, email_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    """Rows referring to these emails in every table that does."""
    counts = {}
    async with owner_engine.connect() as conn:
        for name, (table, column) in BY_EMAIL.items():
            counts[name] = (
                await conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE {column} = ANY(:ids)"),
                    {"ids": list(email_ids)},
                )
            ).scalar_one()
    return counts


async def documents_of(
    owner_engine: AsyncEngine, email_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Document id -> storage key of the documents these emails' attachments name."""
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT d.id, d.storage_key FROM documents d JOIN ce_email_attachments a "
                "ON a.org_id = d.org_id AND a.document_id = d.id WHERE a.email_id = ANY(:ids)"
            ),
            {"ids": list(email_ids)},
        )
        return {row[0]: row[1] for row in rows}


async def documents_exist(owner_engine: AsyncEngine, document_ids: Sequence[uuid.UUID]) -> int:
    async with owner_engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM documents WHERE id = ANY(:ids)"),
                    {"ids": list(document_ids)},
                )
            ).scalar_one()
        )


def file_path(settings: Settings, storage_key: str) -> Path:
    assert settings.document_storage_dir
    return LocalDocumentStorage(settings.document_storage_dir)._path(storage_key)


async def email_ids(
    owner_engine: AsyncEngine, account_id: str, where: str = "TRUE"
) -> list[uuid.UUID]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                f"SELECT id FROM ce_emails WHERE account_id = :a AND {where} ORDER BY occurred_at"
            ),
            {"a": account_id},
        )
        return [row[0] for row in rows]
