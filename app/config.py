"""One typed Settings object, read from the environment (names are part of the contract)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A fixed development key ring: 32 zero-free bytes, base64. Production must set VAULT_KEYS.
_DEV_VAULT_KEY = "dev1:ZGV2LW9ubHktdmF1bHQta2V5LTMyLWJ5dGVzLTAwMDA="
_DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
_DEV_STATE_SECRET = "dev-only-oauth-state-secret-0123456789abcdef"
_DEV_TRACKING_SECRET = "dev-only-tracking-token-secret-0123456789abcdef"
_DEV_GMAIL_PUSH_SECRET = "dev-gmail-push-secret"
_DEV_OUTLOOK_CLIENT_STATE_SECRET = "dev-outlook-client-state-secret"
_DEV_GMAIL_CLIENT_SECRET = "ce-email-dev-gmail-secret"
_DEV_OUTLOOK_CLIENT_SECRET = "ce-email-dev-outlook-secret"
_DEV_APP_DB_PASSWORD = "ce_app"
MIN_SECRET_BYTES = 32
"""The least a secret of ours may hold in production (HMAC keys want their hash's size)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # Environment and database
    ce_env: Literal["development", "test", "production"] = "development"
    ce_sandbox: bool = False
    database_url: str | None = None
    """Owner connection (migrations, fixtures). Unset: an embedded PostgreSQL under .data/."""
    app_database_url: str | None = None
    """The ce_app connection. Unset: DATABASE_URL with the user replaced by ce_app."""
    ce_app_db_password: SecretStr = SecretStr(_DEV_APP_DB_PASSWORD)
    data_dir: str = ".data"
    db_pool_size: int = 10

    # HTTP surface
    public_base_url: str = "http://127.0.0.1:8000"
    frontend_origins: str = "http://localhost:3000"
    log_level: str = "INFO"
    metrics_token: SecretStr | None = None
    """When set, GET /metrics requires `Authorization: Bearer <token>`."""

    # Auth of CRM users
    jwt_secret: SecretStr = SecretStr(_DEV_JWT_SECRET)
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = 30

    # OAuth state signing and the token vault
    oauth_state_secret: SecretStr = SecretStr(_DEV_STATE_SECRET)
    oauth_state_ttl_seconds: int = 600
    vault_keys: SecretStr = SecretStr(_DEV_VAULT_KEY)
    """Key ring `id:base64key[,id:base64key...]`; the first encrypts, all decrypt."""

    # Providers: every URL is a setting so the sandbox or the real services are configuration.
    gmail_client_id: str = "ce-email-dev-gmail-client"
    gmail_client_secret: SecretStr = SecretStr(_DEV_GMAIL_CLIENT_SECRET)
    gmail_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    gmail_token_url: str = "https://oauth2.googleapis.com/token"
    gmail_revoke_url: str = "https://oauth2.googleapis.com/revoke"
    gmail_api_base: str = "https://gmail.googleapis.com/gmail/v1"
    gmail_batch_url: str = "https://gmail.googleapis.com/batch/gmail/v1"
    gmail_upload_base: str = "https://gmail.googleapis.com/upload/gmail/v1"
    gmail_scopes: str = "https://www.googleapis.com/auth/gmail.modify openid email"
    gmail_pubsub_topic: str = "projects/ce-email-dev/topics/gmail-push"
    gmail_push_secret: SecretStr = SecretStr(_DEV_GMAIL_PUSH_SECRET)

    outlook_client_id: str = "ce-email-dev-outlook-client"
    outlook_client_secret: SecretStr = SecretStr(_DEV_OUTLOOK_CLIENT_SECRET)
    outlook_auth_url: str = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    outlook_token_url: str = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    graph_api_base: str = "https://graph.microsoft.com/v1.0"
    outlook_scopes: str = "offline_access openid profile User.Read Mail.ReadWrite Mail.Send"
    outlook_client_state_secret: SecretStr = SecretStr(_DEV_OUTLOOK_CLIENT_STATE_SECRET)

    # Provider client policy
    provider_timeout_seconds: float = 30.0
    provider_max_attempts: int = 5
    provider_max_backoff_seconds: float = 30.0
    token_refresh_margin_seconds: int = 300
    provider_base_backoff_seconds: float = 0.5
    """First backoff ceiling (doubles per attempt, full jitter, capped by the max above)."""
    gmail_batch_size: int = 50
    """Parts per Gmail batch request (Google: at most 100, more than 50 not recommended)."""
    gmail_user_units_per_minute: int = 6000
    """Gmail's per-user quota (units a minute) the driver paces itself to: 6,000 for Google
    Cloud projects created since May 2026, 15,000 for older ones."""
    graph_fetch_concurrency: int = 4
    """Concurrent Graph requests per mailbox when fetching messages (Outlook allows 4)."""
    sync_fetch_pipeline_depth: int = 2
    """Pages of message fetches (each one Gmail batch request) a sync keeps in flight
    while it parses and stores earlier ones; 1 fetches only once the previous page is
    stored. Keep it small: Gmail limits concurrent requests per user (Graph's own cap,
    `graph_fetch_concurrency`, applies across pages)."""
    sync_concurrent_writes: int = 2
    """Pages of a sync written at the same time, each in its own transaction (1: one after
    the other). The cursor is saved only once all of them are stored."""
    sync_parse_processes: int = 0
    """Processes that parse synced mail beside the event loop (0: parse in it, yielding
    between messages). Worth it when a core is otherwise idle during a sync."""

    # Push supervision and polling (issue 12)
    push_grace_seconds: int = 300
    """How long a notification may take to arrive (Graph: at most about 3 minutes): mail
    that arrived longer ago than this, after the last notification, was never announced."""
    push_quiet_period_seconds: int = 6 * 3600
    """With no notification for this long while mail keeps being stored, push is silent."""
    poll_min_interval_seconds: int = 300
    """The shortest polling interval: mailboxes without healthy push are polled this often
    (idle ones back off to the org's `email_sync_interval_minutes`, never beyond)."""
    poll_tick_seconds: int = 60
    """How often the poller looks for due mailboxes (the periodic job runs each minute and,
    below 60, looks again every this many seconds within it)."""

    # Sandbox knobs (only read when CE_SANDBOX=1 or `ce-email sandbox`; app/sandbox_mount.py
    # hands them to the sandbox in its SandboxConfig)
    sandbox_subscription_max_minutes: int = 10080
    sandbox_gmail_units_per_minute: int = 15000
    sandbox_graph_max_concurrency: int = 4

    # Jobs and tracking
    worker_concurrency: int = 4
    run_worker_in_process: bool = False
    """Run the job worker inside the API process (`ce-email serve --with-worker`)."""
    redis_url: str | None = None
    public_rate_limit: str = "1200/minute"
    """Per client address, for the OAuth callback and the webhooks."""
    tracking_rate_limit: str = "60/minute"
    """Per client address, for /t/o and /t/c (the `limits` notation)."""
    tracking_token_rate_limit: str = "30/minute"
    """Per tracking token."""
    tracking_token_secret: SecretStr = SecretStr(_DEV_TRACKING_SECRET)
    tracking_flush_ms: int = 50
    """Opens are written in batches this often; 0 writes each open before the pixel."""
    trusted_proxies: str = ""
    """Comma-separated peer addresses whose X-Forwarded-For is believed (all rate limits)."""
    document_storage_dir: str | None = None
    attachment_max_bytes: int = 25 * 1024 * 1024

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def allowed_frontend_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.frontend_origins.split(",") if o.strip()]

    @property
    def is_production(self) -> bool:
        return self.ce_env == "production"

    def sandbox_base(self) -> str:
        return f"{self.public_base_url}/_sandbox"

    def with_sandbox_urls(self, base: str | None = None) -> Settings:
        """Point every provider URL at the sandbox: in-process (CE_SANDBOX=1) by default,
        or at `base` (e.g. a standalone `ce-email sandbox` at http://127.0.0.1:8025/_sandbox)."""
        base = (base or self.sandbox_base()).rstrip("/")
        return self.model_copy(
            update={
                "gmail_auth_url": f"{base}/gmail/oauth/authorize",
                "gmail_token_url": f"{base}/gmail/oauth/token",
                "gmail_revoke_url": f"{base}/gmail/oauth/revoke",
                "gmail_api_base": f"{base}/gmail/gmail/v1",
                "gmail_batch_url": f"{base}/gmail/batch/gmail/v1",
                "gmail_upload_base": f"{base}/gmail/upload/gmail/v1",
                "outlook_auth_url": f"{base}/outlook/oauth/authorize",
                "outlook_token_url": f"{base}/outlook/oauth/token",
                "graph_api_base": f"{base}/outlook/v1.0",
            }
        )


