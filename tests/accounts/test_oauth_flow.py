"""The connect dance for both providers through the sandbox, and every way it must refuse."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.oauth_state import StateClaims, sign_state
from app.config import Settings
from tests.fixtures.accounts import RETURN_TO, authorize_url, connect, consent, query
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio

DEFAULT_MAILBOX = {
    "gmail": "sandbox.user@example.com",
    "outlook": "sandbox.user@example.onmicrosoft.com",
}


async def _account_count(owner_engine: AsyncEngine, org: Org) -> int:
    async with owner_engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM ce_email_accounts WHERE org_id = :o"), {"o": org.id}
                )
            ).scalar_one()
        )


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_full_dance_and_reconnect_reuses_the_account(
    client: httpx.AsyncClient, org_a: Org, provider: str
) -> None:
    url = await authorize_url(client, provider, org_a.headers())
    params = query(url)
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"]
    assert params["redirect_uri"] == f"http://127.0.0.1:8000/v1/oauth/{provider}/callback"
    if provider == "gmail":
        assert params["access_type"] == "offline"
        assert params["prompt"] == "consent"
    else:
        assert "offline_access" in params["scope"]

    account = await connect(client, provider, org_a.headers())
    assert account["status"] == "active"
    assert account["provider"] == provider
    assert account["email_address"] == DEFAULT_MAILBOX[provider]
    assert account["owner_user_id"] == org_a["admin"]["user_id"]
    assert "token" not in str(account).lower()

    again = await connect(client, provider, org_a.headers())
    assert again["id"] == account["id"]
    listed = await client.get("/v1/accounts", headers=org_a.headers())
    assert [a["id"] for a in listed.json()["items"]] == [account["id"]]


async def test_login_hint_picks_the_mailbox(client: httpx.AsyncClient, org_a: Org) -> None:
    account = await connect(client, "gmail", org_a.headers(), login_hint="dr.who@clinic.example")
    assert account["email_address"] == "dr.who@clinic.example"


async def test_foreign_return_to_is_refused_before_anything_starts(
    client: httpx.AsyncClient, org_a: Org
) -> None:
    for bad in (
        "https://evil.example/steal",
        "http://localhost:3001/x",
        "//evil.example",
        "javascript:alert(1)",
        "http://user@localhost:3000/x",
        "https://crm.example.org.evil.example/",
    ):
        response = await client.get(
            "/v1/oauth/gmail/authorize", params={"return_to": bad}, headers=org_a.headers()
        )
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"
    ok = await client.get(
        "/v1/oauth/gmail/authorize",
        params={"return_to": "https://crm.example.org/x?y=1"},
        headers=org_a.headers(),
    )
    assert ok.status_code == 200


async def test_authorize_needs_a_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/oauth/gmail/authorize", params={"return_to": RETURN_TO})
    assert response.status_code == 401


async def test_unknown_provider_is_422(client: httpx.AsyncClient, org_a: Org) -> None:
    response = await client.get(
        "/v1/oauth/yahoo/authorize", params={"return_to": RETURN_TO}, headers=org_a.headers()
    )
    assert response.status_code == 422


async def test_bad_replayed_expired_state_and_denial_create_nothing(
    client: httpx.AsyncClient,
    org_a: Org,
    owner_engine: AsyncEngine,
    test_settings: Settings,
) -> None:
    # bad state: tampered signature, garbage, missing
    url = await authorize_url(client, "gmail", org_a.headers())
    callback = await consent(client, url)
    params = query(callback)
    tampered = params["state"][:-2] + ("AA" if not params["state"].endswith("AA") else "BB")
    for state in (tampered, "garbage", ""):
        r = await client.get(
            "/v1/oauth/gmail/callback", params={"code": params["code"], "state": state}
        )
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/problem+json"
    # the real state still works once ...
    first = await client.get(callback)
    assert first.status_code == 302
    assert "account_id" in query(first.headers["location"])
    # ... and never again (replay)
    replay = await client.get(callback)
    assert replay.status_code == 400
    assert await _account_count(owner_engine, org_a) == 1

    # a state for the other provider's callback is refused
    url = await authorize_url(client, "gmail", org_a.headers())
    params = query(await consent(client, url))
    r = await client.get("/v1/oauth/outlook/callback", params=params)
    assert r.status_code == 400

    # expired: a correctly signed state whose expiry has passed
    expired = sign_state(
        test_settings.oauth_state_secret.get_secret_value(),
        StateClaims(uuid.uuid4(), org_a.id, 1_000_000_000),
    )
    r = await client.get("/v1/oauth/gmail/callback", params={"code": "x", "state": expired})
    assert r.status_code == 400
    # a signed state naming no row (or another org's) is refused
    forged = sign_state(
        test_settings.oauth_state_secret.get_secret_value(),
        StateClaims(uuid.uuid4(), org_a.id, 4_000_000_000),
    )
    r = await client.get("/v1/oauth/gmail/callback", params={"code": "x", "state": forged})
    assert r.status_code == 400
    assert await _account_count(owner_engine, org_a) == 1


async def test_state_expired_in_the_database_is_refused(
    client: httpx.AsyncClient, org_b: Org, owner_engine: AsyncEngine
) -> None:
    url = await authorize_url(client, "outlook", org_b.headers())
    callback = await consent(client, url)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ce_oauth_states SET expires_at = now() - interval '1 s' WHERE org_id = :o"
            ),
            {"o": org_b.id},
        )
    r = await client.get(callback)
    assert r.status_code == 400
    assert await _account_count(owner_engine, org_b) == 0


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_provider_denial_redirects_with_error(
    client: httpx.AsyncClient, org_b: Org, owner_engine: AsyncEngine, provider: str
) -> None:
    url = await authorize_url(client, provider, org_b.headers())
    callback = await consent(client, url, sandbox_deny="1")
    assert query(callback).get("error") == "access_denied"
    r = await client.get(callback)
    assert r.status_code == 302
    target = r.headers["location"]
    assert target.startswith(RETURN_TO)
    assert query(target)["error"] == "access_denied"
    assert "account_id" not in query(target)
    assert await _account_count(owner_engine, org_b) == 0


async def test_wrong_user_and_removed_member(
    client: httpx.AsyncClient, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org = await make_org("Wrong user")
    # the callback arrives in another user's session
    url = await authorize_url(client, "gmail", org.headers("admin"))
    callback = await consent(client, url)
    r = await client.get(callback, headers=org.headers("member"))
    assert query(r.headers["location"])["error"] == "wrong_user"
    # the user who started the flow left the org before the callback
    url = await authorize_url(client, "gmail", org.headers("member"))
    callback = await consent(client, url)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM org_memberships WHERE user_id = :u"), {"u": org["member"]["user_id"]}
        )
    r = await client.get(callback)
    assert r.status_code == 302
    assert query(r.headers["location"])["error"] == "not_a_member"
    assert await _account_count(owner_engine, org) == 0


async def test_exchange_failure_redirects_with_error(
    client: httpx.AsyncClient, app: FastAPI, org_b: Org, owner_engine: AsyncEngine
) -> None:
    url = await authorize_url(client, "gmail", org_b.headers())
    params = query(await consent(client, url))
    # a code the provider never issued (state is genuine)
    r = await client.get(
        "/v1/oauth/gmail/callback", params={"code": "not-a-real-code", "state": params["state"]}
    )
    assert r.status_code == 302
    assert query(r.headers["location"])["error"] == "exchange_failed"
    assert await _account_count(owner_engine, org_b) == 0
