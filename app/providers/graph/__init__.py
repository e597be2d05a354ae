"""Microsoft Graph (Outlook) driver."""

from app.providers.graph.driver import GraphProvider

__all__ = ["GraphProvider"]
