"""The retry policy in app/providers/http.py, through ProviderHttp and MockTransport."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from app.providers.errors import (
    AuthRevoked,
    CursorExpired,
    MessageTooLarge,
    NotFound,
    ProviderRequestError,
    ProviderUnavailable,
    RateLimited,
)
from app.providers.http import (
    ProviderHttp,
    RetryPolicy,
    calls_by,
    parse_retry_after,
)
from tests.fixtures.providers import (
    SECRET_MARK,
    FakeTokenSource,
    RecordingSleep,
    gmail_error,
    graph_error,
    json_response,
    mock_client,
)

URL = "https://api.example.test/v1/users/me/messages?q=from:alice@example.com"


def sequence(*responses: httpx.Response | Exception):
    """A handler answering the given responses in order (the last one repeats)."""
    items = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def make_http(
    handler, policy: RetryPolicy, tokens: FakeTokenSource | None, provider: str = "gmail"
):
    client, recorder = mock_client(handler)
    return ProviderHttp(provider, client, policy, tokens), recorder


# --------------------------------------------------------------------- Retry-After parsing


def test_parse_retry_after_integer_fraction_date_and_garbage() -> None:
    now = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 2.128 ") == pytest.approx(2.128)
    assert parse_retry_after("-4") == 0.0
    http_date = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(http_date, now=now) == pytest.approx(42.0)
    past = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


@pytest.mark.asyncio
async def test_retry_after_integer_is_obeyed(policy, sleep: RecordingSleep, tokens) -> None:
    http, recorder = make_http(
        sequence(
            graph_error(429, "TooManyRequests", {"Retry-After": "2"}),
            json_response(200, {"ok": True}),
        ),
        policy,
        tokens,
    )
    response = await http.request("GET", URL, template="GET /messages")
    assert response.json() == {"ok": True}
    assert sleep.calls == [2.0]
    assert len(recorder.requests) == 2


@pytest.mark.asyncio
async def test_retry_after_fractional_is_obeyed(policy, sleep: RecordingSleep, tokens) -> None:
    http, _ = make_http(
        sequence(
            graph_error(429, "TooManyRequests", {"Retry-After": "2.128"}),
            json_response(200, {}),
        ),
        policy,
        tokens,
    )
    await http.request("GET", URL, template="GET /messages")
    assert sleep.calls == [pytest.approx(2.128)]


@pytest.mark.asyncio
async def test_retry_after_http_date_is_obeyed(policy, sleep: RecordingSleep, tokens) -> None:
    when = datetime.now(UTC) + timedelta(seconds=6)
    http, _ = make_http(
        sequence(
            graph_error(503, "serviceNotAvailable", {"Retry-After": format_datetime(when, True)}),
            json_response(200, {}),
        ),
        policy,
        tokens,
    )
    await http.request("GET", URL, template="GET /messages")
    assert len(sleep.calls) == 1
    assert 4.0 <= sleep.calls[0] <= 6.0


@pytest.mark.asyncio
async def test_429_without_header_backs_off_with_full_jitter(
    settings, sleep: RecordingSleep, tokens
) -> None:
    jitters = iter([0.5, 1.0, 0.25])
    policy = RetryPolicy.from_settings(settings, sleep=sleep, rand=lambda: next(jitters))
    http, recorder = make_http(
        sequence(
            gmail_error(429, "rateLimitExceeded"),
            gmail_error(429, "rateLimitExceeded"),
            gmail_error(429, "rateLimitExceeded"),
            json_response(200, {}),
        ),
        policy,
        tokens,
    )
    await http.request("GET", URL, template="GET /messages")
    # ceilings 0.5, 1.0, 2.0 (base 0.5 doubling) times the jitter draws
    assert sleep.calls == [0.25, 1.0, 0.5]
    assert len(recorder.requests) == 4


def test_backoff_never_exceeds_the_cap(settings) -> None:
    policy = RetryPolicy.from_settings(settings, rand=lambda: 0.999999)
    assert all(policy.backoff(n) <= settings.provider_max_backoff_seconds for n in range(1, 40))


@pytest.mark.asyncio
async def test_gmail_sending_limit_retry_time_in_message(policy, sleep, tokens) -> None:
    when = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    http, _ = make_http(
        sequence(
            gmail_error(429, "rateLimitExceeded", f"User-rate limit exceeded.  Retry after {when}"),
            json_response(200, {}),
        ),
        policy,
        tokens,
    )
    await http.request("GET", URL, template="GET /messages")
    assert len(sleep.calls) == 1
    assert 1.0 <= sleep.calls[0] <= 3.0


@pytest.mark.asyncio
async def test_403_user_rate_limit_is_retried(policy, sleep, tokens) -> None:
    http, recorder = make_http(
        sequence(gmail_error(403, "userRateLimitExceeded"), json_response(200, {"id": "1"})),
        policy,
        tokens,
    )
    response = await http.request("GET", URL, template="GET /messages")
    assert response.status_code == 200
    assert len(recorder.requests) == 2
    assert len(sleep.calls) == 1


@pytest.mark.asyncio
async def test_403_other_reason_is_not_retried(policy, sleep, tokens) -> None:
    http, recorder = make_http(
        sequence(gmail_error(403, "insufficientPermissions")), policy, tokens
    )
    with pytest.raises(ProviderRequestError) as info:
        await http.request("GET", URL, template="GET /messages")
    assert info.value.status == 403
    assert info.value.code == "insufficientPermissions"
    assert len(recorder.requests) == 1
    assert sleep.calls == []


@pytest.mark.asyncio
async def test_503_then_success(policy, sleep, tokens) -> None:
    http, recorder = make_http(
        sequence(gmail_error(503, "backendError"), json_response(200, {"v": 1})),
        policy,
        tokens,
    )
    response = await http.request("GET", URL, template="GET /messages")
    assert response.json() == {"v": 1}
    assert len(recorder.requests) == 2
    assert calls_by("gmail", 503) == 1
    assert calls_by("gmail", 200) == 1
    assert calls_by("gmail") == 2


@pytest.mark.asyncio
async def test_attempts_are_bounded_for_5xx(policy, sleep, tokens, settings) -> None:
    http, recorder = make_http(sequence(gmail_error(502, "backendError")), policy, tokens)
    with pytest.raises(ProviderUnavailable) as info:
        await http.request("GET", URL, template="GET /messages")
    assert len(recorder.requests) == settings.provider_max_attempts == 4
    assert len(sleep.calls) == 3
    assert info.value.status == 502


@pytest.mark.asyncio
async def test_attempts_are_bounded_for_429(policy, sleep, tokens, settings) -> None:
    http, recorder = make_http(
        sequence(graph_error(429, "TooManyRequests", {"Retry-After": "1.5"})),
        policy,
        tokens,
        provider="outlook",
    )
    with pytest.raises(RateLimited) as info:
        await http.request("GET", URL, template="GET /me/messages")
    assert len(recorder.requests) == settings.provider_max_attempts
    assert info.value.retry_after == pytest.approx(1.5)
    assert sleep.calls == [1.5, 1.5, 1.5]
    assert calls_by("outlook", 429) == 4


@pytest.mark.asyncio
async def test_retry_after_beyond_the_cap_gives_up_at_once(policy, sleep, tokens) -> None:
    http, recorder = make_http(
        sequence(graph_error(429, "TooManyRequests", {"Retry-After": "120"})), policy, tokens
    )
    with pytest.raises(RateLimited) as info:
        await http.request("GET", URL, template="GET /messages")
    assert info.value.retry_after == 120.0
    assert len(recorder.requests) == 1
    assert sleep.calls == []


@pytest.mark.asyncio
async def test_network_errors_are_retried(policy, sleep, tokens) -> None:
    http, recorder = make_http(
        sequence(
            httpx.ConnectError("reset"),
            httpx.ReadTimeout("slow"),
            json_response(200, {"fine": True}),
        ),
        policy,
        tokens,
    )
    response = await http.request("GET", URL, template="GET /messages")
    assert response.json() == {"fine": True}
    assert len(recorder.requests) == 3
    assert calls_by("gmail", "network_error") == 2


@pytest.mark.asyncio
async def test_network_errors_exhaust_to_unavailable(policy, sleep, tokens) -> None:
    http, recorder = make_http(sequence(httpx.ConnectError("down")), policy, tokens)
    with pytest.raises(ProviderUnavailable):
        await http.request("GET", URL, template="GET /messages")
    assert len(recorder.requests) == 4


@pytest.mark.asyncio
async def test_send_is_not_retried_after_a_read_timeout(policy, sleep, tokens) -> None:
    """A POST that may have reached the provider must not be sent twice."""
    http, recorder = make_http(
        sequence(httpx.ReadTimeout("slow"), json_response(200, {})), policy, tokens
    )
    with pytest.raises(ProviderUnavailable):
        await http.request("POST", URL, template="POST /messages/send", json_body={})
    assert len(recorder.requests) == 1


@pytest.mark.asyncio
async def test_send_is_not_retried_after_a_500_but_is_after_a_429(policy, sleep, tokens) -> None:
    http, recorder = make_http(sequence(gmail_error(500, "backendError")), policy, tokens)
    with pytest.raises(ProviderUnavailable):
        await http.request("POST", URL, template="POST /messages/send", json_body={})
    assert len(recorder.requests) == 1

    http, recorder = make_http(
        sequence(gmail_error(429, "rateLimitExceeded"), json_response(200, {"id": "x"})),
        policy,
        tokens,
    )
    response = await http.request("POST", URL, template="POST /messages/send", json_body={})
    assert response.json() == {"id": "x"}
    assert len(recorder.requests) == 2


@pytest.mark.asyncio
async def test_401_refreshes_once_then_succeeds(policy, tokens: FakeTokenSource) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == f"Bearer {SECRET_MARK}-access-1":
            return gmail_error(401, "authError", "Invalid Credentials")
        return json_response(200, {"ok": 1})

    http, recorder = make_http(handler, policy, tokens)
    response = await http.request("GET", URL, template="GET /messages")
    assert response.json() == {"ok": 1}
    assert tokens.refreshes == 1
    assert [r.headers["Authorization"] for r in recorder.requests] == [
        f"Bearer {SECRET_MARK}-access-1",
        f"Bearer {SECRET_MARK}-access-2",
    ]


@pytest.mark.asyncio
async def test_401_twice_is_auth_revoked(policy, tokens: FakeTokenSource) -> None:
    http, recorder = make_http(
        sequence(graph_error(401, "InvalidAuthenticationToken")), policy, tokens, "outlook"
    )
    with pytest.raises(AuthRevoked) as info:
        await http.request("GET", URL, template="GET /me")
    assert tokens.refreshes == 1
    assert len(recorder.requests) == 2
    assert info.value.status == 401
    assert SECRET_MARK not in str(info.value)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (graph_error(410, "syncStateNotFound"), CursorExpired),
        (graph_error(400, "SyncStateNotFound"), CursorExpired),
        (graph_error(404, "resyncRequired"), CursorExpired),
        (graph_error(404, "ErrorItemNotFound"), NotFound),
        (graph_error(413, "RequestEntityTooLarge"), MessageTooLarge),
        (graph_error(400, "ErrorInvalidRecipients"), ProviderRequestError),
    ],
)
@pytest.mark.asyncio
async def test_status_and_code_mapping(policy, tokens, response, error) -> None:
    http, recorder = make_http(sequence(response), policy, tokens, "outlook")
    with pytest.raises(error):
        await http.request("GET", URL, template="GET /x")
    assert len(recorder.requests) == 1


@pytest.mark.asyncio
async def test_logs_carry_template_status_attempt_but_no_url_or_token(
    policy, tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.providers")
    http, _ = make_http(
        sequence(
            gmail_error(401, "authError"),
            gmail_error(503, "backendError"),
            json_response(200, {}),
        ),
        policy,
        tokens,
    )
    await http.request("GET", URL, template="GET /users/me/messages")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert all("GET /users/me/messages" in m for m in messages)
    assert "status=503 attempt=1" in messages[1]
    assert "status=200 attempt=2" in messages[2]
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert SECRET_MARK not in text
        assert "alice@example.com" not in text
        assert "api.example.test" not in text


@pytest.mark.asyncio
async def test_other_client_errors_become_typed_without_retry(policy, sleep, tokens) -> None:
    http, recorder = make_http(sequence(httpx.UnsupportedProtocol("no scheme")), policy, tokens)
    with pytest.raises(ProviderRequestError) as info:
        await http.request("GET", URL, template="GET /messages")
    assert "UnsupportedProtocol" in str(info.value)
    assert len(recorder.requests) == 1
    assert sleep.calls == []
