"""What a provider failure means for a mailbox: the one decision sync, send and token
refresh share."""

from __future__ import annotations

from app.providers.errors import (
    AuthRevoked,
    CursorExpired,
    MessageTooLarge,
    NotFound,
    ProviderRequestError,
    ProviderUnavailable,
    RateLimited,
)
from app.providers.failures import Outcome, mailbox_action, may_have_been_processed


def test_a_refused_grant_needs_re_consent_and_a_refused_token_is_retried() -> None:
    assert mailbox_action(AuthRevoked(), grant_refused=True).outcome is Outcome.REAUTH
    retry = mailbox_action(AuthRevoked())
    assert retry.outcome is Outcome.RETRY
    assert retry.delay == 30.0


def test_throttling_is_retried_after_the_providers_wait() -> None:
    assert mailbox_action(RateLimited(retry_after=120.0)).delay == 120.0
    assert mailbox_action(RateLimited()).delay == 30.0
    assert mailbox_action(RateLimited(retry_after=0.5)).delay == 1.0


def test_an_unavailable_provider_is_retried_and_shows_an_error() -> None:
    action = mailbox_action(ProviderUnavailable(status=503))
    assert action.outcome is Outcome.RETRY
    assert action.provider_unavailable
    assert action.delay == 60.0
    assert mailbox_action(ProviderUnavailable(retry_after=300.0)).delay == 300.0


def test_other_failures_are_given_up() -> None:
    for error in (ProviderRequestError(), NotFound(), MessageTooLarge(), CursorExpired()):
        action = mailbox_action(error)
        assert action.outcome is Outcome.GIVE_UP
        assert type(error).__name__ in action.reason


def test_only_429_and_503_say_a_send_did_not_happen() -> None:
    assert not may_have_been_processed(RateLimited(status=429))
    assert not may_have_been_processed(ProviderUnavailable(status=503))
    assert may_have_been_processed(ProviderUnavailable(status=504))
    assert may_have_been_processed(ProviderUnavailable())  # a timeout
