"""What the sandbox needs to know about the world: the one registered app it accepts, where
it sends users and pushes back to, and its limits. The host builds it (the service from its
settings, so the environment variable names stay those of SANDBOX.md); the sandbox never
reads the environment itself."""

from __future__ import annotations

from dataclasses import dataclass, field

SANDBOX_PREFIX = "/_sandbox"
"""Where the sandbox lives in the service and in `ce-email sandbox` (the paths of SANDBOX.md)."""


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """The one OAuth client a fake provider accepts (GMAIL_CLIENT_ID / _SECRET, OUTLOOK_...)."""

    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    public_base_url: str
    """The service's PUBLIC_BASE_URL, without a trailing slash: the registered redirect URI is
    `{public_base_url}/v1/oauth/{p}/callback`; Gmail pushes go to `/v1/webhooks/gmail`."""
    gmail_client: OAuthClient
    outlook_client: OAuthClient
    gmail_push_secret: str = field(repr=False)
    """GMAIL_PUSH_SECRET: the `token` query parameter of the simulated Pub/Sub push URL."""
    subscription_max_minutes: int = 10080
    """SANDBOX_SUBSCRIPTION_MAX_MINUTES: the longest Graph subscription lifetime."""
    gmail_units_per_minute: int = 15000
    """SANDBOX_GMAIL_UNITS_PER_MINUTE: Gmail's per-user quota over a sliding minute."""
    graph_max_concurrency: int = 4
    """SANDBOX_GRAPH_MAX_CONCURRENCY: concurrent Graph requests per mailbox (429 beyond)."""

    def redirect_uri(self, provider: str) -> str:
        return f"{self.public_base_url}/v1/oauth/{provider}/callback"
