"""Provider sandbox: fake Google OAuth + Gmail and Microsoft identity + Graph mail, in memory,
speaking the real wire formats at the paths of SANDBOX.md (a product feature)."""

from sandbox.app import create_sandbox_app, create_standalone_app
from sandbox.state import SandboxState

__all__ = ["SandboxState", "create_sandbox_app", "create_standalone_app"]
