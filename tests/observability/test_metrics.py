"""GET /metrics: Prometheus exposition with the service's figures, and nothing from mail."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.mailboxes import seed_many
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio


async def test_metrics_after_a_sync(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg
) -> None:
    org: Org = await make_org("Metrics")
    mailbox = f"metrics-{uuid.uuid4().hex[:6]}@gmail.test"
    await seed_many(client, "gmail", mailbox, 3, sender="Secret Sender <sender@hospital.org>")
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]))
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    body = r.text
    assert 'ce_email_provider_calls_total{provider="gmail",status="200"}' in body
    assert "ce_email_messages_synced_total" in body
    assert f'ce_email_sync_lag_seconds{{account_id="{account["id"]}"' in body
    assert "ce_email_queue_depth{" in body
    assert 'ce_email_emails{direction="inbound",status="received"}' in body
    for secret in (mailbox, "hospital.org", "Inbox 0", "SANDBOXTOKEN"):
        assert secret not in body


async def test_metrics_token(client: httpx.AsyncClient, app: FastAPI) -> None:
    from pydantic import SecretStr

    settings = app.state.settings
    original = settings.metrics_token
    object.__setattr__(settings, "metrics_token", SecretStr("scrape-me"))
    try:
        assert (await client.get("/metrics")).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200
    finally:
        object.__setattr__(settings, "metrics_token", original)
