"""The few typed errors every provider failure becomes.

Messages carry the provider, the HTTP status and the provider's error code only: never
tokens, response bodies, URLs with query strings, or mail addresses. The sync error handler
decides what each error means for the account.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every provider failure."""

    def __init__(
        self,
        detail: str = "",
        *,
        provider: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.detail = detail
        self.provider = provider
        self.status = status
        self.code = code
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [self.detail or type(self).__name__]
        if self.provider:
            parts.append(f"provider={self.provider}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        return " ".join(parts)


class AuthRevoked(ProviderError):
    """The grant is gone (invalid_grant, or a 401 that survived one refresh): re-consent."""

    def __init__(
        self,
        reason: str = "authorization revoked",
        *,
        provider: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.reason = reason
        super().__init__(reason, provider=provider, status=status, code=code)


class RateLimited(ProviderError):
    """Throttled beyond the retry budget; `retry_after` (seconds) when the provider said."""

    def __init__(
        self,
        detail: str = "rate limited",
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(detail, provider=provider, status=status, code=code)

    def _message(self) -> str:
        base = super()._message()
        if self.retry_after is not None:
            return f"{base} retry_after={self.retry_after:.3f}"
        return base


class CursorExpired(ProviderError):
    """Gmail history 404 / Graph delta 410 (syncStateNotFound, resyncRequired): full resync."""


class NotFound(ProviderError):
    """The resource does not exist (a message deleted between list and get, ...)."""


class ProviderUnavailable(ProviderError):
    """5xx or network failure after the retry budget."""

    def __init__(
        self,
        detail: str = "provider unavailable",
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(detail, provider=provider, status=status, code=code)


class MessageTooLarge(ProviderError):
    """The outgoing message exceeds what the provider accepts (checked before calling)."""


class ProviderRequestError(ProviderError):
    """Any other 4xx: a bug on our side or a permission the account lacks."""
