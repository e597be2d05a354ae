"""Where domain code gets a provider driver or an OAuth client by name."""

from __future__ import annotations

import httpx

from app.config import Settings
from app.providers.base import MailProvider, OAuthClient, PushFormat, TokenSource
from app.providers.gmail.driver import GmailProvider
from app.providers.gmail.push import GmailPushFormat
from app.providers.graph.driver import GraphProvider
from app.providers.graph.push import GraphPushFormat
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


def max_send_bytes(name: str) -> int:
    """The largest message `name`'s send API accepts (checked before a send is queued)."""
    driver = GmailProvider if _check(name) == "gmail" else GraphProvider
    return driver.max_send_bytes


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


def push_format(name: str) -> PushFormat:
    """How `name`'s push notifications read (the contract's provider value: gmail, outlook)."""
    if _check(name) == "gmail":
        return GmailPushFormat()
    return GraphPushFormat()
