"""Accounts API: list/detail without tokens, visibility, disconnect, and org isolation."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import connect
from tests.fixtures.database import make_email
from tests.fixtures.mailboxes import sandbox_of
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio


async def test_other_orgs_ids_answer_404(client: httpx.AsyncClient, org_a: Org, org_b: Org) -> None:
    account = await connect(client, "gmail", org_a.headers(), login_hint="iso@a.test")
    path = f"/v1/accounts/{account['id']}"
    for method, kwargs in (
        ("GET", {}),
        ("PATCH", {"json": {"visibility": "private"}}),
        ("DELETE", {"params": {"purge": "true"}}),
    ):
        r = await client.request(method, path, headers=org_b.headers(), **kwargs)
        assert r.status_code == 404, (method, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/accounts", headers=org_b.headers())).json()["items"] == []
    r = await client.get(f"/v1/accounts/{uuid.uuid4()}", headers=org_a.headers())
    assert r.status_code == 404
    # A's account is untouched
    # (a new mailbox starts at the org default, metadata)
    assert (await client.get(path, headers=org_a.headers())).json()["visibility"] == "metadata"


async def test_visibility_owner_member_admin(client: httpx.AsyncClient, make_org: MakeOrg) -> None:
    org: Org = await make_org("Visibility")
    account = await connect(client, "outlook", org.headers("admin"), login_hint="vis@a.test")
    path = f"/v1/accounts/{account['id']}"
    # a member sees an org-visible mailbox but may not change it
    assert (await client.get(path, headers=org.headers("member"))).status_code == 200
    r = await client.patch(path, json={"visibility": "private"}, headers=org.headers("member"))
    assert r.status_code == 403
    r = await client.patch(path, json={"visibility": "private"}, headers=org.headers("admin"))
    assert r.status_code == 200
    assert r.json()["visibility"] == "private"
    # private: hidden from the member entirely
    assert (await client.get(path, headers=org.headers("member"))).status_code == 404
    listed = await client.get("/v1/accounts", headers=org.headers("member"))
    assert listed.json()["items"] == []
    r = await client.patch(path, json={"visibility": "everyone"}, headers=org.headers("admin"))
    assert r.status_code == 422


async def test_disconnect_keeps_or_purges_and_revokes(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org: Org = await make_org("Disconnect")
    keep = await connect(client, "gmail", org.headers(), login_hint="keep@d.test")
    purge = await connect(client, "gmail", org.headers(), login_hint="purge@d.test")
    for account in (keep, purge):
        await make_email(owner_engine, org.id, uuid.UUID(account["id"]))
    r = await client.delete(f"/v1/accounts/{keep['id']}", headers=org.headers())
    assert r.status_code == 422  # purge must be said explicitly
    r = await client.delete(
        f"/v1/accounts/{keep['id']}", params={"purge": "false"}, headers=org.headers()
    )
    assert r.status_code == 204
    r = await client.delete(
        f"/v1/accounts/{purge['id']}", params={"purge": "true"}, headers=org.headers()
    )
    assert r.status_code == 204

    kept = (await client.get(f"/v1/accounts/{keep['id']}", headers=org.headers())).json()
    assert kept["status"] == "disconnected"
    gone = await client.get(f"/v1/accounts/{purge['id']}", headers=org.headers())
    assert gone.status_code == 404
    async with owner_engine.connect() as conn:
        emails = dict(
            (
                await conn.execute(
                    text(
                        "SELECT account_id::text, count(*) FROM ce_emails WHERE org_id = :o "
                        "GROUP BY account_id"
                    ),
                    {"o": org.id},
                )
            ).all()
        )
        secrets = (
            await conn.execute(
                text("SELECT count(*) FROM vault.secrets WHERE org_id = :o"), {"o": org.id}
            )
        ).scalar()
    assert emails == {keep["id"]: 1}
    assert secrets == 0
    # the grants were revoked at Google
    grants = [
        t.grant
        for t in sandbox_of(app).gmail.tokens.values()
        if t.grant.mailbox in ("keep@d.test", "purge@d.test")
    ]
    assert grants
    assert all(g.revoked for g in grants)


async def test_member_cannot_disconnect_someone_elses_mailbox(
    client: httpx.AsyncClient, make_org: MakeOrg
) -> None:
    org: Org = await make_org("Members")
    account = await connect(client, "gmail", org.headers("admin"), login_hint="adm@m.test")
    r = await client.delete(
        f"/v1/accounts/{account['id']}", params={"purge": "true"}, headers=org.headers("member")
    )
    assert r.status_code == 403
    mine = await connect(client, "gmail", org.headers("member"), login_hint="mem@m.test")
    r = await client.delete(
        f"/v1/accounts/{mine['id']}", params={"purge": "true"}, headers=org.headers("member")
    )
    assert r.status_code == 204
