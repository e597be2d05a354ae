"""The OAuth dance through the sandbox, over HTTP, as a browser would do it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

RETURN_TO = "http://localhost:3000/settings/email"


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def authorize_url(
    client: httpx.AsyncClient,
    provider: str,
    headers: dict[str, str],
    return_to: str = RETURN_TO,
    login_hint: str | None = None,
) -> str:
    params = {"return_to": return_to}
    if login_hint:
        params["login_hint"] = login_hint
    response = await client.get(f"/v1/oauth/{provider}/authorize", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["authorization_url"])


async def consent(client: httpx.AsyncClient, url: str, **extra: str) -> str:
    """The sandbox consent page approves at once: returns our callback URL with code+state."""
    if extra:
        url = url + "&" + "&".join(f"{k}={v}" for k, v in extra.items())
    response = await client.get(url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def connect(
    client: httpx.AsyncClient,
    provider: str,
    headers: dict[str, str],
    login_hint: str | None = None,
) -> dict[str, Any]:
    url = await authorize_url(client, provider, headers, login_hint=login_hint)
    callback = await consent(client, url)
    response = await client.get(callback)
    assert response.status_code == 302, response.text
    target = response.headers["location"]
    assert target.startswith(RETURN_TO), target
    params = query(target)
    assert "error" not in params, params
    account = await client.get(f"/v1/accounts/{params['account_id']}", headers=headers)
    assert account.status_code == 200
    return dict(account.json())
