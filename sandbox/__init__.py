"""Provider sandbox: fake Google OAuth + Gmail and Microsoft identity + Graph mail, in memory,
speaking the real wire formats at the paths of SANDBOX.md (a product feature).

Self-contained: it imports nothing from the service. Its host gives it a `SandboxConfig`
and mounts `create_sandbox_app(...)` at `SANDBOX_PREFIX`, or serves `create_standalone_app`.
"""

from sandbox.app import create_sandbox_app, create_standalone_app
from sandbox.config import SANDBOX_PREFIX, OAuthClient, SandboxConfig
from sandbox.state import SandboxState

__all__ = [
    "SANDBOX_PREFIX",
    "OAuthClient",
    "SandboxConfig",
    "SandboxState",
    "create_sandbox_app",
    "create_standalone_app",
]
