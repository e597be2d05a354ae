"""SQL of stored emails: page-wise upserts, deletion, the timeline and the detail.

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


async def complete_own_sends(
    session: AsyncSession, account_id: UUID, copies: Sequence[SentCopy]
) -> list[Any]:
    """Our own outbound rows (written by the send path, provider id still unknown) that
    these synced copies are: fill in the provider ids instead of storing a second row.
    Returns (id, provider_message_id, occurred_at) of the rows completed."""
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
    return list(rows.mappings())


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


async def insert_documents(session: AsyncSession, org_id: UUID, rows: Sequence[Any]) -> None:
    """PF-11 document rows (id, filename, content_type, size, sha256, storage_key)."""
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
            "ids": [r[0] for r in rows],
            "filenames": [r[1] for r in rows],
            "types": [r[2] for r in rows],
            "sizes": [r[3] for r in rows],
            "hashes": [r[4] for r in rows],
            "keys": [r[5] for r in rows],
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
            " (SELECT count(pg_notify('ce_email_events', p))"
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


# --- reading ------------------------------------------------------------------------

LIST_COLUMNS = (
    "e.id, e.account_id, e.direction, e.status, e.subject, e.snippet, e.from_address, "
    "e.from_name, e.to_recipients, e.cc_recipients, e.sent_at, e.received_at, e.occurred_at, "
    "e.has_attachments, e.provider_thread_id, e.internet_message_id"
)
DETAIL_COLUMNS = (
    f"{LIST_COLUMNS}, e.bcc_recipients, e.text_body, e.html_body, e.body_truncated, "
    "e.in_reply_to, e.open_count, e.click_count, e.first_opened_at, e.last_opened_at, "
    "e.bounced_at"
)


def _visible(account: str) -> str:
    """Private mailboxes show to their owner and to org admins only."""
    return (
        f"({account}.visibility <> 'private' OR {account}.owner_user_id = :viewer_id "
        f"OR CAST(:viewer_is_admin AS boolean))"
    )


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    contact_id: UUID | None = None
    partner_id: UUID | None = None
    account_id: UUID | None = None
    direction: str | None = None


def _conditions(alias: str, account: str, f: TimelineFilter, skip_link: str | None) -> list[str]:
    conditions = [_visible(account)]
    if f.account_id is not None:
        conditions.append(f"{alias}.account_id = :account_id")
    if f.direction is not None:
        conditions.append(f"{alias}.direction = :direction")
    if f.contact_id is not None and skip_link != "contact":
        conditions.append(
            f"EXISTS (SELECT 1 FROM ce_email_links lc WHERE lc.email_id = {alias}.id "
            f"AND lc.contact_id = :contact_id)"
        )
    if f.partner_id is not None and skip_link != "partner":
        conditions.append(
            f"EXISTS (SELECT 1 FROM ce_email_links lp WHERE lp.email_id = {alias}.id "
            f"AND lp.partner_id = :partner_id)"
        )
    return conditions


async def list_emails(
    session: AsyncSession,
    f: TimelineFilter,
    *,
    viewer_id: UUID,
    viewer_is_admin: bool,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Any]:
    """One timeline page, newest first, keyset on (occurred_at, id).

    The same message in several mailboxes of the org (one internet message id) shows once:
    the earliest visible copy that passes the filters stands for all of them. A contact or
    partner timeline walks that contact's / partner's links (an index range scan)."""
    if f.contact_id is not None:
        source = (
            "ce_email_links d JOIN ce_emails e ON e.id = d.email_id AND d.contact_id = :contact_id"
        )
        order_time, order_id, skip = "d.occurred_at", "d.email_id", "contact"
    elif f.partner_id is not None:
        source = (
            "ce_email_links d JOIN ce_emails e ON e.id = d.email_id AND d.partner_id = :partner_id"
        )
        order_time, order_id, skip = "d.occurred_at", "d.email_id", "partner"
    else:
        source = "ce_emails e"
        order_time, order_id, skip = "e.occurred_at", "e.id", None
    conditions = _conditions("e", "a", f, skip)
    duplicate_conditions = " AND ".join(_conditions("e2", "a2", f, None))
    conditions.append(
        "NOT (e.internet_message_id IS NOT NULL AND EXISTS ("
        " SELECT 1 FROM ce_emails e2 JOIN ce_email_accounts a2 ON a2.id = e2.account_id"
        " WHERE e2.internet_message_id = e.internet_message_id AND e2.id <> e.id"
        f" AND {duplicate_conditions}"
        " AND (e2.occurred_at, e2.created_at, e2.id) < (e.occurred_at, e.created_at, e.id)))"
    )
    params: dict[str, Any] = {
        "viewer_id": viewer_id,
        "viewer_is_admin": viewer_is_admin,
        "contact_id": f.contact_id,
        "partner_id": f.partner_id,
        "account_id": f.account_id,
        "direction": f.direction,
        "limit": limit,
    }
    if after is not None:
        conditions.append(f"({order_time}, {order_id}) < (:after_time, :after_id)")
        params["after_time"], params["after_id"] = after
    sql = (
        f"SELECT {LIST_COLUMNS} FROM {source} "
        "JOIN ce_email_accounts a ON a.id = e.account_id "
        f"WHERE {' AND '.join(conditions)} "
        f"ORDER BY {order_time} DESC, {order_id} DESC LIMIT :limit"
    )
    used = {k: v for k, v in params.items() if f":{k}" in sql}
    return list((await session.execute(text(sql), used)).mappings())


async def links_of(session: AsyncSession, email_ids: Sequence[UUID]) -> list[Any]:
    if not email_ids:
        return []
    rows = await session.execute(
        text(
            "SELECT email_id, contact_id, partner_id FROM ce_email_links "
            "WHERE email_id = ANY(CAST(:ids AS uuid[])) ORDER BY created_at, id"
        ),
        {"ids": list(email_ids)},
    )
    return list(rows.mappings())


async def get_email(
    session: AsyncSession, email_id: UUID, *, viewer_id: UUID, viewer_is_admin: bool
) -> Any | None:
    row = await session.execute(
        text(
            f"SELECT {DETAIL_COLUMNS} FROM ce_emails e "
            "JOIN ce_email_accounts a ON a.id = e.account_id "
            f"WHERE e.id = :id AND {_visible('a')}"
        ),
        {"id": email_id, "viewer_id": viewer_id, "viewer_is_admin": viewer_is_admin},
    )
    return row.mappings().first()


async def attachments_of(session: AsyncSession, email_id: UUID) -> list[Any]:
    rows = await session.execute(
        text(
            "SELECT id, filename, content_type, size, is_inline, content_id, document_id "
            "FROM ce_email_attachments WHERE email_id = :id "
            "ORDER BY part_index NULLS LAST, created_at, id"
        ),
        {"id": email_id},
    )
    return list(rows.mappings())


async def attachment_document(
    session: AsyncSession, email_id: UUID, attachment_id: UUID
) -> Any | None:
    row = await session.execute(
        text(
            "SELECT att.filename, d.filename AS document_filename, d.content_type, d.size, "
            "d.storage_key FROM ce_email_attachments att "
            "JOIN documents d ON d.id = att.document_id "
            "WHERE att.id = :attachment_id AND att.email_id = :email_id"
        ),
        {"attachment_id": attachment_id, "email_id": email_id},
    )
    return row.mappings().first()


async def contact_exists(session: AsyncSession, contact_id: UUID) -> bool:
    row = await session.execute(text("SELECT 1 FROM contacts WHERE id = :id"), {"id": contact_id})
    return row.first() is not None


async def partner_exists(session: AsyncSession, partner_id: UUID) -> bool:
    row = await session.execute(text("SELECT 1 FROM partners WHERE id = :id"), {"id": partner_id})
    return row.first() is not None
