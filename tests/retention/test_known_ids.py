"""The sync's known-ids probe answers purged ids as known: for the current org's account
only, and still by index probes (the sync's hot path)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction
from app.sync.repository import known_provider_ids
from tests.fixtures.database import insert, make_account
from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio

# The body of the function the sync calls, with its parameters as bind parameters: the
# plan checked below is the installed function's, not a copy of it.
FUNCTION_BODY = "SELECT prosrc FROM pg_proc WHERE proname = 'ce_known_provider_ids'"


async def test_purged_ids_are_known_to_the_sync_of_their_account_only(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, org_b: Org
) -> None:
    account = await make_account(owner_engine, org_a.id, uuid.UUID(org_a["admin"]["user_id"]))
    other = await make_account(owner_engine, org_a.id, uuid.UUID(org_a["admin"]["user_id"]))
    await insert(
        owner_engine,
        "INSERT INTO ce_email_purged_ids (org_id, account_id, provider_message_id, occurred_at) "
        "SELECT :o, :a, 'p' || n, now() - interval '40 days' FROM generate_series(1, 5000) n",
        o=org_a.id,
        a=account,
    )
    asked = ["p1", "p4999", "never"]
    async with org_transaction(app_engine, org_a.id) as s:
        assert await known_provider_ids(s, account, asked) == {"p1", "p4999"}
        assert await known_provider_ids(s, other, asked) == set()
    async with org_transaction(app_engine, org_b.id) as s:
        assert await known_provider_ids(s, account, asked) == set()

    async with owner_engine.connect() as conn:
        await conn.execute(text("SELECT set_config('app.org_id', :o, false)"), {"o": str(org_a.id)})
        body = (await conn.execute(text(FUNCTION_BODY))).scalar_one()
        query = body.replace("p_account_id", "CAST(:a AS uuid)").replace(
            "p_provider_ids", "CAST(:ids AS text[])"
        )
        plan = "\n".join(
            row[0]
            for row in await conn.execute(text(f"EXPLAIN {query}"), {"ids": asked, "a": account})
        )
    # both branches probe their table's (account, provider id) index
    assert "ce_email_purged_ids_probe" in plan, plan
    assert "ce_emails_provider_id" in plan, plan
    assert "Seq Scan on ce_email_purged_ids" not in plan, plan


async def test_a_purge_ordered_by_a_user_runs_in_the_service_context_then_gives_it_back(
    app_engine: AsyncEngine, org_a: Org
) -> None:
    from app.db.rls import acting_for_the_service

    user = uuid.UUID(org_a["admin"]["user_id"])
    setting = text(
        "SELECT current_setting('app.user_id', true), current_setting('app.org_id', true)"
    )
    async with org_transaction(app_engine, org_a.id, user) as s:
        async with acting_for_the_service(s, org_a.id, user):
            assert tuple((await s.execute(setting)).one()) == ("", str(org_a.id))
        assert tuple((await s.execute(setting)).one()) == (str(user), str(org_a.id))
