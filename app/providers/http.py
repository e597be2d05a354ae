"""The one retry policy and the one place provider HTTP calls go through.

Decides what is retried (429, Gmail 403 rate-limit reasons, 500/502/503/504, network
errors), how long to wait (Retry-After as seconds or an HTTP date, else exponential backoff
with full jitter), when to give up (`provider_max_attempts`, `provider_max_backoff_seconds`),
refreshes the access token once on a 401, maps failures to the typed errors, counts calls,
and logs method, path template, status and attempt only (never URLs, bodies or tokens).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from app.config import Settings
from app.providers.base import TokenSource
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

logger = logging.getLogger("app.providers")

# httpx logs every request URL at INFO (httpcore at DEBUG): Graph upload-session URLs carry
# an `authtoken` query parameter and delta links carry sync state, so neither may reach the
# logs. Our own records above say what happened without the URL.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

Sleep = Callable[[float], Awaitable[None]]

RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})
# Statuses that mean "the request was not processed": safe to retry even for a send.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
GMAIL_RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
CURSOR_EXPIRED_CODES = frozenset({"syncStateNotFound", "SyncStateNotFound", "resyncRequired"})
TOO_LARGE_CODES = frozenset({"ErrorMessageSizeExceeded", "RequestEntityTooLarge"})
# OAuth token endpoints: transient failures reported as 400s.
TRANSIENT_OAUTH_ERRORS = frozenset({"internal_failure", "temporarily_unavailable"})

_GMAIL_RETRY_AT = re.compile(r"Retry after (\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)")


# --------------------------------------------------------------------------- call counting


class CallCounter:
    """Counts provider HTTP calls by (provider, kind, status). Thread-safe, cheap.

    kind "http": one per HTTP attempt (status is the code, or "network_error").
    kind "message_fetch": one per message fetch attempt (a Gmail batch part, a Graph `$value`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._listeners: list[Callable[[str, str, str], None]] = []

    def record(self, provider: str, status: int | str, kind: str = "http") -> None:
        key = (provider, kind, str(status))
        with self._lock:
            self._counts[key] += 1
            listeners = list(self._listeners)
        for listener in listeners:
            listener(*key)

    def add_listener(self, listener: Callable[[str, str, str], None]) -> None:
        """For the Prometheus metric: called with (provider, kind, status) per call."""
        with self._lock:
            self._listeners.append(listener)

    def calls_by(
        self, provider: str | None = None, status: int | str | None = None, kind: str = "http"
    ) -> int:
        with self._lock:
            return sum(
                n
                for (p, k, s), n in self._counts.items()
                if k == kind
                and (provider is None or p == provider)
                and (status is None or s == str(status))
            )

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


CALLS = CallCounter()

ThrottleListener = Callable[[str, float], None]
THROTTLE_LISTENERS: list[ThrottleListener] = []
"""Called with (provider, seconds) before each backoff or Retry-After wait (metrics)."""


def _record_wait(provider: str, seconds: float) -> None:
    for listener in list(THROTTLE_LISTENERS):
        listener(provider, seconds)


def calls_by(provider: str | None = None, status: int | str | None = None) -> int:
    """HTTP calls made to `provider` (all, or those that answered `status`)."""
    return CALLS.calls_by(provider, status)


def message_fetches(provider: str | None = None) -> int:
    """Per-message fetch attempts (the benchmark's fetches-per-message numerator)."""
    return CALLS.calls_by(provider, kind="message_fetch")


def reset_call_counts() -> None:
    CALLS.reset()


# --------------------------------------------------------------------------- the decision


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: integer or fractional seconds, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _retry_at_from_message(message: str | None, *, now: datetime | None = None) -> float | None:
    """Gmail's sending limit says "Retry after 2024-05-01T10:15:00.000Z" in the message."""
    if not message:
        return None
    match = _GMAIL_RETRY_AT.search(message)
    if not match:
        return None
    try:
        when = datetime.fromisoformat(match.group(1))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class ErrorInfo:
    """What an error body says, reduced to codes (never the body itself)."""

    code: str | None = None
    reason: str | None = None
    message: str | None = field(default=None, repr=False)


def error_info_from_json(data: Any) -> ErrorInfo:
    if not isinstance(data, dict):
        return ErrorInfo()
    error = data.get("error")
    if isinstance(error, str):  # OAuth token endpoint
        return ErrorInfo(code=error)
    if not isinstance(error, dict):
        return ErrorInfo()
    message = error.get("message") if isinstance(error.get("message"), str) else None
    reason = None
    errors = error.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        raw_reason = errors[0].get("reason")
        reason = raw_reason if isinstance(raw_reason, str) else None
    code = error.get("code")
    if isinstance(code, str):  # Graph
        return ErrorInfo(code=code, reason=reason, message=message)
    status = error.get("status")
    return ErrorInfo(
        code=reason or (status if isinstance(status, str) else None),
        reason=reason,
        message=message,
    )


def error_info(response: httpx.Response) -> ErrorInfo:
    if response.status_code < 400:
        return ErrorInfo()
    try:
        return error_info_from_json(json.loads(response.content or b"null"))
    except (ValueError, UnicodeDecodeError):
        return ErrorInfo()


RetryKind = Literal["rate_limited", "unavailable"]


def retry_kind(status: int, info: ErrorInfo) -> RetryKind | None:
    """Whether an answer is worth retrying, and as what."""
    if status == 429:
        return "rate_limited"
    if status == 403 and (
        info.reason in GMAIL_RATE_LIMIT_REASONS or info.code in GMAIL_RATE_LIMIT_REASONS
    ):
        return "rate_limited"
    if status in RETRYABLE_SERVER_STATUSES:
        return "unavailable"
    if status == 400 and info.code in TRANSIENT_OAUTH_ERRORS:
        return "unavailable"
    return None


def retry_after_of(
    headers: Mapping[str, str], info: ErrorInfo, *, now: datetime | None = None
) -> float | None:
    retry_after = parse_retry_after(headers.get("retry-after"), now=now)
    if retry_after is None:
        retry_after = _retry_at_from_message(info.message, now=now)
    return retry_after


def error_for(
    provider: str, status: int, info: ErrorInfo, *, retry_after: float | None = None
) -> ProviderError:
    """The typed error for a final (non-retried or out-of-budget) failure."""
    kw: dict[str, Any] = {"provider": provider, "status": status, "code": info.code}
    if info.code in CURSOR_EXPIRED_CODES or status == 410:
        return CursorExpired("cursor expired", **kw)
    kind = retry_kind(status, info)
    if kind == "rate_limited":
        return RateLimited("rate limited", retry_after=retry_after, **kw)
    if kind == "unavailable" or status >= 500:
        return ProviderUnavailable("provider unavailable", retry_after=retry_after, **kw)
    if status == 401:
        return AuthRevoked("access token rejected after refresh", **kw)
    if status == 404:
        return NotFound("not found", **kw)
    if status == 413 or info.code in TOO_LARGE_CODES:
        return MessageTooLarge("message too large", **kw)
    return ProviderRequestError("request rejected", **kw)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    max_backoff_seconds: float = 30.0
    base_backoff_seconds: float = 0.5
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    """Uniform in [0, 1); injectable so tests are deterministic."""
    timeout_seconds: float = 30.0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sleep: Sleep | None = None,
        rand: Callable[[], float] | None = None,
    ) -> RetryPolicy:
        return cls(
            max_attempts=max(1, settings.provider_max_attempts),
            max_backoff_seconds=settings.provider_max_backoff_seconds,
            base_backoff_seconds=settings.provider_base_backoff_seconds,
            sleep=sleep or asyncio.sleep,
            jitter=rand or random.random,
            timeout_seconds=settings.provider_timeout_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        ceiling = min(self.max_backoff_seconds, self.base_backoff_seconds * 2.0 ** (attempt - 1))
        return ceiling * self.jitter()

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up now.

        A Retry-After longer than the backoff cap gives up at once: the caller (a job) can
        reschedule itself instead of holding a worker asleep.
        """
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            if retry_after > self.max_backoff_seconds:
                return None
            return retry_after
        return self.backoff(attempt)


# --------------------------------------------------------------------------- the client


_NETWORK_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
# Errors where the request surely never reached the server: safe for non-idempotent calls.
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)


class ProviderHttp:
    """An httpx.AsyncClient plus the retry policy, auth and error mapping of one provider."""

    def __init__(
        self,
        provider: str,
        client: httpx.AsyncClient,
        policy: RetryPolicy,
        token_source: TokenSource | None = None,
        *,
        owns_client: bool = False,
    ) -> None:
        self.provider = provider
        self.client = client
        self.policy = policy
        self.token_source = token_source
        self._owns_client = owns_client

    @classmethod
    def create(
        cls,
        provider: str,
        settings: Settings,
        token_source: TokenSource | None = None,
        http_client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
    ) -> ProviderHttp:
        policy = policy or RetryPolicy.from_settings(settings)
        owns = http_client is None
        client = http_client or httpx.AsyncClient(timeout=policy.timeout_seconds)
        return cls(provider, client, policy, token_source, owns_client=owns)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def _log(self, level: int, method: str, template: str, status: int | str, attempt: int) -> None:
        logger.log(
            level,
            "provider call %s %s status=%s attempt=%d",
            self.provider,
            template,
            status,
            attempt,
            extra={
                "provider": self.provider,
                "http_method": method,
                "path_template": template,
                "http_status": status,
                "attempt": attempt,
            },
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        template: str,
        params: Any = None,
        json_body: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        idempotent: bool | None = None,
        count_as: str | None = None,
    ) -> httpx.Response:
        """Send with retries; return a 2xx/3xx response or raise a typed ProviderError.

        `template` (method and path template, e.g. "GET /users/me/messages/{id}") is what
        gets logged; `url` never is.
        `idempotent` (default: not POST) allows retrying 5xx and timeouts; a non-idempotent
        call (a send) retries only answers that mean "not processed" (429, 503, rate-limit
        403) and connection failures.
        """
        if idempotent is None:
            idempotent = method.upper() != "POST"
        policy = self.policy
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            request_headers = dict(headers or {})
            if authenticated and self.token_source is not None:
                token = await self.token_source.access_token()
                request_headers["Authorization"] = f"Bearer {token}"
            try:
                response = await self.client.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    content=content,
                    data=data,
                    headers=request_headers,
                    timeout=policy.timeout_seconds,
                )
            except _NETWORK_ERRORS as exc:
                self.record("network_error", count_as)
                retryable = idempotent or isinstance(exc, _NOT_SENT_ERRORS)
                wait = policy.delay(attempt, None) if retryable else None
                if wait is None:
                    self._log(logging.WARNING, method, template, "network_error", attempt)
                    raise ProviderUnavailable(
                        f"network error ({type(exc).__name__})", provider=self.provider
                    ) from None
                await policy.sleep(wait)
                continue
            except httpx.HTTPError as exc:  # bad URL, unsupported protocol: not retryable
                self.record("client_error", count_as)
                raise ProviderRequestError(
                    f"http client error ({type(exc).__name__})", provider=self.provider
                ) from None

            status = response.status_code
            self.record(status, count_as)
            if status < 400:
                self._log(logging.DEBUG, method, template, status, attempt)
                return response

            if status == 401 and authenticated and self.token_source is not None:
                if refreshed:
                    self._log(logging.WARNING, method, template, status, attempt)
                    raise AuthRevoked(
                        "access token rejected after refresh",
                        provider=self.provider,
                        status=401,
                        code=error_info(response).code,
                    )
                refreshed = True
                self._log(logging.INFO, method, template, status, attempt)
                await self.token_source.refresh()
                attempt -= 1  # a refresh is not a throttling attempt
                continue

            info = error_info(response)
            kind = retry_kind(status, info)
            retry_after = retry_after_of(response.headers, info)
            not_processed = kind == "rate_limited" or status in NOT_PROCESSED_STATUSES
            if kind is not None and (idempotent or not_processed):
                wait = policy.delay(attempt, retry_after)
                if wait is not None:
                    self._log(logging.INFO, method, template, status, attempt)
                    _record_wait(self.provider, wait)
                    await policy.sleep(wait)
                    continue
            # Expected outcomes (a message deleted meanwhile, an expired cursor) are not alarms.
            level = logging.INFO if status in (404, 410) else logging.WARNING
            self._log(level, method, template, status, attempt)
            if status == 401:  # unauthenticated call (token endpoint): invalid_client & co
                raise ProviderRequestError(
                    "request rejected", provider=self.provider, status=status, code=info.code
                )
            raise error_for(self.provider, status, info, retry_after=retry_after)

    def record(self, status: int | str, count_as: str | None) -> None:
        CALLS.record(self.provider, status)
        if count_as:
            CALLS.record(self.provider, status, kind=count_as)

    async def json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.request(method, url, **kwargs)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise ProviderRequestError(
                "unreadable response", provider=self.provider, status=response.status_code
            ) from None
