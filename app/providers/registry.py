"""Where domain code gets a provider driver or an OAuth client by name."""

from __future__ import annotations

import httpx

from app.config import Settings
from app.providers.base import MailProvider, OAuthClient, TokenSource
from app.providers.gmail import GmailProvider
from app.providers.graph import GraphProvider
from app.providers.http import RetryPolicy
from app.providers.oauth import GoogleOAuthClient, MicrosoftOAuthClient

PROVIDER_NAMES = ("gmail", "outlook")


def _check(name: str) -> str:
    if name not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {name!r}")
    return name


def get_provider(
    name: str,
    settings: Settings,
    token_source: TokenSource,
    http_client: httpx.AsyncClient | None = None,
    *,
    policy: RetryPolicy | None = None,
) -> MailProvider:
    """A driver for one mailbox. Without `http_client` it creates one and closes it in
    `aclose()`; an injected client is shared and left open. `policy` overrides the retry
    policy from settings (tests inject a sleep that does not sleep)."""
    if _check(name) == "gmail":
        return GmailProvider(settings, token_source, http_client, policy)
    return GraphProvider(settings, token_source, http_client, policy)


def get_oauth_client(
    name: str,
    settings: Settings,
    http_client: httpx.AsyncClient | None = None,
    *,
    policy: RetryPolicy | None = None,
) -> OAuthClient:
    if _check(name) == "gmail":
        return GoogleOAuthClient(settings, http_client, policy)
    return MicrosoftOAuthClient(settings, http_client, policy)
