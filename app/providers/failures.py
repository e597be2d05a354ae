"""What a provider failure means for a mailbox: the one decision sync, send and token
refresh share.

Drivers turn every failure into a typed error (`errors.py`); this module says what each
means for the mailbox it happened on. The callers then act on it their own way (a sync
requeues itself, a send job retries with its backoff, a token refresh marks the account).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.providers.errors import (
    AuthRevoked,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from app.providers.http import NOT_PROCESSED_STATUSES

RATE_LIMITED_DELAY = 30.0
UNAVAILABLE_DELAY = 60.0
REFUSED_TOKEN_DELAY = 30.0


class Outcome(StrEnum):
    RETRY = "retry"
    """Transient: the same request may succeed later (throttled, provider down, a fresh
    token refused while the grant still refreshes)."""
    REAUTH = "reauth_required"
    """The grant is gone: the account needs re-consent; nothing retries it."""
    GIVE_UP = "give_up"
    """Repeating this request will not help (rejected, not found, too large)."""


@dataclass(frozen=True)
class MailboxAction:
    outcome: Outcome
    delay: float | None = None
    """RETRY: seconds to wait before the mailbox's next attempt (the provider's
    Retry-After when it gave one and it is longer)."""
    retry_after: float | None = None
    """The provider's own Retry-After, as it said it (None when it did not)."""
    provider_unavailable: bool = False
    """RETRY because the provider is down (not throttled): the mailbox shows an error
    until the retry succeeds."""
    reason: str = ""
    """For the mailbox's `last_error`: what happened, without provider detail."""


def mailbox_action(error: ProviderError, *, grant_refused: bool = False) -> MailboxAction:
    """What `error` means for the mailbox it happened on.

    `grant_refused`: the grant itself is known to be gone: the account is already marked
    `reauth_required`/`disconnected`, or the error came from the token endpoint (where
    AuthRevoked is `invalid_grant`). Without it, an AuthRevoked is a 401 that outlived one
    refresh while the grant still refreshes: transient.
    """
    if isinstance(error, AuthRevoked):
        if grant_refused:
            return MailboxAction(Outcome.REAUTH, reason="authorisation revoked")
        return MailboxAction(
            Outcome.RETRY,
            delay=REFUSED_TOKEN_DELAY,
            reason="The provider refused a fresh access token; retrying shortly.",
        )
    if isinstance(error, RateLimited):
        return MailboxAction(
            Outcome.RETRY,
            delay=max(error.retry_after or RATE_LIMITED_DELAY, 1.0),
            retry_after=error.retry_after,
            reason="Throttled by the provider; continuing shortly.",
        )
    if isinstance(error, ProviderUnavailable):
        return MailboxAction(
            Outcome.RETRY,
            delay=max(error.retry_after or 0.0, UNAVAILABLE_DELAY),
            retry_after=error.retry_after,
            provider_unavailable=True,
            reason="The provider is unavailable; retrying later.",
        )
    return MailboxAction(Outcome.GIVE_UP, reason=f"Provider error ({type(error).__name__})")


def may_have_been_processed(error: ProviderError) -> bool:
    """Whether a failed write (a send) may have taken effect at the provider anyway: a
    timeout or a dropped connection may hide a success; 429 and 503 say it did not."""
    if isinstance(error, RateLimited):
        return False
    return error.status not in NOT_PROCESSED_STATUSES
