"""The real job queue and push: connect queues the first sync, a worker runs it, pushes
from the sandbox queue more, the API coalesces and reports progress."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sync.push import push_client_state
from tests.fixtures.accounts import connect
from tests.fixtures.database import account_row
from tests.fixtures.mailboxes import sandbox_messages, sandbox_of, seed_many, stored_messages
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.worker import RENEW_PUSH, count_jobs, drain, forget_jobs, job_statuses

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_connect_queues_a_sync_the_worker_runs_it_and_push_brings_new_mail(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
) -> None:
    org: Org = await make_org("Jobs")
    mailbox = f"jobs-{uuid.uuid4().hex[:6]}@{provider}.test"
    await seed_many(client, provider, mailbox, 4)
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    assert await job_statuses(owner_engine, account["id"]) == ["todo"]
    status = (await client.get(f"/v1/accounts/{account['id']}/sync", headers=org.headers())).json()
    assert status["state"] == "queued"

    await drain(app, queues=["sync"])
    assert await stored_messages(owner_engine, account["id"]) == sandbox_messages(
        app, provider, mailbox
    )
    status = (await client.get(f"/v1/accounts/{account['id']}/sync", headers=org.headers())).json()
    assert status["state"] == "idle"
    assert status["processed"] >= 4
    assert status["last_synced_at"]
    row = await account_row(owner_engine, account["id"])
    assert row["push_channel_id"], "push registered after the first sync"

    # new mail: the sandbox pushes to our webhook, which queues a sync
    await seed_many(client, provider, mailbox, 2)
    await sandbox_of(app).drain_pushes()
    assert "todo" in await job_statuses(owner_engine, account["id"])
    await drain(app, queues=["sync"])
    assert await stored_messages(owner_engine, account["id"]) == sandbox_messages(
        app, provider, mailbox
    )


async def test_manual_sync_coalesces_and_needs_owner_or_admin(
    client: httpx.AsyncClient, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org: Org = await make_org("Coalesce")
    account = await connect(client, "gmail", org.headers(), login_hint="co@gmail.test")
    path = f"/v1/accounts/{account['id']}/sync"
    first = await client.post(path, headers=org.headers())
    assert first.status_code == 202
    assert first.json()["coalesced"] is True  # the connect already queued one
    assert await job_statuses(owner_engine, account["id"]) == ["todo"]
    assert (await client.post(path, headers=org.headers("member"))).status_code == 403
    other: Org = await make_org("Other")
    assert (await client.post(path, headers=other.headers())).status_code == 404
    assert (await client.get(path, headers=other.headers())).status_code == 404


async def test_gmail_webhook_verifies_and_ignores_old_history(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org: Org = await make_org("Gmail push")
    mailbox = f"push-{uuid.uuid4().hex[:6]}@gmail.test"
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    await drain(app, queues=["sync"])
    cursor = (await account_row(owner_engine, account["id"]))["sync_cursor"]["history_id"]

    def envelope(history_id: int | str) -> dict:
        data = json.dumps({"emailAddress": mailbox, "historyId": history_id}).encode()
        return {
            "message": {
                "data": base64.urlsafe_b64encode(data).decode(),
                "messageId": "1",
                "publishTime": "2026-11-24T00:00:00Z",
            },
            "subscription": "projects/p/subscriptions/s",
        }

    secret = app.state.settings.gmail_push_secret.get_secret_value()
    r = await client.post("/v1/webhooks/gmail", json=envelope(int(cursor) + 5))
    assert r.status_code == 403
    r = await client.post(
        "/v1/webhooks/gmail", params={"token": "wrong"}, json=envelope(int(cursor) + 5)
    )
    assert r.status_code == 403
    r = await client.post("/v1/webhooks/gmail", params={"token": secret}, content=b"{not json")
    assert r.status_code == 400
    # older or equal historyId: harmless, nothing queued
    r = await client.post("/v1/webhooks/gmail", params={"token": secret}, json=envelope(cursor))
    assert r.status_code == 204
    assert "todo" not in await job_statuses(owner_engine, account["id"])
    # newer (as a number, as Google sometimes sends it): queued, and duplicates coalesce
    for _ in range(3):
        r = await client.post(
            "/v1/webhooks/gmail", params={"token": secret}, json=envelope(int(cursor) + 7)
        )
        assert r.status_code == 204
    assert (await job_statuses(owner_engine, account["id"])).count("todo") == 1


async def test_outlook_webhook_validation_client_state_and_lifecycle(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    r = await client.post("/v1/webhooks/outlook", params={"validationToken": "a b+c/<d>"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "a b+c/<d>"

    org: Org = await make_org("Graph push")
    mailbox = f"push-{uuid.uuid4().hex[:6]}@outlook.test"
    account = await connect(client, "outlook", org.headers(), login_hint=mailbox)
    await drain(app, queues=["sync"])
    row = await account_row(owner_engine, account["id"])
    subscription = row["push_channel_id"]
    assert subscription

    def note(client_state: str, **extra: str) -> dict:
        return {
            "value": [
                {
                    "subscriptionId": subscription,
                    "clientState": client_state,
                    "changeType": "created",
                    "resource": "me/messages/x",
                    **extra,
                }
            ]
        }

    r = await client.post("/v1/webhooks/outlook", json=note("forged"))
    assert r.status_code == 202
    assert "todo" not in await job_statuses(owner_engine, account["id"])
    good = push_client_state(app.state.ctx, uuid.UUID(account["id"]))
    r = await client.post("/v1/webhooks/outlook", json=note(good))
    assert r.status_code == 202
    assert await job_statuses(owner_engine, account["id"]) == ["todo"]
    await drain(app, queues=["sync"])
    r = await client.post(
        "/v1/webhooks/outlook", json=note(good, lifecycleEvent="reauthorizationRequired")
    )
    assert r.status_code == 202
    renewals = await count_jobs(owner_engine, account["id"], task=RENEW_PUSH)
    assert renewals == 1
    r = await client.post("/v1/webhooks/outlook", json=note(good, lifecycleEvent="missed"))
    assert r.status_code == 202
    assert "todo" in await job_statuses(owner_engine, account["id"])


async def test_new_mail_pulls_a_pending_retry_forward(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    from datetime import UTC, datetime, timedelta

    from app.db.rls import org_transaction
    from app.sync.service import enqueue_sync

    org: Org = await make_org("Retry")
    account = await connect(client, "gmail", org.headers(), login_hint="retry@gmail.test")
    account_id = uuid.UUID(account["id"])
    await forget_jobs(owner_engine, account["id"])
    async with org_transaction(app.state.ctx.engine, org.id) as session:
        await enqueue_sync(
            session,
            org.id,
            account_id,
            reason="retry",
            scheduled_at=datetime.now(UTC) + timedelta(minutes=5),
        )
    async with org_transaction(app.state.ctx.engine, org.id) as session:
        assert (
            await enqueue_sync(session, org.id, account_id, reason="push", priority=10) is None
        )  # coalesced
    async with owner_engine.connect() as conn:
        job = (
            await conn.execute(
                text(
                    "SELECT priority, scheduled_at - now() AS wait FROM procrastinate_jobs "
                    "WHERE args->>'account_id' = :a AND status = 'todo'"
                ),
                {"a": account["id"]},
            )
        ).one()
    assert job.priority == 10
    assert job.wait <= timedelta(seconds=5)
