"""What requests and jobs share: settings, the database, the vault, the provider HTTP client.

Built once per process (the API's lifespan, the worker's start) and handed to services, so
a job and a request reach providers and the vault the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.accounts.tokens import AccountTokenSource
from app.accounts.vault import KeyRing, Vault
from app.config import Settings
from app.providers.base import MailProvider, OAuthClient, TokenSource
from app.providers.registry import get_oauth_client, get_provider


@dataclass
class ServiceContext:
    settings: Settings
    engine: AsyncEngine
    vault: Vault
    http: httpx.AsyncClient
    connect_hooks: list[Callable[[AsyncSession, UUID, UUID], Awaitable[None]]] = field(
        default_factory=list
    )
    """Run in the connect transaction after an account is stored (session, org, account)."""

    @classmethod
    def build(
        cls,
        settings: Settings,
        engine: AsyncEngine,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ServiceContext:
        http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.provider_timeout_seconds),
            follow_redirects=False,
        )
        return cls(settings, engine, Vault(KeyRing(settings.vault_keys.get_secret_value())), http)

    async def aclose(self) -> None:
        await self.http.aclose()

    def oauth_client(self, provider: str) -> OAuthClient:
        return get_oauth_client(provider, self.settings, self.http)

    def token_source(self, provider: str, org_id: UUID, account_id: UUID) -> AccountTokenSource:
        return AccountTokenSource(
            self.engine,
            self.vault,
            self.oauth_client(provider),
            org_id=org_id,
            account_id=account_id,
            margin_seconds=self.settings.token_refresh_margin_seconds,
        )

    def provider(self, provider: str, token_source: TokenSource) -> MailProvider:
        return get_provider(provider, self.settings, token_source, self.http)

    def account_provider(self, provider: str, org_id: UUID, account_id: UUID) -> MailProvider:
        return self.provider(provider, self.token_source(provider, org_id, account_id))
