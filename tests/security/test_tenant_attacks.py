"""Org B's user with org A's ids, on every endpoint that takes an id and every list: 404
or an empty page, never a row of A. The endpoints come from the OpenAPI document, so a new
endpoint is attacked without anyone remembering to add it here."""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.database import account_row
from tests.fixtures.mailboxes import seed
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.worker import count_jobs, forget_jobs

pytestmark = pytest.mark.asyncio

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/accounts/{account_id}"): {"visibility": "private"},
    ("POST", "/v1/emails/{email_id}/share"): {"level": "org"},
}


async def _org_a_world(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> tuple[Org, dict[str, str]]:
    org: Org = await make_org("Tenant A")
    mailbox = f"tenant-{uuid.uuid4().hex[:6]}@clinic-a.test"
    contact = f"pat-{uuid.uuid4().hex[:6]}@example.net"
    msg = EmailMessage()
    msg["From"] = f"Dr A <dr@{uuid.uuid4().hex[:6]}.hospital-a.org>"
    msg["To"] = mailbox
    msg["Cc"] = contact
    msg["Subject"] = "Org A private subject"
    msg.set_content("Org A private body")
    msg.add_attachment(b"%PDF org A", maintype="application", subtype="pdf", filename="a.pdf")
    await seed(client, "gmail", mailbox, bytes(msg))
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    from app.dev import fixtures

    settings = app.state.settings
    contact_id = (await fixtures.add_contact(owner_engine, settings, org.id, [contact]))[
        "contact_id"
    ]
    domain = msg["From"].split("@")[1].rstrip(">")
    partner_id = (await fixtures.add_partner(owner_engine, settings, org.id, [domain]))[
        "partner_id"
    ]
    await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]))
    async with owner_engine.connect() as conn:
        email_id, attachment_id = (
            await conn.execute(
                text(
                    "SELECT e.id, a.id FROM ce_emails e "
                    "JOIN ce_email_attachments a ON a.email_id = e.id WHERE e.account_id = :a"
                ),
                {"a": account["id"]},
            )
        ).one()
    ids = {
        "account_id": account["id"],
        "email_id": str(email_id),
        "attachment_id": str(attachment_id),
        "contact_id": contact_id,
        "partner_id": partner_id,
    }
    return org, ids


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)


async def test_org_b_never_sees_org_a(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org_a, ids = await _org_a_world(client, app, make_org, owner_engine)
    org_b: Org = await make_org("Tenant B")
    # A really can read all of it (so the 404s below are about B, not broken fixtures)
    detail = await client.get(f"/v1/emails/{ids['email_id']}", headers=org_a.headers())
    assert detail.status_code == 200
    assert detail.json()["contact_ids"] == [ids["contact_id"]]

    secrets = [*ids.values(), "Org A private subject", "Org A private body"]
    schema = app.openapi()
    attacked: list[str] = []
    for path, operations in schema["paths"].items():
        if not path.startswith("/v1/") or path.startswith(("/v1/webhooks", "/v1/oauth")):
            continue
        for method in operations:
            method = method.upper()
            url = _fill(path, ids)
            if "{" in path:
                body = BODIES.get((method, path))
                r = await client.request(
                    method,
                    url,
                    headers=org_b.headers(),
                    json=body if body is not None else None,
                    params={"purge": "true"} if method == "DELETE" else None,
                )
                assert r.status_code == 404, (method, path, r.status_code, r.text)
                attacked.append(f"{method} {path}")
            elif method == "GET":
                for key in ("contact_id", "partner_id", "account_id"):
                    params = {key: ids[key]} if key in str(operations) else {}
                    r = await client.get(url, params=params, headers=org_b.headers())
                    assert r.status_code in (200, 404), (path, r.text)
                    if r.status_code == 200 and "items" in r.json():
                        assert r.json()["items"] == [], (path, params)
                attacked.append(f"GET {path}")
            elif method == "POST" and path == "/v1/emails":
                r = await client.post(
                    url,
                    headers=org_b.headers(),
                    json={
                        "account_id": ids["account_id"],
                        "to": ["x@example.org"],
                        "subject": "s",
                        "text": "t",
                        "contact_id": ids["contact_id"],
                    },
                )
                assert r.status_code in (404, 422), r.text
                attacked.append("POST /v1/emails")
            else:
                continue
            for secret in secrets:
                if secret in str(r.request.url) or secret in r.request.content.decode():
                    continue  # what the attacker sent may be echoed (problem `instance`)
                assert secret not in r.text, (method, path)
    assert len(attacked) >= 10, attacked
    # and nothing of A changed
    after = await client.get(f"/v1/accounts/{ids['account_id']}", headers=org_a.headers())
    assert after.status_code == 200
    assert after.json()["visibility"] == "metadata"  # the org default, unchanged
    assert after.json()["status"] != "disconnected"


async def test_graph_notification_with_another_orgs_subscription_is_ignored(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    """A notification naming org A's subscription but carrying a clientState made for
    another account queues nothing for A."""
    from app.sync.push import push_client_state

    org_a: Org = await make_org("Push A")
    account = await connect(
        client, "outlook", org_a.headers(), login_hint=f"p-{uuid.uuid4().hex[:6]}@o.test"
    )
    await run_sync(app.state.ctx, org_a.id, uuid.UUID(account["id"]))
    subscription = (await account_row(owner_engine, account["id"]))["push_channel_id"]
    await forget_jobs(owner_engine, account["id"])
    forged = push_client_state(app.state.ctx, uuid.uuid4())
    r = await client.post(
        "/v1/webhooks/outlook",
        json={
            "value": [
                {"subscriptionId": subscription, "clientState": forged, "changeType": "created"}
            ]
        },
    )
    assert r.status_code == 202
    queued = await count_jobs(owner_engine, account["id"])
    assert queued == 0