class ProductionSafetyError(RuntimeError):
    pass


def check_production_safety(settings: Settings) -> None:
    """Refuse configurations that are only for development when CE_ENV=production.

    Every secret whose development value is written in this file is refused (anyone can
    read it: forged tokens, pushes, webhooks), and every secret we choose ourselves must
    hold at least MIN_SECRET_BYTES. The OAuth client secrets are issued by Google and
    Microsoft: they only have to differ from the development ones (there is no sandbox in
    production to accept those). One error names every offending variable."""
    if not settings.is_production:
        return
    problems: list[str] = []
    if settings.ce_sandbox:
        problems.append("CE_SANDBOX=1 (the provider sandbox)")

    ours: dict[str, tuple[SecretStr | None, str | None]] = {
        "OAUTH_STATE_SECRET": (settings.oauth_state_secret, _DEV_STATE_SECRET),
        "TRACKING_TOKEN_SECRET": (settings.tracking_token_secret, _DEV_TRACKING_SECRET),
        "GMAIL_PUSH_SECRET": (settings.gmail_push_secret, _DEV_GMAIL_PUSH_SECRET),
        "OUTLOOK_CLIENT_STATE_SECRET": (
            settings.outlook_client_state_secret,
            _DEV_OUTLOOK_CLIENT_STATE_SECRET,
        ),
        "METRICS_TOKEN": (settings.metrics_token, None),
    }
    if not settings.jwt_jwks_url:  # with a JWKS the shared secret is not used
        ours["JWT_SECRET"] = (settings.jwt_secret, _DEV_JWT_SECRET)
    if not settings.app_database_url:  # otherwise that URL carries ce_app's password
        ours["CE_APP_DB_PASSWORD"] = (settings.ce_app_db_password, _DEV_APP_DB_PASSWORD)
    for name, (secret, development) in ours.items():
        if secret is None:
            continue
        value = secret.get_secret_value()
        if value == development:
            problems.append(f"{name} (the development default)")
        elif len(value.encode()) < MIN_SECRET_BYTES:
            problems.append(f"{name} (shorter than {MIN_SECRET_BYTES} bytes)")

    vault_entries = {e.strip() for e in settings.vault_keys.get_secret_value().split(",")}
    if _DEV_VAULT_KEY in vault_entries:
        problems.append("VAULT_KEYS (holds the development key)")
    provider_issued = {
        "GMAIL_CLIENT_SECRET": (settings.gmail_client_secret, _DEV_GMAIL_CLIENT_SECRET),
        "OUTLOOK_CLIENT_SECRET": (settings.outlook_client_secret, _DEV_OUTLOOK_CLIENT_SECRET),
    }
    for name, (secret, development) in provider_issued.items():
        if secret.get_secret_value() == development:
            problems.append(f"{name} (the development default)")

    if problems:
        raise ProductionSafetyError(
            "refused when CE_ENV=production: " + "; ".join(sorted(problems))
        )


@lru_cache
def get_settings() -> Settings:
    settings = Settings()
    if settings.ce_sandbox:
        settings = settings.with_sandbox_urls()
    return settings
