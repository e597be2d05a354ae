"""OAuth code + PKCE, refresh and revocation for both fake identity providers."""

from __future__ import annotations

import base64
import json

import pytest

from tests.fixtures.standalone_sandbox import (
    GMAIL_API,
    GMAIL_USER,
    GRAPH_API,
    OUTLOOK_USER,
    SANDBOX,
    Sandbox,
    authorize,
    bearer,
    connect,
    pkce_pair,
    redirect_query,
    token_call,
)

PROVIDERS = ["gmail", "outlook"]


def _claims(id_token: str) -> dict[str, object]:
    payload = id_token.split(".")[1]
    claims: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@pytest.mark.asyncio
async def test_gmail_code_flow_issues_marked_tokens_for_the_login_hint(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    response = await authorize(sandbox, "gmail", challenge, login_hint="Bob@Example.com")
    query = redirect_query(response)
    assert response.headers["location"].startswith(
        f"{sandbox.settings.public_base_url}/v1/oauth/gmail/callback?"
    )
    assert query["state"] == "opaque-state-123"

    tokens = (
        await token_call(
            sandbox,
            "gmail",
            grant_type="authorization_code",
            code=query["code"],
            redirect_uri=f"{sandbox.settings.public_base_url}/v1/oauth/gmail/callback",
            code_verifier=verifier,
        )
    ).json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3599
    assert "SANDBOXTOKEN" in tokens["access_token"]
    assert "SANDBOXTOKEN" in tokens["refresh_token"]
    assert "gmail.modify" in tokens["scope"]
    assert _claims(tokens["id_token"])["email"] == "bob@example.com"

    profile = await sandbox.client.get(f"{GMAIL_API}/profile", headers=bearer(tokens))
    assert profile.status_code == 200
    assert profile.json()["emailAddress"] == "bob@example.com"


@pytest.mark.asyncio
async def test_outlook_code_flow_and_me(sandbox: Sandbox) -> None:
    tokens = await connect(sandbox, "outlook")
    assert "SANDBOXTOKEN" in tokens["access_token"]
    assert "SANDBOXTOKEN" in tokens["refresh_token"]
    assert "offline_access" not in tokens["scope"].split()
    assert _claims(tokens["id_token"])["preferred_username"] == OUTLOOK_USER

    me = (await sandbox.client.get(f"{GRAPH_API}/me", headers=bearer(tokens))).json()
    assert me["mail"] == OUTLOOK_USER
    assert me["userPrincipalName"] == OUTLOOK_USER
    assert me["displayName"] == "Sandbox User"
    assert me["id"]


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_pkce_mismatch_is_invalid_grant(sandbox: Sandbox, provider: str) -> None:
    _, challenge = pkce_pair()
    query = redirect_query(await authorize(sandbox, provider, challenge))
    response = await token_call(
        sandbox,
        provider,
        grant_type="authorization_code",
        code=query["code"],
        redirect_uri=f"{sandbox.settings.public_base_url}/v1/oauth/{provider}/callback",
        code_verifier=pkce_pair()[0],
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_grant"
    if provider == "outlook":
        assert body["error_codes"] == [501481]
        assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()
        assert body["error_description"].startswith("AADSTS501481:")


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_code_is_single_use_and_expires(sandbox: Sandbox, provider: str) -> None:
    verifier, challenge = pkce_pair()
    redirect_uri = f"{sandbox.settings.public_base_url}/v1/oauth/{provider}/callback"
    code = redirect_query(await authorize(sandbox, provider, challenge))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    assert (await token_call(sandbox, provider, **form)).status_code == 200
    reused = await token_call(sandbox, provider, **form)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"

    late = redirect_query(await authorize(sandbox, provider, challenge))["code"]
    sandbox.clock.advance(601)
    expired = await token_call(sandbox, provider, **{**form, "code": late})
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unregistered_redirect_or_client_never_redirects(
    sandbox: Sandbox, provider: str
) -> None:
    _, challenge = pkce_pair()
    wrong_redirect = await authorize(
        sandbox, provider, challenge, redirect_uri="https://evil.example/callback"
    )
    assert wrong_redirect.status_code == 400
    assert "location" not in wrong_redirect.headers
    assert "redirect_uri_mismatch" in wrong_redirect.text

    wrong_client = await authorize(sandbox, provider, challenge, client_id="someone-else")
    assert wrong_client.status_code == 400
    assert "location" not in wrong_client.headers
    assert "invalid_client" in wrong_client.text


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_token_endpoint_checks_redirect_uri_and_secret(
    sandbox: Sandbox, provider: str
) -> None:
    verifier, challenge = pkce_pair()
    code = redirect_query(await authorize(sandbox, provider, challenge))["code"]
    other_redirect = await token_call(
        sandbox,
        provider,
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://127.0.0.1:8000/elsewhere",
        code_verifier=verifier,
    )
    assert other_redirect.status_code == 400
    expected = "redirect_uri_mismatch" if provider == "gmail" else "invalid_grant"
    assert other_redirect.json()["error"] == expected

    bad_secret = await token_call(
        sandbox,
        provider,
        grant_type="authorization_code",
        code=code,
        redirect_uri=f"{sandbox.settings.public_base_url}/v1/oauth/{provider}/callback",
        code_verifier=verifier,
        client_secret="wrong",
    )
    assert bad_secret.status_code == 401
    assert bad_secret.json()["error"] == "invalid_client"


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_pkce_is_required_and_denial_is_simulated(sandbox: Sandbox, provider: str) -> None:
    no_pkce = redirect_query(await authorize(sandbox, provider, "", code_challenge_method="S256"))
    assert no_pkce["error"] == "invalid_request"
    assert no_pkce["state"] == "opaque-state-123"

    plain = redirect_query(
        await authorize(sandbox, provider, "x" * 43, code_challenge_method="plain")
    )
    assert plain["error"] == "invalid_request"

    denied = redirect_query(await authorize(sandbox, provider, pkce_pair()[1], sandbox_deny="1"))
    assert denied["error"] == "access_denied"
    assert denied["state"] == "opaque-state-123"
    assert "code" not in denied


@pytest.mark.asyncio
async def test_google_refresh_does_not_rotate(sandbox: Sandbox) -> None:
    tokens = await connect(sandbox, "gmail")
    first = await token_call(
        sandbox, "gmail", grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert first.status_code == 200
    body = first.json()
    assert "refresh_token" not in body
    assert body["access_token"] != tokens["access_token"]
    again = await token_call(
        sandbox, "gmail", grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert again.status_code == 200
    profile = await sandbox.client.get(f"{GMAIL_API}/profile", headers=bearer(body))
    assert profile.status_code == 200


@pytest.mark.asyncio
async def test_microsoft_refresh_rotates_and_old_tokens_keep_working(sandbox: Sandbox) -> None:
    tokens = await connect(sandbox, "outlook")
    rotated = (
        await token_call(
            sandbox, "outlook", grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
    ).json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert "SANDBOXTOKEN" in rotated["refresh_token"]
    old_again = await token_call(
        sandbox, "outlook", grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert old_again.status_code == 200

    sandbox.state.outlook_old_refresh_tokens_valid = False
    newest = old_again.json()["refresh_token"]
    assert (
        await token_call(sandbox, "outlook", grant_type="refresh_token", refresh_token=newest)
    ).status_code == 200
    refused = await token_call(sandbox, "outlook", grant_type="refresh_token", refresh_token=newest)
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [700082]
    assert body["error_description"].startswith("AADSTS700082:")


@pytest.mark.asyncio
async def test_microsoft_token_endpoint_requires_scope(sandbox: Sandbox) -> None:
    tokens = await connect(sandbox, "outlook")
    response = await token_call(
        sandbox,
        "outlook",
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
        scope="",
    )
    assert response.status_code == 400
    assert response.json()["error_codes"] == [900144]


@pytest.mark.asyncio
async def test_google_revoke_kills_the_grant(sandbox: Sandbox) -> None:
    tokens = await connect(sandbox, "gmail")
    revoke_url = sandbox.settings.gmail_revoke_url.replace("http://127.0.0.1:8000", "")
    response = await sandbox.client.post(
        revoke_url,
        params={"token": tokens["refresh_token"]},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    profile = await sandbox.client.get(f"{GMAIL_API}/profile", headers=bearer(tokens))
    assert profile.status_code == 401
    assert profile.json()["error"]["errors"][0]["reason"] == "authError"
    refresh = await token_call(
        sandbox, "gmail", grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refresh.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    unknown = await sandbox.client.post(revoke_url, data={"token": "nope"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_token"


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_access_tokens_expire_after_their_lifetime(sandbox: Sandbox, provider: str) -> None:
    tokens = await connect(sandbox, provider)
    url = f"{GMAIL_API}/profile" if provider == "gmail" else f"{GRAPH_API}/me"
    assert (await sandbox.client.get(url, headers=bearer(tokens))).status_code == 200
    sandbox.clock.advance(3600)
    expired = await sandbox.client.get(url, headers=bearer(tokens))
    assert expired.status_code == 401
    if provider == "outlook":
        assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert "request-id" in expired.json()["error"]["innerError"]


@pytest.mark.asyncio
async def test_one_sandbox_holds_many_mailboxes(sandbox: Sandbox) -> None:
    alice = await connect(sandbox, "gmail", "alice@example.com")
    bob = await connect(sandbox, "gmail", "bob@example.com")
    await sandbox.client.post(
        f"{SANDBOX}/gmail/mailboxes/alice@example.com/messages",
        content=b"Subject: hi\r\nTo: alice@example.com\r\n\r\nhello\r\n",
    )
    counts = {}
    for name, tokens in (("alice", alice), ("bob", bob)):
        profile = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=bearer(tokens))).json()
        counts[name] = profile["messagesTotal"]
    assert counts == {"alice": 1, "bob": 0}
    denied = await sandbox.client.get(
        f"{SANDBOX}/gmail/gmail/v1/users/bob@example.com/profile", headers=bearer(alice)
    )
    assert denied.status_code == 403
    assert GMAIL_USER not in counts
