"""The periodic drivers: polling picks due accounts, the sweeper restarts dead syncs."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.jobs.runtime import RUNTIME
from app.sync.jobs import poll_due_accounts, sweep_stale_syncs
from tests.fixtures.accounts import connect
from tests.fixtures.database import account_row
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.worker import forget_jobs, queued_syncs

pytestmark = pytest.mark.asyncio


async def test_polling_and_sweeper(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    RUNTIME.ctx = app.state.ctx
    org: Org = await make_org("Periodic")
    account = await connect(
        client, "gmail", org.headers(), login_hint=f"p-{uuid.uuid4().hex[:6]}@gmail.test"
    )
    await forget_jobs(owner_engine, account["id"])  # the connect's queued sync
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ce_email_accounts SET last_synced_at = now(), sync_state = 'idle' "
                "WHERE id = :a"
            ),
            {"a": account["id"]},
        )
    await poll_due_accounts.func(timestamp=0)
    assert await queued_syncs(owner_engine, account["id"]) == 0, "not due yet"
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ce_email_accounts SET last_synced_at = now() - interval '16 minutes' "
                "WHERE id = :a"
            ),
            {"a": account["id"]},
        )
    await poll_due_accounts.func(timestamp=0)
    await poll_due_accounts.func(timestamp=0)
    assert await queued_syncs(owner_engine, account["id"]) == 1, "due: one (coalesced) sync"

    await forget_jobs(owner_engine, account["id"])
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ce_email_accounts SET sync_state = 'running', last_synced_at = now(), "
                "sync_started_at = now() - interval '1 hour', "
                "sync_heartbeat_at = now() - interval '30 minutes' WHERE id = :a"
            ),
            {"a": account["id"]},
        )
    await sweep_stale_syncs.func(timestamp=0)
    row = await account_row(owner_engine, account["id"])
    assert row["sync_state"] == "queued"
    assert row["last_error"] == "The sync stopped responding and was restarted."
    assert await queued_syncs(owner_engine, account["id"]) == 1
