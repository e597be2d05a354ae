"""End to end through the sandbox over HTTP: the database equals the mailbox, message for
message, after initial and incremental syncs, under every fault, and after a killed sync."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.database import account_row
from tests.fixtures.mail import make_raw
from tests.fixtures.mailboxes import sandbox_messages, sandbox_of, seed, seed_many, stored_messages
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio

PROVIDERS = ["gmail", "outlook"]


async def _connected(
    client: httpx.AsyncClient,
    make_org: MakeOrg,
    provider: str,
) -> tuple[Org, dict, str]:
    org: Org = await make_org(f"Sync {provider}")
    mailbox = f"box-{uuid.uuid4().hex[:8]}@clinic-{provider}.test"
    return org, {"mailbox": mailbox}, mailbox


async def _sync(app: FastAPI, org: Org, account_id: str) -> None:
    await run_sync(app.state.ctx, org.id, uuid.UUID(account_id), reason="test")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_initial_then_incremental_equals_the_mailbox(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
) -> None:
    org, _, mailbox = await _connected(client, make_org, provider)
    await seed_many(client, provider, mailbox, 6)
    await seed_many(client, provider, mailbox, 3, folder="sent")
    old = make_raw("old@hospital.org", mailbox, "Too old")
    await seed(client, provider, mailbox, old, received_at=datetime.now(UTC) - timedelta(days=45))

    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    await _sync(app, org, account["id"])
    expected = sandbox_messages(app, provider, mailbox)
    assert len(expected) == 9  # the 45-day-old one is outside the 30-day window
    assert await stored_messages(owner_engine, account["id"]) == expected
    row = await account_row(owner_engine, account["id"])
    assert row["sync_state"] == "idle"
    assert row["status"] == "active"
    assert row["last_synced_at"] is not None
    assert row["sync_cursor"]

    # more mail, some deleted: the next (incremental) sync follows
    new_ids = await seed_many(client, provider, mailbox, 4)
    first_ids = list(expected)
    for gone in (first_ids[0], new_ids[0]):
        r = await client.delete(f"/_sandbox/{provider}/mailboxes/{mailbox}/messages/{gone}")
        assert r.status_code in (200, 204)
    await _sync(app, org, account["id"])
    expected = sandbox_messages(app, provider, mailbox)
    assert len(expected) == 11
    assert await stored_messages(owner_engine, account["id"]) == expected

    # a sync with nothing new changes nothing
    await _sync(app, org, account["id"])
    assert await stored_messages(owner_engine, account["id"]) == expected


FAULTS = [
    "rate_limit",
    "server_error",
    "expire_access_token",
    "expire_cursor",
    "delete_before_get",
    "duplicate_page",
    "slow",
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", FAULTS)
async def test_every_fault_during_a_sync_loses_and_duplicates_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
    fault: str,
) -> None:
    org, _, mailbox = await _connected(client, make_org, provider)
    await seed_many(client, provider, mailbox, 3)
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    await _sync(app, org, account["id"])
    await seed_many(client, provider, mailbox, 5)
    await seed_many(client, provider, mailbox, 1, folder="sent")
    r = await client.post(
        f"/_sandbox/{provider}/faults",
        json={"kind": fault, "count": 2, "mailbox": mailbox, "retry_after": 0.05, "seconds": 0.05},
    )
    assert r.status_code in (200, 201, 204), r.text
    try:
        for _ in range(5):  # a throttled or failed run reschedules itself; run until idle
            await _sync(app, org, account["id"])
            row = await account_row(owner_engine, account["id"])
            if row["last_error"] is None:
                break
            # while it retries, the account tells the truth
            assert row["sync_state"] == "queued"
            assert row["status"] in ("active", "error")
    finally:
        await client.delete(f"/_sandbox/{provider}/faults")
    await _sync(app, org, account["id"])
    expected = sandbox_messages(app, provider, mailbox)
    assert await stored_messages(owner_engine, account["id"]) == expected
    row = await account_row(owner_engine, account["id"])
    assert row["sync_state"] in ("idle", "queued")  # a push may have queued the next one
    assert row["status"] == "active"
    assert row["last_error"] is None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_sync_killed_midway_then_rerun_loses_and_duplicates_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
) -> None:
    org, _, mailbox = await _connected(client, make_org, provider)
    await seed_many(client, provider, mailbox, 120)
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    sandbox = sandbox_of(app)
    sandbox.latency_seconds = 0.01
    try:
        task = asyncio.create_task(_sync(app, org, account["id"]))
        for _ in range(500):
            await asyncio.sleep(0.02)
            if await stored_messages(owner_engine, account["id"]):
                break
        task.cancel()  # the worker dies here
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        sandbox.latency_seconds = 0.0
    partial = await stored_messages(owner_engine, account["id"])
    expected = sandbox_messages(app, provider, mailbox)
    assert 0 < len(partial) < len(expected)
    row = await account_row(owner_engine, account["id"])
    assert row["sync_state"] == "running"  # what the stale-sync sweeper looks for
    await _sync(app, org, account["id"])
    assert await stored_messages(owner_engine, account["id"]) == expected
