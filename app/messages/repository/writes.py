"""SQL that writes stored emails: page-wise upserts and deletion for the sync pipeline.

Writes take a whole sync page per statement (`unnest` of typed arrays), so a page costs a
handful of round trips whatever its size. RLS scopes every statement to the org.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.events import notify_sql


@dataclass(frozen=True, slots=True)
class SentCopy:
    """The synced copy of a message that we may have sent ourselves."""

    internet_message_id: str
    provider_message_id: str
    provider_thread_id: str | None
    folder: str
    sent_at: datetime | None
    received_at: datetime
    content_hash: str
    participant_addresses: str
    participant_domains: str
    """JSON arrays (a 2-D array cannot go through unnest)."""


@dataclass(frozen=True, slots=True)
class CompletedSend:
    """A row of ours that a synced copy completed."""

    id: UUID
    provider_message_id: str
    occurred_at: datetime


async def complete_own_sends(
    session: AsyncSession, account_id: UUID, copies: Sequence[SentCopy]
) -> list[CompletedSend]:
    """Our own outbound rows (written by the send path, provider id still unknown) that
    these synced copies are: fill in the provider ids instead of storing a second row.
    Returns the rows completed."""
    if not copies:
        return []
    columns = {
        "imids": [c.internet_message_id for c in copies],
        "pids": [c.provider_message_id for c in copies],
        "tids": [c.provider_thread_id for c in copies],
        "folders": [c.folder for c in copies],
        "sent": [c.sent_at for c in copies],
        "received": [c.received_at for c in copies],
        "hashes": [c.content_hash for c in copies],
        "paddrs": [c.participant_addresses for c in copies],
        "pdoms": [c.participant_domains for c in copies],
    }
    rows = await session.execute(
        text(
            "WITH v AS ("
            " SELECT * FROM unnest(CAST(:imids AS text[]), CAST(:pids AS text[]),"
            "   CAST(:tids AS text[]), CAST(:folders AS text[]), CAST(:sent AS timestamptz[]),"
            "   CAST(:received AS timestamptz[]), CAST(:hashes AS text[]),"
            "   CAST(:paddrs AS text[]), CAST(:pdoms AS text[]))"
            " AS v(imid, pid, tid, folder, sent_at, received_at, hash, paddrs, pdoms)), "
            "target AS ("
            " SELECT DISTINCT ON (x.internet_message_id) x.id, v.*"
            " FROM ce_emails x JOIN v ON x.internet_message_id = v.imid"
            " WHERE x.account_id = :account_id AND x.direction = 'outbound'"
            "   AND x.provider_message_id IS NULL"
            # a provider id stored already (as its own row) stays there: no unique clash
            "   AND NOT EXISTS (SELECT 1 FROM ce_emails y WHERE y.account_id = :account_id"
            "     AND y.provider_message_id = v.pid)"
            " ORDER BY x.internet_message_id, x.created_at, x.id) "
            "UPDATE ce_emails e SET"
            " provider_message_id = t.pid,"
            " provider_thread_id = COALESCE(e.provider_thread_id, t.tid),"
            " folder = COALESCE(e.folder, t.folder),"
            " status = CASE WHEN e.status IN ('queued', 'failed') THEN 'sent' ELSE e.status END,"
            " send_error = CASE WHEN e.status = 'failed' THEN NULL ELSE e.send_error END,"
            " sent_at = COALESCE(e.sent_at, t.sent_at),"
            # a send still queued (or failed) has no real time yet: the copy's is the one
            " occurred_at = CASE WHEN e.sent_at IS NULL AND e.status IN ('queued', 'failed')"
            "   THEN COALESCE(t.sent_at, t.received_at, e.occurred_at) ELSE e.occurred_at END,"
            " received_at = COALESCE(e.received_at, t.received_at),"
            " content_hash = COALESCE(e.content_hash, t.hash),"
            " participant_addresses = ARRAY(SELECT jsonb_array_elements_text("
            "   CAST(t.paddrs AS jsonb))),"
            " participant_domains = ARRAY(SELECT jsonb_array_elements_text("
            "   CAST(t.pdoms AS jsonb))),"
            " updated_at = now() "
            "FROM target t WHERE e.id = t.id AND e.provider_message_id IS NULL "
            "RETURNING e.id, e.provider_message_id, e.occurred_at"
        ),
        {"account_id": account_id, **columns},
    )
    return [CompletedSend(*row) for row in rows]


EMAIL_INSERT_COLUMNS = (
    "id", "provider_message_id", "provider_thread_id", "internet_message_id", "in_reply_to",
    "direction", "status", "folder", "subject", "snippet", "from_address", "from_name",
    "to_recipients", "cc_recipients", "bcc_recipients", "text_body", "html_body",
    "body_truncated", "has_attachments", "content_hash", "sent_at", "received_at",
    "occurred_at", "participant_addresses", "participant_domains",
)  # fmt: skip
_ARRAY_TYPES = {
    "id": "uuid[]",
    "body_truncated": "boolean[]",
    "has_attachments": "boolean[]",
    "sent_at": "timestamptz[]",
    "received_at": "timestamptz[]",
    "occurred_at": "timestamptz[]",
}
_JSONB = {"to_recipients", "cc_recipients", "bcc_recipients"}
_TEXT_ARRAYS = {"participant_addresses", "participant_domains"}


def _select_expression(column: str) -> str:
    if column in _JSONB:
        return f"CAST(r.{column} AS jsonb)"
    if column in _TEXT_ARRAYS:
        return f"ARRAY(SELECT jsonb_array_elements_text(CAST(r.{column} AS jsonb)))"
    return f"r.{column}"


def _insert_emails_sql(compression: str | None) -> TextClause:
    where = f"WHERE ({compression}) IS NOT NULL " if compression else ""
    return text(
        f"INSERT INTO ce_emails (org_id, account_id, {', '.join(EMAIL_INSERT_COLUMNS)}) "
        f"SELECT CAST(:org_id AS uuid), CAST(:account_id AS uuid), "
        f"{', '.join(_select_expression(c) for c in EMAIL_INSERT_COLUMNS)} "
        f"FROM unnest("
        + ", ".join(f"CAST(:{c} AS {_ARRAY_TYPES.get(c, 'text[]')})" for c in EMAIL_INSERT_COLUMNS)
        + f") AS r({', '.join(EMAIL_INSERT_COLUMNS)}) {where}"
        "ON CONFLICT (org_id, account_id, provider_message_id) "
        "WHERE provider_message_id IS NOT NULL "
        "DO NOTHING RETURNING id, current_setting('default_toast_compression')"
    )


# Mail bodies are TOASTed, and compressing them with pglz (the server default) was half of
# what PostgreSQL spent per synced row; lz4 does the same job several times faster and
# reads are unaffected (every value records its own method). The insert sets it for its
# transaction in an uncorrelated sub-select of its WHERE clause, which PostgreSQL
# evaluates once, before the first row: no extra round trip. Whether the server was built
# with lz4 is looked up by the first insert of the process (the answer comes back with its
# rows); a server without it keeps pglz.
_INSERT_EMAILS = {
    None: _insert_emails_sql(
        "SELECT set_config('default_toast_compression', "
        "CASE WHEN 'lz4' = ANY(enumvals) THEN 'lz4' ELSE setting END, true) "
        "FROM pg_settings WHERE name = 'default_toast_compression'"
    ),
    True: _insert_emails_sql("SELECT set_config('default_toast_compression', 'lz4', true)"),
    False: _insert_emails_sql(None),
}
_lz4_available: bool | None = None


async def insert_emails(
    session: AsyncSession, org_id: UUID, account_id: UUID, columns: dict[str, list[Any]]
) -> set[UUID]:
    """One multi-row INSERT; rows whose (account, provider id) exists are skipped. Returns
    the ids of the rows inserted. `columns` holds one list per EMAIL_INSERT_COLUMNS name
    (JSON text for the recipient lists and the participant arrays)."""
    global _lz4_available
    if not columns["id"]:
        return set()
    rows = (
        await session.execute(
            _INSERT_EMAILS[_lz4_available], {"org_id": org_id, "account_id": account_id, **columns}
        )
    ).all()
    if rows and _lz4_available is None:
        _lz4_available = rows[0][1] == "lz4"
    return {row[0] for row in rows}


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A PF-11 document row for stored attachment bytes."""

    id: UUID
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str


