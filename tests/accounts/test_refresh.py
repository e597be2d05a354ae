"""Refresh: ahead of expiry, after a 401, under Microsoft rotation with two concurrent
refreshers, and a revoked grant → reauth_required + a notification, never retried."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction
from app.providers.errors import AuthRevoked
from tests.fixtures.accounts import connect
from tests.fixtures.mailboxes import sandbox_of
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio


async def _stored(app: FastAPI, org: Org, account_id: str, kind: str) -> str:
    async with org_transaction(app.state.ctx.engine, org.id) as s:
        return str(await app.state.ctx.vault.get(s, uuid.UUID(account_id), kind))


async def _expire_locally(owner_engine: AsyncEngine, account_id: str) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE ce_email_accounts SET token_expires_at = now() WHERE id = :a"),
            {"a": account_id},
        )


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_refresh_ahead_of_expiry(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
) -> None:
    org: Org = await make_org("Expiry")
    account = await connect(client, provider, org.headers(), login_hint=f"exp@{provider}.test")
    before = await _stored(app, org, account["id"], "access_token")
    await _expire_locally(owner_engine, account["id"])
    source = app.state.ctx.token_source(provider, org.id, uuid.UUID(account["id"]))
    driver = app.state.ctx.provider(provider, source)
    profile = await driver.get_profile()
    assert profile.email_address == f"exp@{provider}.test"
    assert source.refreshes == 1
    after = await _stored(app, org, account["id"], "access_token")
    assert after != before


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_refresh_after_a_401(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, provider: str
) -> None:
    org: Org = await make_org("401")
    mailbox = f"unauth@{provider}.test"
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    before = await _stored(app, org, account["id"], "access_token")
    r = await client.post(
        f"/_sandbox/{provider}/faults",
        json={"kind": "expire_access_token", "count": 1, "mailbox": mailbox},
    )
    assert r.status_code in (200, 201, 204)
    source = app.state.ctx.token_source(provider, org.id, uuid.UUID(account["id"]))
    profile = await app.state.ctx.provider(provider, source).get_profile()
    assert profile.email_address == mailbox
    assert source.refreshes == 1
    assert await _stored(app, org, account["id"], "access_token") != before


async def test_microsoft_rotation_with_two_concurrent_refreshers(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org: Org = await make_org("Rotation")
    sandbox = sandbox_of(app)
    sandbox.outlook_old_refresh_tokens_valid = False  # the strict reading: old ones die
    try:
        account = await connect(client, "outlook", org.headers(), login_hint="rot@ms.test")
        first_refresh = await _stored(app, org, account["id"], "refresh_token")
        await _expire_locally(owner_engine, account["id"])
        # two workers, each with its own token source (no shared in-process lock)
        sources = [
            app.state.ctx.token_source("outlook", org.id, uuid.UUID(account["id"]))
            for _ in range(2)
        ]
        tokens = await asyncio.gather(*(s.access_token() for s in sources))
        assert tokens[0] == tokens[1]
        assert sum(s.refreshes for s in sources) == 1  # the second found the new token
        rotated = await _stored(app, org, account["id"], "refresh_token")
        assert rotated != first_refresh
        # the stored refresh token is the live one: a later refresh still works
        await _expire_locally(owner_engine, account["id"])
        later = app.state.ctx.token_source("outlook", org.id, uuid.UUID(account["id"]))
        assert await later.access_token() not in tokens
        # and the rotated-out one really is dead at the provider
        r = await client.post(
            "/_sandbox/outlook/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first_refresh,
                "client_id": app.state.settings.outlook_client_id,
                "client_secret": app.state.settings.outlook_client_secret.get_secret_value(),
                "scope": app.state.settings.outlook_scopes,
            },
        )
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"
    finally:
        sandbox.outlook_old_refresh_tokens_valid = True


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_revoked_refresh_token_sets_reauth_required_and_notifies_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
) -> None:
    org: Org = await make_org("Revoked")
    mailbox = f"revoked@{provider}.test"
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    await client.post(
        f"/_sandbox/{provider}/faults",
        json={"kind": "revoke_refresh_token", "count": 1, "mailbox": mailbox},
    )
    await _expire_locally(owner_engine, account["id"])
    source = app.state.ctx.token_source(provider, org.id, uuid.UUID(account["id"]))
    with pytest.raises(AuthRevoked):
        await source.access_token()
    detail = (await client.get(f"/v1/accounts/{account['id']}", headers=org.headers())).json()
    assert detail["status"] == "reauth_required"
    assert detail["last_error"]
    # nothing retries it: the next call fails at once, without a token request
    with pytest.raises(AuthRevoked):
        await source.access_token()
    async with owner_engine.connect() as conn:
        notes = (
            await conn.execute(
                text("SELECT user_id, type, data FROM notifications WHERE org_id = :o"),
                {"o": org.id},
            )
        ).all()
    assert len(notes) == 1
    assert str(notes[0].user_id) == org["admin"]["user_id"]
    assert notes[0].type == "email_account_reauth_required"
    assert notes[0].data["account_id"] == account["id"]
    # reconnecting the same mailbox brings it back to active
    again = await connect(client, provider, org.headers(), login_hint=mailbox)
    assert again["id"] == account["id"]
    assert again["status"] == "active"
    assert again["last_error"] is None


async def test_a_token_read_after_another_refresh_committed_is_not_refreshed_again(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg
) -> None:
    # access_token() reads the account row, then the token, in two statements: a refresh
    # committed between them hands it the new token with the old (expired) expiry. Under
    # the row lock the fresh expiry shows the token is new: no second refresh (which, with
    # Microsoft's rotation, would burn the refresh token another worker just stored).
    org: Org = await make_org("Between reads")
    account = await connect(client, "outlook", org.headers(), login_hint="between@ms.test")
    account_id = uuid.UUID(account["id"])
    current = await _stored(app, org, account["id"], "access_token")
    source = app.state.ctx.token_source("outlook", org.id, account_id)
    assert await source._refresh(stale=current, forced=False) == current
    assert source.refreshes == 0
    # after a 401 the same token is refreshed, fresh expiry or not
    assert await source._refresh(stale=current, forced=True) != current
    assert source.refreshes == 1
