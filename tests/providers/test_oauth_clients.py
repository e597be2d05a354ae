"""OAuth clients: consent URLs with PKCE, code exchange, refresh (Google keeps, Microsoft
rotates), invalid_grant, revocation, and the refreshing token source."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.providers.base import TokenSet
from app.providers.errors import AuthRevoked, ProviderRequestError
from app.providers.oauth import GoogleOAuthClient, MicrosoftOAuthClient, OAuthTokenSource
from app.providers.registry import get_oauth_client
from tests.fixtures.providers import json_response, mock_client

VERIFIER = "v" * 43 + "-._~abc"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_google_authorization_url(settings) -> None:
    client = get_oauth_client("gmail", settings)
    url = client.authorization_url("state-123", VERIFIER, login_hint="bob@example.com")
    assert url.startswith(settings.gmail_auth_url + "?")
    query = query_of(url)
    assert query["response_type"] == "code"
    assert query["client_id"] == settings.gmail_client_id
    assert query["redirect_uri"] == f"{settings.public_base_url}/v1/oauth/gmail/callback"
    assert query["scope"] == settings.gmail_scopes
    assert query["state"] == "state-123"
    assert query["access_type"] == "offline"
    assert query["prompt"] == "consent"
    assert query["include_granted_scopes"] == "true"
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == s256(VERIFIER)
    assert query["login_hint"] == "bob@example.com"
    assert VERIFIER not in url


def test_microsoft_authorization_url(settings) -> None:
    client = get_oauth_client(
        "outlook", settings.model_copy(update={"outlook_scopes": "Mail.Read"})
    )
    query = query_of(client.authorization_url("st", VERIFIER, None))
    assert query["scope"].split() == ["offline_access", "Mail.Read"]
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == s256(VERIFIER)
    assert query["redirect_uri"].endswith("/v1/oauth/outlook/callback")
    assert "login_hint" not in query
    assert "access_type" not in query


@pytest.mark.asyncio
async def test_google_exchange_and_refresh_keeps_refresh_token(settings, policy) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        if form["grant_type"] == "authorization_code":
            return json_response(
                200,
                {
                    "access_token": "SECRETTOKEN-a1",
                    "expires_in": 3599,
                    "refresh_token": "SECRETTOKEN-r1",
                    "scope": "https://www.googleapis.com/auth/gmail.modify",
                    "token_type": "Bearer",
                },
            )
        return json_response(200, {"access_token": "SECRETTOKEN-a2", "expires_in": 3600})

    http, recorder = mock_client(handler)
    client = GoogleOAuthClient(settings, http, policy)
    tokens = await client.exchange_code("code-1", VERIFIER)
    assert tokens.access_token == "SECRETTOKEN-a1"
    assert tokens.refresh_token == "SECRETTOKEN-r1"
    assert tokens.scope == "https://www.googleapis.com/auth/gmail.modify"
    assert (
        timedelta(seconds=3590) < tokens.expires_at - datetime.now(UTC) <= timedelta(seconds=3599)
    )
    assert "SECRETTOKEN" not in repr(tokens)
    assert "SECRETTOKEN" not in str(tokens)

    form = form_of(recorder.requests[0])
    assert str(recorder.requests[0].url) == settings.gmail_token_url
    assert form == {
        "grant_type": "authorization_code",
        "code": "code-1",
        "redirect_uri": f"{settings.public_base_url}/v1/oauth/gmail/callback",
        "client_id": settings.gmail_client_id,
        "client_secret": settings.gmail_client_secret.get_secret_value(),
        "code_verifier": VERIFIER,
    }

    refreshed = await client.refresh("SECRETTOKEN-r1")
    assert refreshed.access_token == "SECRETTOKEN-a2"
    assert refreshed.refresh_token == "SECRETTOKEN-r1"  # Google omits it: keep the old one
    assert form_of(recorder.requests[1])["grant_type"] == "refresh_token"
    assert "scope" not in form_of(recorder.requests[1])


@pytest.mark.asyncio
async def test_microsoft_refresh_rotates(settings, policy) -> None:
    http, recorder = mock_client(
        lambda r: json_response(
            200,
            {
                "access_token": "SECRETTOKEN-a2",
                "refresh_token": "SECRETTOKEN-r2",
                "expires_in": 3599,
                "scope": "Mail.Read",
            },
        )
    )
    client = MicrosoftOAuthClient(settings, http, policy)
    tokens = await client.refresh("SECRETTOKEN-r1")
    assert tokens.refresh_token == "SECRETTOKEN-r2"
    form = form_of(recorder.requests[0])
    assert form["refresh_token"] == "SECRETTOKEN-r1"
    assert "offline_access" in form["scope"].split()
    assert str(recorder.requests[0].url) == settings.outlook_token_url


GOOGLE_INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "Token has been expired or revoked.",
}
MS_INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "AADSTS700082: The refresh token has expired due to inactivity.",
    "error_codes": [700082],
}


@pytest.mark.parametrize(
    ("client_class", "body"),
    [(GoogleOAuthClient, GOOGLE_INVALID_GRANT), (MicrosoftOAuthClient, MS_INVALID_GRANT)],
)
@pytest.mark.asyncio
async def test_invalid_grant_on_refresh_is_auth_revoked(
    settings, policy, client_class, body
) -> None:
    http, recorder = mock_client(lambda r: json_response(400, body))
    client = client_class(settings, http, policy)
    with pytest.raises(AuthRevoked) as info:
        await client.refresh("SECRETTOKEN-r1")
    assert info.value.code == "invalid_grant"
    assert "SECRETTOKEN" not in str(info.value)
    assert "AADSTS" not in str(info.value)
    assert len(recorder.requests) == 1


@pytest.mark.asyncio
async def test_invalid_grant_on_exchange_is_a_request_error(settings, policy) -> None:
    http, _ = mock_client(lambda r: json_response(400, GOOGLE_INVALID_GRANT))
    client = GoogleOAuthClient(settings, http, policy)
    with pytest.raises(ProviderRequestError) as info:
        await client.exchange_code("used-code", VERIFIER)
    assert info.value.code == "invalid_grant"
    assert "used-code" not in str(info.value)


@pytest.mark.asyncio
async def test_token_endpoint_5xx_is_retried(settings, policy, sleep) -> None:
    answers = [json_response(503, {}), json_response(200, {"access_token": "SECRETTOKEN-a"})]
    http, recorder = mock_client(lambda r: answers.pop(0))
    client = MicrosoftOAuthClient(settings, http, policy)
    tokens = await client.refresh("SECRETTOKEN-r")
    assert tokens.access_token == "SECRETTOKEN-a"
    assert tokens.refresh_token == "SECRETTOKEN-r"
    assert len(recorder.requests) == 2
    assert len(sleep.calls) == 1


@pytest.mark.asyncio
async def test_google_revoke_tolerates_already_revoked(settings, policy) -> None:
    http, recorder = mock_client(lambda r: json_response(400, {"error": "invalid_token"}))
    client = GoogleOAuthClient(settings, http, policy)
    await client.revoke("SECRETTOKEN-r")
    assert str(recorder.requests[0].url) == settings.gmail_revoke_url
    assert form_of(recorder.requests[0]) == {"token": "SECRETTOKEN-r"}


@pytest.mark.asyncio
async def test_token_source_refreshes_near_expiry_and_coalesces(settings, policy) -> None:
    counter = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal counter
        counter += 1
        await asyncio.sleep(0.01)
        return json_response(
            200,
            {
                "access_token": f"SECRETTOKEN-a{counter + 1}",
                "refresh_token": f"SECRETTOKEN-r{counter + 1}",
                "expires_in": 3600,
            },
        )

    http, recorder = mock_client(handler)
    client = MicrosoftOAuthClient(settings, http, policy)
    persisted: list[TokenSet] = []

    async def persist(tokens: TokenSet) -> None:
        persisted.append(tokens)

    source = OAuthTokenSource(
        client,
        TokenSet(
            "SECRETTOKEN-a1", "SECRETTOKEN-r1", datetime.now(UTC) + timedelta(seconds=60), None
        ),
        on_refresh=persist,
        margin_seconds=300,
    )
    # Expiring within the margin: the first access refreshes, concurrent callers share it.
    results = await asyncio.gather(*(source.access_token() for _ in range(5)))
    assert results == ["SECRETTOKEN-a2"] * 5
    assert len(recorder.requests) == 1
    assert [t.refresh_token for t in persisted] == ["SECRETTOKEN-r2"]

    # Several requests seeing the same 401 refresh once.
    results = await asyncio.gather(*(source.refresh() for _ in range(3)))
    assert results == ["SECRETTOKEN-a3"] * 3
    assert len(recorder.requests) == 2
    assert form_of(recorder.requests[1])["refresh_token"] == "SECRETTOKEN-r2"
    assert "SECRETTOKEN" not in repr(source)


@pytest.mark.asyncio
async def test_microsoft_exchange_sends_scope_and_verifier(settings, policy) -> None:
    http, recorder = mock_client(
        lambda r: json_response(
            200,
            {"access_token": "SECRETTOKEN-a", "refresh_token": "SECRETTOKEN-r", "expires_in": 60},
        )
    )
    client = MicrosoftOAuthClient(settings, http, policy)
    tokens = await client.exchange_code("0.Acode", VERIFIER)
    assert tokens.refresh_token == "SECRETTOKEN-r"
    form = form_of(recorder.requests[0])
    assert form["grant_type"] == "authorization_code"
    assert form["code_verifier"] == VERIFIER
    assert form["redirect_uri"].endswith("/v1/oauth/outlook/callback")
    assert "offline_access" in form["scope"].split()
    assert form["client_secret"] == settings.outlook_client_secret.get_secret_value()
