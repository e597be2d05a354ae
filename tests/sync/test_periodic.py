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
from tests.accounts.helpers import connect
from tests.conftest import Org
from tests.sync.helpers import account_row

pytestmark = pytest.mark.asyncio


async def _todo(owner_engine: AsyncEngine, account_id: str) -> int:
    async with owner_engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM procrastinate_jobs WHERE args->>'account_id' = :a "
                        "AND status = 'todo' AND task_name = 'ce:sync_account'"
                    ),
                    {"a": account_id},
                )
            ).scalar_one()
        )


async def test_polling_and_sweeper(
    client: httpx.AsyncClient, app: FastAPI, make_org: object, owner_engine: AsyncEngine
) -> None:
    RUNTIME.ctx = app.state.ctx
    org: Org = await make_org("Periodic")  # type: ignore[operator]
    account = await connect(
        client, "gmail", org.headers(), login_hint=f"p-{uuid.uuid4().hex[:6]}@gmail.test"
    )
    async with owner_engine.begin() as conn:  # forget the connect's queued job
        await conn.execute(
            text("DELETE FROM procrastinate_jobs WHERE args->>'account_id' = :a"),
            {"a": account["id"]},
        )
        await conn.execute(
            text(
                "UPDATE ce_email_accounts SET last_synced_at = now(), sync_state = 'idle' "
                "WHERE id = :a"
            ),
            {"a": account["id"]},
        )
    await poll_due_accounts.func(timestamp=0)
    assert await _todo(owner_engine, account["id"]) == 0, "not due yet"
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
    assert await _todo(owner_engine, account["id"]) == 1, "due: one (coalesced) sync"

    async with owner_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM procrastinate_jobs WHERE args->>'account_id' = :a"),
            {"a": account["id"]},
        )
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
    assert await _todo(owner_engine, account["id"]) == 1
