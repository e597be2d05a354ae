"""The catalog says what RLS promises: every org table enabled, forced, fully policied."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio

ORG_TABLES_SQL = """
SELECT n.nspname || '.' || c.relname AS name, c.relrowsecurity, c.relforcerowsecurity,
       ARRAY(SELECT p.polcmd::text FROM pg_policy p WHERE p.polrelid = c.oid) AS commands,
       ARRAY(SELECT pg_get_expr(p.polqual, p.polrelid) FROM pg_policy p
             WHERE p.polrelid = c.oid AND p.polqual IS NOT NULL
               AND p.polname <> 'directory_lookup') AS quals,
       ARRAY(SELECT p.polcmd::text || ':' || array_to_string(
                 ARRAY(SELECT rolname FROM pg_roles WHERE oid = ANY(p.polroles)), ',')
             FROM pg_policy p
             WHERE p.polrelid = c.oid AND p.polname = 'directory_lookup') AS directory
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'vault')
ORDER BY 1
"""


async def test_every_org_table_has_forced_rls_and_a_policy_per_command(
    owner_engine: AsyncEngine,
) -> None:
    async with owner_engine.connect() as conn:
        rows = (await conn.execute(text(ORG_TABLES_SQL))).mappings().all()
    names = {r["name"] for r in rows}
    # the tables the contract names are among them
    assert {
        "public.ce_email_accounts",
        "public.ce_emails",
        "public.ce_email_attachments",
        "public.ce_email_tracking_events",
        "public.ce_module_settings",
        "vault.secrets",
        "public.contacts",
        "public.partners",
        "public.activities",
        "public.notifications",
        "public.documents",
        "public.org_memberships",
    } <= names
    for row in rows:
        assert row["relrowsecurity"], f"{row['name']}: RLS not enabled"
        assert row["relforcerowsecurity"], f"{row['name']}: RLS not forced"
        # r = SELECT, a = INSERT, w = UPDATE, d = DELETE
        assert {"r", "a", "w", "d"} <= set(row["commands"]), f"{row['name']}: {row['commands']}"
        for qual in row["quals"]:
            assert "NULLIF(current_setting('app.org_id'::text, true), ''::text)" in qual
        # the one exception: the NOLOGIN lookup role may read, and only read, accounts and
        # the sync interval (ids for push and polling; see sql/030), and which orgs hold
        # expired OAuth states (for the purge job; see sql/090)
        assert set(row["directory"]) <= {"r:ce_directory"}
        if row["directory"]:
            assert row["name"] in (
                "public.ce_email_accounts",
                "public.ce_module_settings",
                "public.ce_emails",
                "public.ce_email_tracking_events",
                "public.ce_oauth_states",
                # which orgs have audit rows to seal or a chain to verify (sql/130)
                "public.ce_email_access_audit",
                "public.ce_email_audit_blocks",
                # the known-ids probe answers purged ids too (sql/140)
                "public.ce_email_purged_ids",
                # which orgs have deleted documents' files to remove (sql/190)
                "public.ce_document_file_removals",
            )


async def test_app_role_is_neither_superuser_nor_bypassrls_nor_owner(
    owner_engine: AsyncEngine,
) -> None:
    async with owner_engine.connect() as conn:
        role = (
            await conn.execute(
                text(
                    "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
                    "WHERE rolname = 'ce_app'"
                )
            )
        ).one()
        owned = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                    "WHERE r.rolname = 'ce_app'"
                )
            )
        ).scalar_one()
        vault_grants = (
            await conn.execute(
                text("SELECT has_table_privilege('ce_app', 'vault.secrets', 'SELECT')")
            )
        ).scalar_one()
    assert role.rolsuper is False
    assert role.rolbypassrls is False
    assert role.rolcanlogin is True
    assert owned == 0
    assert vault_grants is False


async def test_app_connection_really_is_ce_app(app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as conn:
        who = (await conn.execute(text("SELECT current_user"))).scalar_one()
    assert who == "ce_app"
