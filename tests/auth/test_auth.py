"""Missing, expired, wrongly signed, malformed and non-member tokens: 401/403 problem+json."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from app.auth.tokens import issue_token
from app.config import Settings
from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


async def test_valid_token_passes(client: httpx.AsyncClient, org_a: Org) -> None:
    response = await client.get("/v1/settings", headers=org_a.headers("member"))
    assert response.status_code == 200


async def test_missing_token(client: httpx.AsyncClient) -> None:
    _problem(await client.get("/v1/settings"), 401)
    _problem(await client.get("/v1/settings", headers={"Authorization": "Basic abc"}), 401)


async def test_expired_token(
    client: httpx.AsyncClient, org_a: Org, test_settings: Settings
) -> None:
    user = uuid.UUID(org_a["admin"]["user_id"])
    token = issue_token(test_settings, user, org_a.id, ttl_seconds=-3600)
    _problem(await client.get("/v1/settings", headers=_bearer(token)), 401)


async def test_wrongly_signed_token(client: httpx.AsyncClient, org_a: Org) -> None:
    now = int(time.time())
    claims = {"sub": org_a["admin"]["user_id"], "org_id": org_a["org_id"], "exp": now + 600}
    forged = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key("not-the-secret" * 3))
    _problem(await client.get("/v1/settings", headers=_bearer(forged)), 401)
    # alg=none is never accepted
    header, payload, _ = forged.split(".")
    _problem(await client.get("/v1/settings", headers=_bearer(f"{header}.{payload}.")), 401)
    _problem(await client.get("/v1/settings", headers=_bearer("garbage")), 401)


async def test_missing_claims(
    client: httpx.AsyncClient, org_a: Org, test_settings: Settings
) -> None:
    key = OctKey.import_key(test_settings.jwt_secret.get_secret_value())
    now = int(time.time())
    for claims in (
        {"sub": org_a["admin"]["user_id"], "exp": now + 600},  # no org_id
        {"org_id": org_a["org_id"], "exp": now + 600},  # no sub
        {"sub": org_a["admin"]["user_id"], "org_id": org_a["org_id"]},  # no exp
        {"sub": "not-a-uuid", "org_id": org_a["org_id"], "exp": now + 600},
    ):
        token = jwt.encode({"alg": "HS256"}, claims, key)
        _problem(await client.get("/v1/settings", headers=_bearer(token)), 401)


async def test_user_not_member_of_the_org_is_forbidden(
    client: httpx.AsyncClient, org_a: Org, org_b: Org, test_settings: Settings
) -> None:
    # a real user of org B presenting org A's id
    user_b = uuid.UUID(org_b["admin"]["user_id"])
    token = issue_token(test_settings, user_b, org_a.id)
    _problem(await client.get("/v1/settings", headers=_bearer(token)), 403)
    # an org that does not exist
    token = issue_token(test_settings, user_b, uuid.uuid4())
    _problem(await client.get("/v1/settings", headers=_bearer(token)), 403)


async def test_error_bodies_never_echo_the_token(client: httpx.AsyncClient, org_a: Org) -> None:
    token = org_a["admin"]["token"] + "tampered"
    response = await client.get("/v1/settings", headers=_bearer(token))
    _problem(response, 401)
    assert token not in response.text
    assert org_a["admin"]["token"] not in response.text
