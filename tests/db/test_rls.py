"""Two orgs, raw SQL as ce_app: neither ever reads, changes or deletes the other's rows."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction, system_transaction
from tests.fixtures.database import populate_every_table
from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio

TABLES = [
    "org_memberships",
    "contacts",
    "contact_emails",
    "partners",
    "partner_domains",
    "activities",
    "notifications",
    "documents",
    "ce_email_accounts",
    "ce_emails",
    "ce_email_links",
    "ce_email_attachments",
    "ce_email_tracking_events",
    "ce_module_settings",
]


async def _count(engine: AsyncEngine, org: uuid.UUID | None, table: str, owner: uuid.UUID) -> int:
    sql = text(f"SELECT count(*) FROM {table} WHERE org_id = :owner")
    if org is None:
        async with system_transaction(engine) as s:
            return int((await s.execute(sql, {"owner": owner})).scalar_one())
    async with org_transaction(engine, org) as s:
        return int((await s.execute(sql, {"owner": owner})).scalar_one())


@pytest.mark.parametrize("table", TABLES)
async def test_other_org_cannot_read_update_delete_or_insert(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, org_b: Org, table: str
) -> None:
    await populate_every_table(owner_engine, org_a)
    a, b = org_a.id, org_b.id
    assert await _count(app_engine, a, table, a) > 0, "org A sees its own rows"
    assert await _count(app_engine, b, table, a) == 0, "org B sees none of A's"
    assert await _count(app_engine, None, table, a) == 0, "no org set: nothing visible"

    async with org_transaction(app_engine, b) as s:
        updated = await s.execute(
            text(f"UPDATE {table} SET org_id = org_id WHERE org_id = :a"), {"a": a}
        )
        deleted = await s.execute(text(f"DELETE FROM {table} WHERE org_id = :a"), {"a": a})
        assert updated.rowcount == 0
        assert deleted.rowcount == 0
    assert await _count(app_engine, a, table, a) > 0, "A's rows are all still there"

    # Writing a row into another org is refused by the policy's WITH CHECK.
    async with org_transaction(app_engine, a) as s:
        # ce_app reads an email's content only through the view (sql/150_visibility.sql)
        readable = "ce_emails_visible" if table == "ce_emails" else table
        row = (await s.execute(text(f"SELECT * FROM {readable} LIMIT 1"))).mappings().one()
    with pytest.raises(DBAPIError, match="row-level security"):
        async with org_transaction(app_engine, b) as s:
            await s.execute(
                text(
                    f"INSERT INTO {table} SELECT * FROM "
                    f"json_populate_record(NULL::{table}, CAST(:row AS json))"
                ),
                {"row": json.dumps(dict(row), default=str)},
            )


async def test_no_org_context_means_no_write(app_engine: AsyncEngine, org_a: Org) -> None:
    with pytest.raises(DBAPIError, match="row-level security"):
        async with system_transaction(app_engine) as s:
            await s.execute(
                text("INSERT INTO contacts (org_id, name) VALUES (:o, 'x')"), {"o": org_a.id}
            )


async def test_vault_functions_only_reach_the_current_org(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, org_b: Org
) -> None:
    rows = await populate_every_table(owner_engine, org_a)
    account = rows["account"]
    async with org_transaction(app_engine, org_b.id) as s:
        got = (
            await s.execute(
                text("SELECT * FROM vault.get_secret(:a, 'access_token')"), {"a": account}
            )
        ).all()
        removed = (
            await s.execute(text("SELECT vault.delete_secrets(:a)"), {"a": account})
        ).scalar_one()
    assert got == []
    assert removed == 0
    async with org_transaction(app_engine, org_a.id) as s:
        got = (
            await s.execute(
                text("SELECT * FROM vault.get_secret(:a, 'access_token')"), {"a": account}
            )
        ).all()
    assert len(got) == 1
    with pytest.raises(DBAPIError, match="permission denied"):
        async with org_transaction(app_engine, org_a.id) as s:
            await s.execute(text("SELECT * FROM vault.secrets"))


async def test_known_provider_ids_answers_only_for_the_current_orgs_account(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, org_b: Org
) -> None:
    from app.sync.repository import known_provider_ids
    from tests.fixtures.database import make_account, make_email

    account = await make_account(owner_engine, org_a.id, uuid.UUID(org_a["admin"]["user_id"]))
    await make_email(owner_engine, org_a.id, account)
    async with owner_engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT provider_message_id FROM ce_emails WHERE account_id = :a"),
                {"a": account},
            )
        ).scalar_one()
    asked = [stored, "not-stored", stored]
    async with org_transaction(app_engine, org_a.id) as s:
        assert await known_provider_ids(s, account, asked) == {stored}
    async with org_transaction(app_engine, org_b.id) as s:
        assert await known_provider_ids(s, account, asked) == set()
    async with system_transaction(app_engine) as s:
        assert await known_provider_ids(s, account, asked) == set()


async def test_pooled_connection_after_a_local_setting_reads_empty_not_error(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    """After set_config(..., true) the setting reads back as '' on the same connection:
    the NULLIF in every policy turns that into "no rows", not an invalid-uuid error."""
    await populate_every_table(owner_engine, org_a)
    async with app_engine.connect() as conn:
        async with conn.begin():
            await conn.execute(
                text("SELECT set_config('app.org_id', :o, true)"), {"o": str(org_a.id)}
            )
            assert (await conn.execute(text("SELECT count(*) FROM contacts"))).scalar_one() > 0
        async with conn.begin():
            leftover = (
                await conn.execute(text("SELECT current_setting('app.org_id', true)"))
            ).scalar_one()
            visible = (await conn.execute(text("SELECT count(*) FROM contacts"))).scalar_one()
    assert leftover == ""
    assert visible == 0
