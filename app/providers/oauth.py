"""OAuth 2.0 authorization code + PKCE (S256) clients for Google and Microsoft.

authlib builds the consent URL and the S256 challenge; the token calls are plain httpx
through `ProviderHttp`, so they share the retry policy, the call counter, the injectable
client (the sandbox in tests) and the no-secrets-in-errors rule. authlib's
AsyncOAuth2Client would own its own httpx client and raise its own error types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from app.config import Settings
from app.providers.base import OAuthClient, ProviderName, TokenSet
from app.providers.errors import AuthRevoked, ProviderRequestError
from app.providers.http import ProviderHttp, RetryPolicy, error_info_from_json

DEFAULT_EXPIRES_IN = 3600


def redirect_uri_for(settings: Settings, provider: ProviderName) -> str:
    return f"{settings.public_base_url}/v1/oauth/{provider}/callback"


class _OAuthClientBase:
    name: ClassVar[ProviderName]
    rotates_refresh_tokens: ClassVar[bool]

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str,
        client_secret: str,
        auth_url: str,
        token_url: str,
        scopes: str,
        http_client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self._client_secret = client_secret
        self.auth_url = auth_url
        self.token_url = token_url
        self.scopes = scopes
        self.redirect_uri = redirect_uri_for(settings, self.name)
        self.http = ProviderHttp.create(self.name, settings, None, http_client, policy)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r})"

    async def aclose(self) -> None:
        await self.http.aclose()

    def _extra_authorize_params(self) -> dict[str, str]:
        return {}

    def authorization_url(
        self, state: str, code_verifier: str, login_hint: str | None = None
    ) -> str:
        params = {
            "code_challenge": create_s256_code_challenge(code_verifier),
            "code_challenge_method": "S256",
            **self._extra_authorize_params(),
        }
        if login_hint:
            params["login_hint"] = login_hint
        return str(
            prepare_grant_uri(
                self.auth_url,
                self.client_id,
                "code",
                redirect_uri=self.redirect_uri,
                scope=self.scopes,
                state=state,
                **params,
            )
        )

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "code_verifier": code_verifier,
            **self._extra_token_params(),
        }
        # An authorization code is single-use: invalid_grant here is a bad or used code,
        # not a revoked grant, so it stays a ProviderRequestError.
        data = await self._token_call(form, template="POST token (authorization_code)")
        return self._token_set(data, previous_refresh_token=None)

    async def refresh(self, refresh_token: str) -> TokenSet:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            **self._extra_token_params(),
        }
        try:
            data = await self._token_call(
                form, template="POST token (refresh_token)", idempotent=True
            )
        except ProviderRequestError as exc:
            if exc.code == "invalid_grant":
                raise AuthRevoked(
                    "refresh token rejected (invalid_grant)",
                    provider=self.name,
                    status=exc.status,
                    code="invalid_grant",
                ) from None
            raise
        return self._token_set(data, previous_refresh_token=refresh_token)

    def _extra_token_params(self) -> dict[str, str]:
        return {}

    async def _token_call(
        self, form: dict[str, str], *, template: str, idempotent: bool = False
    ) -> dict[str, Any]:
        # Token endpoints answer errors as 400/401 {"error": ...}; ProviderHttp maps them to
        # ProviderRequestError with the OAuth error code (never the description, which can
        # echo request data).
        response = await self.http.request(
            "POST",
            self.token_url,
            template=template,
            data=form,
            headers={"Accept": "application/json"},
            authenticated=False,
            idempotent=idempotent,
        )
        try:
            data = response.json()
        except ValueError:
            raise ProviderRequestError(
                "unreadable token response", provider=self.name, status=response.status_code
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            info = error_info_from_json(data)
            raise ProviderRequestError(
                "token response without access_token",
                provider=self.name,
                status=response.status_code,
                code=info.code,
            )
        return data

    def _token_set(self, data: dict[str, Any], *, previous_refresh_token: str | None) -> TokenSet:
        try:
            expires_in = int(data.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        new_refresh = data.get("refresh_token")
        refresh_token = new_refresh if isinstance(new_refresh, str) and new_refresh else None
        if refresh_token is None:
            refresh_token = previous_refresh_token
        scope = data.get("scope")
        return TokenSet(
            access_token=data["access_token"],
            refresh_token=refresh_token,
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
            scope=scope if isinstance(scope, str) else None,
        )

    async def revoke(self, token: str) -> None:
        return None


class GoogleOAuthClient(_OAuthClientBase):
    name: ClassVar[ProviderName] = "gmail"
    rotates_refresh_tokens: ClassVar[bool] = False

    def __init__(
        self,
        settings: Settings,
        http_client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            settings,
            client_id=settings.gmail_client_id,
            client_secret=settings.gmail_client_secret.get_secret_value(),
            auth_url=settings.gmail_auth_url,
            token_url=settings.gmail_token_url,
            scopes=settings.gmail_scopes,
            http_client=http_client,
            policy=policy,
        )
        self.revoke_url = settings.gmail_revoke_url

    def _extra_authorize_params(self) -> dict[str, str]:
        return {"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"}

    async def revoke(self, token: str) -> None:
        """Revoke at Google (revoking either token revokes the grant). The token goes in the
        form body, not the query string, so no access log sees it. Already invalid: done."""
        try:
            await self.http.request(
                "POST",
                self.revoke_url,
                template="POST revoke",
                data={"token": token},
                authenticated=False,
                idempotent=True,
            )
        except ProviderRequestError as exc:
            if exc.status == 400:  # invalid_token: already revoked or expired
                return
            raise


class MicrosoftOAuthClient(_OAuthClientBase):
    name: ClassVar[ProviderName] = "outlook"
    rotates_refresh_tokens: ClassVar[bool] = True

    def __init__(
        self,
        settings: Settings,
        http_client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        scopes = settings.outlook_scopes
        if "offline_access" not in scopes.split():
            scopes = f"offline_access {scopes}"
        super().__init__(
            settings,
            client_id=settings.outlook_client_id,
            client_secret=settings.outlook_client_secret.get_secret_value(),
            auth_url=settings.outlook_auth_url,
            token_url=settings.outlook_token_url,
            scopes=scopes,
            http_client=http_client,
            policy=policy,
        )

    def _extra_authorize_params(self) -> dict[str, str]:
        return {"response_mode": "query"}

    def _extra_token_params(self) -> dict[str, str]:
        # Microsoft v2 wants the scopes again on the token calls (refresh: at most those
        # consented).
        return {"scope": self.scopes}

    async def revoke(self, token: str) -> None:
        """Microsoft has no per-grant revocation endpoint; `revokeSignInSessions` would sign
        the user out of every app. Deleting our copy of the tokens is the disconnect."""
        return None


class OAuthTokenSource:
    """An in-memory TokenSource over an OAuthClient: refreshes ahead of expiry and on demand,
    one refresh at a time, and hands every new TokenSet to `on_refresh` (to persist it,
    atomically for Microsoft's rotated refresh tokens)."""

    def __init__(
        self,
        client: OAuthClient,
        tokens: TokenSet,
        *,
        on_refresh: Callable[[TokenSet], Awaitable[None]] | None = None,
        margin_seconds: float = 300,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._on_refresh = on_refresh
        self._margin = margin_seconds
        self._lock = asyncio.Lock()
        self.refresh_count = 0

    def __repr__(self) -> str:
        return f"OAuthTokenSource({self._tokens!r})"

    @property
    def tokens(self) -> TokenSet:
        return self._tokens

    async def access_token(self) -> str:
        if self._tokens.expires_within(self._margin) and self._tokens.refresh_token:
            return await self._refresh(stale=self._tokens.access_token)
        return self._tokens.access_token

    async def refresh(self) -> str:
        return await self._refresh(stale=self._tokens.access_token)

    async def _refresh(self, *, stale: str) -> str:
        async with self._lock:
            if self._tokens.access_token != stale:
                return self._tokens.access_token  # another caller refreshed meanwhile
            if not self._tokens.refresh_token:
                raise AuthRevoked("no refresh token", provider=self._client.name)
            tokens = await self._client.refresh(self._tokens.refresh_token)
            self._tokens = tokens
            self.refresh_count += 1
            if self._on_refresh is not None:
                await self._on_refresh(tokens)
            return tokens.access_token


class StaticTokenSource:
    """A fixed access token; refresh() fails with AuthRevoked (for scripts and tests)."""

    def __init__(self, access_token: str) -> None:
        self._token = access_token

    def __repr__(self) -> str:
        return "StaticTokenSource(<token>)"

    async def access_token(self) -> str:
        return self._token

    async def refresh(self) -> str:
        raise AuthRevoked("static token cannot be refreshed")