async def insert_documents(
    session: AsyncSession, org_id: UUID, rows: Sequence[NewDocument]
) -> None:
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO documents (id, org_id, filename, content_type, size, sha256, "
            "storage_key) SELECT d.id, CAST(:org_id AS uuid), d.filename, d.content_type, "
            "d.size, d.sha256, d.storage_key FROM unnest(CAST(:ids AS uuid[]), "
            "CAST(:filenames AS text[]), CAST(:types AS text[]), CAST(:sizes AS bigint[]), "
            "CAST(:hashes AS text[]), CAST(:keys AS text[])) "
            "AS d(id, filename, content_type, size, sha256, storage_key)"
        ),
        {
            "org_id": org_id,
            "ids": [r.id for r in rows],
            "filenames": [r.filename for r in rows],
            "types": [r.content_type for r in rows],
            "sizes": [r.size for r in rows],
            "hashes": [r.sha256 for r in rows],
            "keys": [r.storage_key for r in rows],
        },
    )


async def insert_attachments_and_notify(
    session: AsyncSession, org_id: UUID, attachments: dict[str, list[Any]], payloads: list[str]
) -> None:
    """Attachment metadata rows and one NOTIFY per payload, in one statement. NOTIFY is
    delivered at commit, so listeners only ever hear of committed emails."""
    await session.execute(
        text(
            "WITH att AS ("
            " INSERT INTO ce_email_attachments (org_id, email_id, filename, content_type, size,"
            "   content_id, is_inline, part_index, document_id)"
            " SELECT CAST(:org_id AS uuid), a.email_id, a.filename, a.content_type, a.size,"
            "   a.content_id, a.is_inline, a.part_index, a.document_id"
            " FROM unnest(CAST(:email_ids AS uuid[]), CAST(:filenames AS text[]),"
            "   CAST(:types AS text[]), CAST(:sizes AS bigint[]), CAST(:content_ids AS text[]),"
            "   CAST(:inline AS boolean[]), CAST(:part_indexes AS integer[]),"
            "   CAST(:document_ids AS uuid[]))"
            " AS a(email_id, filename, content_type, size, content_id, is_inline, part_index,"
            "      document_id)"
            " RETURNING 1) "
            "SELECT (SELECT count(*) FROM att),"
            f" (SELECT count({notify_sql('p')})"
            "  FROM unnest(CAST(:payloads AS text[])) AS p)"
        ),
        {"org_id": org_id, "payloads": payloads, **attachments},
    )


async def delete_by_provider_ids(
    session: AsyncSession, account_id: UUID, provider_ids: Sequence[str]
) -> int:
    if not provider_ids:
        return 0
    result = await session.execute(
        text(
            "WITH gone AS (DELETE FROM ce_emails WHERE account_id = :account_id "
            "AND provider_message_id = ANY(CAST(:ids AS text[])) RETURNING 1) "
            "SELECT count(*) FROM gone"
        ),
        {"account_id": account_id, "ids": list(provider_ids)},
    )
    return int(result.scalar_one())
