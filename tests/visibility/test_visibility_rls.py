"""Issue 11, Must show 1: PostgreSQL itself hides what a mailbox's level hides.

Connected as ce_app with the org and a user who does not own the mailbox (a member, and an
admin: admins are "others" for content), every table and view ce_app may read — found in
the catalog, not listed here — is read whole (row_to_json), and the markers of the
message's subject, body, attachment name and body link must not appear where the level
hides them; for `private` no row may even name the email.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.rls import org_transaction
from tests.fixtures.orgs import Org
from tests.fixtures.visibility import MarkedMail, marked_mailbox, other_of

pytestmark = pytest.mark.asyncio

READABLE_RELATIONS = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'vault')
  AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND has_table_privilege('ce_app', c.oid, 'SELECT')
ORDER BY 1
"""
# Tables ce_app may read some columns of (column privileges): read those columns whole.
PARTLY_READABLE = """
SELECT format('%I.%I', n.nspname, c.relname),
       string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname IN ('public', 'vault') AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND NOT has_table_privilege('ce_app', c.oid, 'SELECT')
  AND has_column_privilege('ce_app', c.oid, a.attnum, 'SELECT')
GROUP BY 1 ORDER BY 1
"""


async def everything_readable(
    app_engine: AsyncEngine, org_id: uuid.UUID, user_id: str
) -> dict[str, str]:
    """Every row of every relation ce_app can read, as JSON text, per relation."""
    seen: dict[str, str] = {}
    async with org_transaction(app_engine, org_id, uuid.UUID(user_id)) as session:
        relations: list[tuple[str, str | None]] = [
            (name, None) for (name,) in await session.execute(text(READABLE_RELATIONS))
        ]
        relations += [(name, cols) for name, cols in await session.execute(text(PARTLY_READABLE))]
        assert any(name == "public.ce_emails_visible" for name, _ in relations)
        for name, columns in relations:
            source = name if columns is None else f"(SELECT {columns} FROM {name})"
            rows = await session.execute(text(f"SELECT row_to_json(t)::text FROM {source} t"))
            seen[name] = "\n".join(r for (r,) in rows)
    return seen


def containing(seen: dict[str, str], marker: str) -> list[str]:
    return [name for name, rows in seen.items() if marker in rows]


# level -> which markers the others may see
ALLOWED: dict[str, set[str]] = {
    "org": {"id", "subject", "body", "filename", "link"},
    "subject": {"id", "subject"},
    "metadata": {"id"},
    "private": set(),
}


def markers(mail: MarkedMail) -> dict[str, str]:
    return {
        "id": mail.email_id,
        "subject": mail.subject,
        "body": mail.body,
        "filename": mail.filename.removesuffix(".txt"),
        "link": mail.link.rsplit("/", 1)[1],
    }


@pytest.mark.parametrize("level", ["org", "subject", "metadata", "private"])
@pytest.mark.parametrize("owner", ["admin", "member"])
async def test_every_readable_relation_hides_what_the_level_hides(
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    test_settings: Settings,
    level: str,
    owner: str,
) -> None:
    mail = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level=level, owner=owner
    )
    other = other_of(owner)

    as_other = await everything_readable(app_engine, org_a.id, org_a[other]["user_id"])
    for what, marker in markers(mail).items():
        found = containing(as_other, marker)
        if what in ALLOWED[level]:
            assert found, f"{level}: the {what} should be visible to the org"
        else:
            assert found == [], f"{level}: {other} reads the {what} in {found}"

    # the owner sees everything, wherever it is kept
    as_owner = await everything_readable(app_engine, org_a.id, org_a[owner]["user_id"])
    for what, marker in markers(mail).items():
        assert containing(as_owner, marker), f"the owner should see the {what}"
    expected_copies: dict[str, Any] = {
        "id": {
            "public.ce_emails_visible",
            "public.ce_email_links",
            "public.ce_email_participants",
            "public.notifications",
            "public.ce_email_access_audit",
            "public.ce_email_access_audit_emails",
        },
        "subject": {"public.ce_emails_visible", "public.activities"},
        "filename": {"public.ce_email_attachments", "public.documents"},
        "link": {"public.ce_email_tracked_links", "public.ce_email_tracking_events"},
    }
    for what, relations in expected_copies.items():
        assert relations <= set(containing(as_owner, markers(mail)[what])), what


async def test_a_shared_thread_shows_whole_until_withdrawn(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, test_settings: Settings
) -> None:
    mail = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="metadata", owner="admin"
    )
    member = org_a["member"]["user_id"]
    assert containing(await everything_readable(app_engine, org_a.id, member), mail.body) == []
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO ce_email_thread_shares (org_id, account_id, provider_thread_id) "
                "VALUES (:o, :a, :t)"
            ),
            {"o": org_a.id, "a": mail.account_id, "t": mail.thread_id},
        )
    shared = await everything_readable(app_engine, org_a.id, member)
    for marker in markers(mail).values():
        assert containing(shared, marker)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM ce_email_thread_shares WHERE org_id = :o"), {"o": org_a.id}
        )
    withdrawn = await everything_readable(app_engine, org_a.id, member)
    assert containing(withdrawn, mail.body) == []
    assert containing(withdrawn, mail.subject) == []
