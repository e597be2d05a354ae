"""The registry hands out the right driver and OAuth client, and owns only what it made."""

from __future__ import annotations

import httpx
import pytest

from app.providers.gmail import GmailProvider
from app.providers.graph import GraphProvider
from app.providers.oauth import GoogleOAuthClient, MicrosoftOAuthClient
from app.providers.registry import get_oauth_client, get_provider
from tests.fixtures.providers import json_response


@pytest.mark.asyncio
async def test_get_provider_by_name_and_client_ownership(settings, tokens) -> None:
    injected = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: json_response(200, {})))
    gmail = get_provider("gmail", settings, tokens, injected)
    outlook = get_provider("outlook", settings, tokens, injected)
    assert isinstance(gmail, GmailProvider)
    assert isinstance(outlook, GraphProvider)
    assert (gmail.name, outlook.name) == ("gmail", "outlook")
    await gmail.aclose()
    assert not injected.is_closed  # injected: the caller's to close
    await injected.aclose()

    own = get_provider("outlook", settings, tokens)
    assert isinstance(own, GraphProvider)
    await own.aclose()
    assert own.http.client.is_closed


def test_get_oauth_client_by_name(settings) -> None:
    assert isinstance(get_oauth_client("gmail", settings), GoogleOAuthClient)
    assert isinstance(get_oauth_client("outlook", settings), MicrosoftOAuthClient)
    with pytest.raises(ValueError, match="unknown provider"):
        get_oauth_client("yahoo", settings)
    with pytest.raises(ValueError, match="unknown provider"):
        get_provider("graph", settings, None)  # type: ignore[arg-type]
