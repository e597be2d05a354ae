"""Reconciliation: a change feed that lost messages and a push that was dropped do not
leave the mailbox incomplete, and the status says so until a reconciliation proves it.

Must show 1 of issue 12 for both providers, the endpoint's authorisation and coalescing,
the periodic driver, the metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.jobs.runtime import RUNTIME
from app.jobs.worker import run_worker
from app.reconcile.jobs import reconcile_due_accounts
from app.reconcile.queue import RECONCILE_PRIORITY
from app.reconcile.service import run_reconcile
from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.mail import make_raw
from tests.fixtures.mailboxes import sandbox_messages, sandbox_of, seed, seed_many, stored_messages
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio

PROVIDERS = ["gmail", "outlook"]


async def _drain(app: FastAPI, owner_engine: AsyncEngine) -> None:
    """Run every job waiting on the sync queue (syncs and reconciliations). A worker that
    does not wait stops when it finds nothing to fetch, which a job behind the lock of a
    running one is: run it again until the queue is empty."""
    for _ in range(10):
        await sandbox_of(app).drain_pushes()
        await run_worker(
            app.state.settings,
            app.state.ctx,
            wait=False,
            install_signal_handlers=False,
            queues=["sync"],
        )
        async with owner_engine.connect() as conn:
            waiting = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'sync' "
                        "AND status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())"
                    )
                )
            ).scalar_one()
        if not waiting:
            return
    raise AssertionError("the sync queue did not drain")


async def _fault(client: httpx.AsyncClient, provider: str, mailbox: str, kind: str, n: int) -> None:
    r = await client.post(
        f"/_sandbox/{provider}/faults", json={"kind": kind, "count": n, "mailbox": mailbox}
    )
    assert r.status_code in (200, 201, 204), r.text


async def _status(client: httpx.AsyncClient, org: Org, account_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/accounts/{account_id}/sync", headers=org.headers())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _reconcile_jobs(owner_engine: AsyncEngine, account_id: str) -> list[tuple[Any, ...]]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status::text, queue_name, priority, lock, queueing_lock "
                "FROM procrastinate_jobs WHERE args->>'account_id' = :a "
                "AND task_name = 'ce:reconcile_account' ORDER BY id"
            ),
            {"a": account_id},
        )
        return [tuple(row) for row in rows]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_lost_changes_and_dropped_push_are_found_and_a_deletion_removed(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
) -> None:
    org: Org = await make_org(f"Reconcile {provider}")
    mailbox = f"rec-{uuid.uuid4().hex[:8]}@clinic-{provider}.test"
    await seed_many(client, provider, mailbox, 16)
    await seed_many(client, provider, mailbox, 4, folder="sent")
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    account_id = account["id"]
    await _drain(app, owner_engine)  # the first sync, queued by the connect
    assert len(await stored_messages(owner_engine, account_id)) == 20
    status = await _status(client, org, account_id)
    assert status["completeness"] == {
        "verified_at": None,
        "provider_count": None,
        "stored_count": None,
        "missing_fetched": None,
        "stale_removed": None,
    }

    # The change feed loses the next 3 messages; push is dropped from now on.
    await _fault(client, provider, mailbox, "skip_changes", 3)
    await _fault(client, provider, mailbox, "drop_push", 100)
    try:
        await seed_many(client, provider, mailbox, 8)
        await seed_many(client, provider, mailbox, 2, folder="sent")
        r = await client.post(f"/v1/accounts/{account_id}/sync", headers=org.headers())
        assert r.status_code == 202
        await _drain(app, owner_engine)
        stored = await stored_messages(owner_engine, account_id)  # asserts no duplicate ids
        assert len(stored) == 27
        assert len(sandbox_messages(app, provider, mailbox)) == 30
        # the sync itself went fine: only a reconciliation can tell that 3 are missing,
        # and the status claims no verification
        status = await _status(client, org, account_id)
        assert status["state"] == "idle"
        assert status["last_error"] is None
        assert status["completeness"]["verified_at"] is None

        r = await client.post(f"/v1/accounts/{account_id}/reconcile", headers=org.headers())
        assert r.status_code == 202
        assert r.json() == {"state": "queued", "coalesced": False}
        await _drain(app, owner_engine)
        stored = await stored_messages(owner_engine, account_id)
        assert len(stored) == 30
        assert stored == sandbox_messages(app, provider, mailbox)
        completeness = (await _status(client, org, account_id))["completeness"]
        assert completeness["verified_at"] is not None
        assert completeness["provider_count"] == 30
        assert completeness["stored_count"] == 30
        assert completeness["missing_fetched"] == 3
        assert completeness["stale_removed"] == 0
        first_verified = completeness["verified_at"]

        # Deleted at the provider while push is dropped and before any sync: the next
        # reconciliation removes it.
        gone = sorted(stored)[0]
        r = await client.delete(f"/_sandbox/{provider}/mailboxes/{mailbox}/messages/{gone}")
        assert r.status_code in (200, 204)
        r = await client.post(f"/v1/accounts/{account_id}/reconcile", headers=org.headers())
        assert r.status_code == 202
        await _drain(app, owner_engine)
        stored = await stored_messages(owner_engine, account_id)
        assert gone not in stored
        assert stored == sandbox_messages(app, provider, mailbox)
        assert len(stored) == 29
        completeness = (await _status(client, org, account_id))["completeness"]
        assert completeness["stale_removed"] == 1
        assert completeness["missing_fetched"] == 0
        assert completeness["provider_count"] == completeness["stored_count"] == 29
        assert completeness["verified_at"] > first_verified

        # the change feed's own deletion, seen by the next sync, changes nothing more
        await client.post(f"/v1/accounts/{account_id}/sync", headers=org.headers())
        await _drain(app, owner_engine)
        assert await stored_messages(owner_engine, account_id) == sandbox_messages(
            app, provider, mailbox
        )
    finally:
        await client.delete(f"/_sandbox/{provider}/faults")

    # the fetched messages went through the normal store path: activities and links too
    async with owner_engine.connect() as conn:
        without_participants = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM ce_emails e WHERE e.account_id = :a AND NOT EXISTS "
                    "(SELECT 1 FROM ce_email_participants p WHERE p.email_id = e.id)"
                ),
                {"a": account_id},
            )
        ).scalar_one()
    assert without_participants == 0

    metrics = (await client.get("/metrics")).text
    assert f'ce_email_reconcile_age_seconds{{account_id="{account_id}"}}' in metrics
    assert f'ce_email_reconcile_missing_total{{provider="{provider}"}}' in metrics
    assert mailbox not in metrics


async def test_reconcile_endpoint_coalesces_runs_on_the_account_lock_and_needs_owner_or_admin(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org: Org = await make_org("Reconcile coalesce")
    account = await connect(client, "gmail", org.headers(), login_hint="rc@gmail.test")
    path = f"/v1/accounts/{account['id']}/reconcile"
    first = await client.post(path, headers=org.headers())
    assert first.status_code == 202
    assert first.json()["coalesced"] is False
    second = await client.post(path, headers=org.headers())
    assert second.status_code == 202
    assert second.json()["coalesced"] is True
    lock = f"sync:{account['id']}"
    assert await _reconcile_jobs(owner_engine, account["id"]) == [
        ("todo", "sync", RECONCILE_PRIORITY, lock, f"reconcile:{account['id']}")
    ]
    # a member who is neither owner nor admin: 403, like the sync endpoint; another org: 404
    assert (await client.post(path, headers=org.headers("member"))).status_code == 403
    other: Org = await make_org("Reconcile other")
    assert (await client.post(path, headers=other.headers())).status_code == 404

    # new mail for the account: the waiting reconciliation, which holds the account's
    # lock, goes behind the new mail's sync (jobs under one lock run in queueing order)
    async with owner_engine.begin() as conn:  # a poll queued after the reconciliation
        await conn.execute(
            text(
                "DELETE FROM procrastinate_jobs WHERE args->>'account_id' = :a "
                "AND task_name = 'ce:sync_account'"
            ),
            {"a": account["id"]},
        )
    r = await client.post(f"/v1/accounts/{account['id']}/sync", headers=org.headers())
    assert r.status_code == 202
    async with owner_engine.connect() as conn:
        order = (
            await conn.execute(
                text(
                    "SELECT task_name, priority FROM procrastinate_jobs "
                    "WHERE lock = :lock AND status = 'todo' ORDER BY id"
                ),
                {"lock": lock},
            )
        ).all()
    assert [tuple(row) for row in order] == [
        ("ce:sync_account", 10),
        ("ce:reconcile_account", RECONCILE_PRIORITY),
    ]
    await _drain(app, owner_engine)
    assert await _reconcile_jobs(owner_engine, account["id"]) == []
    status = (await client.get(f"/v1/accounts/{account['id']}/sync", headers=org.headers())).json()
    assert status["completeness"]["verified_at"] is not None
    assert status["completeness"]["provider_count"] == 0


async def test_periodic_driver_queues_the_accounts_past_their_orgs_interval(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org: Org = await make_org("Reconcile periodic")
    r = await client.patch(
        "/v1/settings", json={"email_reconcile_interval_hours": 2}, headers=org.headers()
    )
    assert r.status_code == 200
    for bad in (0, 169):
        r = await client.patch(
            "/v1/settings", json={"email_reconcile_interval_hours": bad}, headers=org.headers()
        )
        assert r.status_code == 422
    due = await connect(client, "outlook", org.headers(), login_hint="due@outlook.test")
    fresh = await connect(client, "gmail", org.headers(), login_hint="fresh@gmail.test")
    never = await connect(client, "gmail", org.headers(), login_hint="never@gmail.test")
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ce_email_accounts SET last_synced_at = now() - interval '3 hours' "
                "WHERE id = :a"
            ),
            {"a": due["id"]},
        )
        await conn.execute(
            text(
                "UPDATE ce_email_accounts SET last_synced_at = now() - interval '3 hours', "
                "reconcile_verified_at = now() - interval '1 hour' WHERE id = :a"
            ),
            {"a": fresh["id"]},
        )
        await conn.execute(  # never synced: its first sync is the full listing
            text("UPDATE ce_email_accounts SET last_synced_at = NULL WHERE id = :a"),
            {"a": never["id"]},
        )
    RUNTIME.ctx = app.state.ctx
    await reconcile_due_accounts(0)
    assert len(await _reconcile_jobs(owner_engine, due["id"])) == 1
    assert await _reconcile_jobs(owner_engine, fresh["id"]) == []
    assert await _reconcile_jobs(owner_engine, never["id"]) == []
    await reconcile_due_accounts(0)  # coalesces
    assert len(await _reconcile_jobs(owner_engine, due["id"])) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_id_listing_names_the_window_and_the_driver_says_what_is_still_there(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, provider: str
) -> None:
    org: Org = await make_org(f"Id listing {provider}")
    mailbox = f"ids-{uuid.uuid4().hex[:8]}@clinic-{provider}.test"
    inbox = await seed_many(client, provider, mailbox, 3)
    sent = await seed_many(client, provider, mailbox, 2, folder="sent")
    old = make_raw("old@hospital.org", mailbox, "Too old")
    await seed(client, provider, mailbox, old, received_at=datetime.now(UTC) - timedelta(days=45))
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    driver = app.state.ctx.account_provider(provider, org.id, uuid.UUID(account["id"]))
    since = datetime.now(UTC) - timedelta(days=30)
    listed = {
        folder: [ref async for page in driver.list_message_ids(folder, since) for ref in page]
        for folder in ("inbox", "sent")
    }
    assert sorted(r.id for r in listed["inbox"]) == sorted(inbox)
    assert sorted(r.id for r in listed["sent"]) == sorted(sent)
    assert all(r.folder == "inbox" for r in listed["inbox"])

    r = await client.delete(f"/_sandbox/{provider}/mailboxes/{mailbox}/messages/{inbox[0]}")
    assert r.status_code in (200, 204)
    kept = await driver.still_in_mailbox([inbox[0], inbox[1]])
    # Gmail: a message not listed in Inbox/Sent may still be in the mailbox (archived);
    # Graph: not listed in the folder means gone from it, as delta says
    assert kept == ({inbox[1]} if provider == "gmail" else set())


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["rate_limit", "server_error", "delete_before_get"])
async def test_a_fault_during_reconciliation_loses_and_duplicates_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
    fault: str,
) -> None:
    org: Org = await make_org(f"Reconcile {fault}")
    mailbox = f"recf-{uuid.uuid4().hex[:8]}@clinic-{provider}.test"
    await seed_many(client, provider, mailbox, 4)
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    account_id = uuid.UUID(account["id"])
    await _drain(app, owner_engine)
    await _fault(client, provider, mailbox, "skip_changes", 2)
    await seed_many(client, provider, mailbox, 3)
    await run_sync(app.state.ctx, org.id, account_id, reason="test")
    assert len(await stored_messages(owner_engine, account["id"])) == 5
    r = await client.post(
        f"/_sandbox/{provider}/faults",
        json={"kind": fault, "count": 2, "mailbox": mailbox, "retry_after": 0.05},
    )
    assert r.status_code in (200, 201, 204), r.text
    try:
        outcome = None
        for _ in range(5):  # a throttled or failed run queues itself again; run until done
            outcome = await run_reconcile(app.state.ctx, org.id, account_id)
            if outcome is not None:
                break
        assert outcome is not None
        # the fault did strike the reconciliation (else this is a plain run)
        left = (await client.get(f"/_sandbox/{provider}/faults")).json()["faults"]
        assert [f for f in left if f["kind"] == fault and f["count"] == 2] == [], left
    finally:
        await client.delete(f"/_sandbox/{provider}/faults")
    # nothing missing, nothing twice; a stored message that `delete_before_get` deleted
    # right after the listing named it stays until the next pass (sync or reconciliation)
    stored = await stored_messages(owner_engine, account["id"])
    assert set(stored) >= set(sandbox_messages(app, provider, mailbox))
    await run_reconcile(app.state.ctx, org.id, account_id)
    assert await stored_messages(owner_engine, account["id"]) == sandbox_messages(
        app, provider, mailbox
    )
