"""Provider clients: one MailProvider protocol, a Gmail and a Graph driver, OAuth clients.

Domain code imports from here (or `app.providers.base` / `.errors`) and never sees a wire
format.
"""

from app.providers.base import (
    ChangePage,
    Folder,
    MailboxProfile,
    MailProvider,
    MessageRef,
    OAuthClient,
    OutgoingMessage,
    ProviderName,
    PushChannel,
    RemoteMessage,
    SentMessage,
    TokenSet,
    TokenSource,
)
from app.providers.errors import (
    AuthRevoked,
    CursorExpired,
    MessageTooLarge,
    NotFound,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailable,
    RateLimited,
)
from app.providers.http import RetryPolicy, calls_by, message_fetches, reset_call_counts
from app.providers.oauth import OAuthTokenSource, StaticTokenSource
from app.providers.registry import get_oauth_client, get_provider

__all__ = [
    "AuthRevoked",
    "ChangePage",
    "CursorExpired",
    "Folder",
    "MailProvider",
    "MailboxProfile",
    "MessageRef",
    "MessageTooLarge",
    "NotFound",
    "OAuthClient",
    "OAuthTokenSource",
    "OutgoingMessage",
    "ProviderError",
    "ProviderName",
    "ProviderRequestError",
    "ProviderUnavailable",
    "PushChannel",
    "RateLimited",
    "RemoteMessage",
    "RetryPolicy",
    "SentMessage",
    "StaticTokenSource",
    "TokenSet",
    "TokenSource",
    "calls_by",
    "get_oauth_client",
    "get_provider",
    "message_fetches",
    "reset_call_counts",
]
