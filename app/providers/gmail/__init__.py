"""Gmail API driver."""

from app.providers.gmail.driver import GmailProvider

__all__ = ["GmailProvider"]
