"""Where the service meets the provider sandbox: the only module of `app` that imports it.

The sandbox is a package of its own that knows nothing of the service; this module turns
the service's settings (whose environment variable names SANDBOX.md fixes) into its
`SandboxConfig`, mounts it in the service when CE_SANDBOX=1 and builds the standalone app
of `ce-email sandbox`. The sandbox is imported only then: a production process (where it
is refused) never loads its code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI

from app.config import Settings

if TYPE_CHECKING:
    from sandbox import SandboxConfig, SandboxState


def sandbox_config(settings: Settings) -> SandboxConfig:
    """The sandbox's view of the settings: the registered OAuth clients, where it sends
    users back and pushes to, and the SANDBOX_* knobs."""
    from sandbox import OAuthClient, SandboxConfig

    return SandboxConfig(
        public_base_url=settings.public_base_url,
        gmail_client=OAuthClient(
            settings.gmail_client_id, settings.gmail_client_secret.get_secret_value()
        ),
        outlook_client=OAuthClient(
            settings.outlook_client_id, settings.outlook_client_secret.get_secret_value()
        ),
        gmail_push_secret=settings.gmail_push_secret.get_secret_value(),
        subscription_max_minutes=settings.sandbox_subscription_max_minutes,
        gmail_units_per_minute=settings.sandbox_gmail_units_per_minute,
        graph_max_concurrency=settings.sandbox_graph_max_concurrency,
    )


def mount_sandbox(
    app: FastAPI,
    settings: Settings,
    *,
    push_client_factory: Callable[[], httpx.AsyncClient],
) -> None:
    """When CE_SANDBOX=1, mount the sandbox at `/_sandbox` (its pushes leave through
    clients from `push_client_factory`); otherwise do nothing."""
    if not settings.ce_sandbox:
        return
    from sandbox import SANDBOX_PREFIX, SandboxState, create_sandbox_app

    state = SandboxState(push_client_factory=push_client_factory)
    app.mount(SANDBOX_PREFIX, create_sandbox_app(sandbox_config(settings), state))


def standalone_sandbox_app(settings: Settings, state: SandboxState | None = None) -> FastAPI:
    """`ce-email sandbox`: the sandbox alone, under the same `/_sandbox` paths."""
    from sandbox import create_standalone_app

    return create_standalone_app(sandbox_config(settings), state)
