"""GET/PATCH /v1/settings: defaults, every bound, wrong types, admin-only writes."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio

DEFAULTS = {
    "email_sync_history_days": 30,
    "email_body_size_limit_kb": 500,
    "email_sync_interval_minutes": 15,
    "email_tracking_enabled": True,
    "email_custom_tracking_domain": None,
    "email_audit_retention_days": 2190,
    "email_reconcile_interval_hours": 24,
    "email_retention_days": None,
    "email_default_visibility": "metadata",
}
BOUNDS = {
    "email_sync_history_days": (7, 90),
    "email_body_size_limit_kb": (100, 2000),
    "email_sync_interval_minutes": (5, 60),
    "email_audit_retention_days": (2190, 3650),
    "email_reconcile_interval_hours": (1, 168),
    "email_retention_days": (30, 3650),
}


async def test_defaults_when_unset(client: httpx.AsyncClient, org_a: Org) -> None:
    response = await client.get("/v1/settings", headers=org_a.headers("member"))
    assert response.status_code == 200
    assert response.json() == DEFAULTS


@pytest.mark.parametrize("field", sorted(BOUNDS))
async def test_each_bound_accepted_and_each_bound_plus_minus_one_rejected(
    client: httpx.AsyncClient, org_a: Org, field: str
) -> None:
    low, high = BOUNDS[field]
    for good in (low, high):
        response = await client.patch("/v1/settings", json={field: good}, headers=org_a.headers())
        assert response.status_code == 200, response.text
        assert response.json()[field] == good
    for bad in (low - 1, high + 1):
        response = await client.patch("/v1/settings", json={field: bad}, headers=org_a.headers())
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["errors"][0]["field"] == field
        assert f"between {low} and {high}" in body["errors"][0]["message"]
        assert field in body["detail"]
    # the rejected values were not stored (nor clamped)
    current = (await client.get("/v1/settings", headers=org_a.headers())).json()
    assert current[field] == high


@pytest.mark.parametrize(
    "payload",
    [
        {"email_sync_history_days": "30"},
        {"email_sync_history_days": 30.5},
        {"email_tracking_enabled": "yes"},
        {"email_tracking_enabled": 1},
        {"email_custom_tracking_domain": "https://track.example.org/x"},
        {"email_custom_tracking_domain": "not a host"},
        {"email_custom_tracking_domain": 42},
        {"unknown_setting": 1},
    ],
)
async def test_wrong_types_and_unknown_fields_are_422(
    client: httpx.AsyncClient, org_a: Org, payload: dict
) -> None:
    response = await client.patch("/v1/settings", json=payload, headers=org_a.headers())
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == next(iter(payload))


async def test_patch_is_partial_and_null_resets_to_default(
    client: httpx.AsyncClient, org_a: Org
) -> None:
    headers = org_a.headers()
    r = await client.patch(
        "/v1/settings",
        json={"email_tracking_enabled": False, "email_custom_tracking_domain": "Track.Clinic.org."},
        headers=headers,
    )
    assert r.json()["email_tracking_enabled"] is False
    assert r.json()["email_custom_tracking_domain"] == "track.clinic.org"
    r = await client.patch("/v1/settings", json={"email_sync_history_days": 60}, headers=headers)
    assert r.json() == {
        **DEFAULTS,
        "email_tracking_enabled": False,
        "email_custom_tracking_domain": "track.clinic.org",
        "email_sync_history_days": 60,
    }
    r = await client.patch(
        "/v1/settings",
        json={"email_custom_tracking_domain": None, "email_tracking_enabled": None},
        headers=headers,
    )
    assert r.json() == {**DEFAULTS, "email_sync_history_days": 60}


async def test_only_admins_may_patch(client: httpx.AsyncClient, org_a: Org) -> None:
    response = await client.patch(
        "/v1/settings", json={"email_sync_history_days": 60}, headers=org_a.headers("member")
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    current = await client.get("/v1/settings", headers=org_a.headers("member"))
    assert current.json()["email_sync_history_days"] == 30


async def test_settings_are_per_org(client: httpx.AsyncClient, org_a: Org, org_b: Org) -> None:
    await client.patch(
        "/v1/settings", json={"email_sync_history_days": 80}, headers=org_a.headers()
    )
    assert (await client.get("/v1/settings", headers=org_b.headers())).json() == DEFAULTS
