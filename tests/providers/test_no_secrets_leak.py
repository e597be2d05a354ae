"""No token, address, URL query or body ends up in an exception or a log record."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.providers.base import OutgoingMessage, TokenSet
from app.providers.errors import ProviderError
from app.providers.gmail import GmailProvider
from app.providers.graph import GraphProvider
from app.providers.oauth import GoogleOAuthClient, MicrosoftOAuthClient, OAuthTokenSource
from tests.fixtures.providers import SECRET_MARK, json_response, mock_client

ADDRESS = "patient.jane@example.org"
FORBIDDEN = (SECRET_MARK, ADDRESS, "Token has been expired", "AADSTS")


def error_body(status: int) -> httpx.Response:
    # An error body that echoes everything a careless client might log.
    return json_response(
        status,
        {
            "error": {
                "code": "Whatever",
                "message": f"{SECRET_MARK} {ADDRESS} Token has been expired AADSTS1",
                "errors": [{"reason": "backendError", "message": f"{SECRET_MARK}-x"}],
            }
        },
    )


def assert_clean(texts: list[str]) -> None:
    for text in texts:
        for forbidden in FORBIDDEN:
            assert forbidden not in text, (forbidden, text)


@pytest.mark.asyncio
async def test_no_secret_in_errors_or_logs(
    settings, policy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    statuses = iter([401, 401, 400, 403, 404, 410, 500, 500, 500, 500, 429, 429, 429, 429])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return json_response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": f"Token has been expired {SECRET_MARK} AADSTS70008",
                },
            )
        if "network" in request.url.path:
            raise httpx.ConnectError(f"boom {SECRET_MARK} {ADDRESS}")
        return error_body(next(statuses, 500))

    http, _ = mock_client(handler)
    google = GoogleOAuthClient(settings, http, policy)
    microsoft = MicrosoftOAuthClient(settings, http, policy)
    source = OAuthTokenSource(
        google,
        TokenSet(
            f"{SECRET_MARK}-access",
            f"{SECRET_MARK}-refresh",
            datetime.now(UTC) + timedelta(hours=1),
            None,
        ),
    )
    gmail = GmailProvider(settings, source, http, policy)
    graph = GraphProvider(settings, source, http, policy)

    async def attempt(coro) -> None:
        try:
            await coro
        except ProviderError as exc:
            errors.append(exc)

    await attempt(gmail.get_profile())  # 401 -> refresh -> invalid_grant
    await attempt(microsoft.refresh(f"{SECRET_MARK}-refresh"))
    await attempt(google.exchange_code(f"{SECRET_MARK}-code", "verifier"))
    for _ in range(5):
        await attempt(graph.list_changes(f"{settings.graph_api_base}/d?$deltatoken={ADDRESS}"))
    await attempt(gmail.send(OutgoingMessage(mime=f"To: {ADDRESS}\r\n\r\nhi".encode())))
    await attempt(graph.get_messages([ADDRESS]))
    network = GmailProvider(
        settings.model_copy(update={"gmail_api_base": "https://network.test/network"}),
        source,
        http,
        policy,
    )
    await attempt(network.get_profile())

    assert len(errors) >= 8
    assert_clean([str(e) for e in errors] + [repr(e) for e in errors])
    assert_clean([repr(e.__cause__) for e in errors if e.__cause__ is not None])
    assert all(e.__cause__ is None or SECRET_MARK not in str(e.__cause__) for e in errors)
    records = caplog.records
    assert records, "the calls should have been logged"
    assert_clean([r.getMessage() for r in records] + [repr(r.__dict__) for r in records])
    assert_clean([repr(source), repr(source.tokens), repr(gmail), repr(graph), repr(google)])
