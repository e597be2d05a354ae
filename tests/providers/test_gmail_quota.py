"""Gmail's per-user quota from configuration, and the driver pacing itself to it."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.providers.gmail import GmailProvider
from app.providers.gmail.quota import UserQuota
from tests.fixtures.providers import json_response, mock_client


class FakeClock:
    """A clock that only moves when the quota sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_quota_defaults_to_a_new_projects_and_is_configurable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GMAIL_USER_UNITS_PER_MINUTE", raising=False)
    assert Settings(_env_file=None).gmail_user_units_per_minute == 6000  # type: ignore[call-arg]
    monkeypatch.setenv("GMAIL_USER_UNITS_PER_MINUTE", "15000")
    assert Settings(_env_file=None).gmail_user_units_per_minute == 15000  # type: ignore[call-arg]


@pytest.mark.asyncio
async def test_spending_past_the_minutes_budget_waits_for_the_window() -> None:
    clock = FakeClock()
    quota = UserQuota(10, clock=clock, sleep=clock.sleep)
    await quota.spend(5)
    clock.now += 20
    await quota.spend(5)
    assert clock.sleeps == []
    await quota.spend(5)  # the first 5 leave the window 60 s after they were spent
    assert clock.sleeps == [40.0]
    await quota.spend(100)  # more than the whole budget: waits for an empty window
    assert clock.now - 1000.0 == pytest.approx(120.0)


@pytest.mark.asyncio
async def test_the_driver_paces_itself_to_the_configured_units(settings, tokens, policy) -> None:
    configured = settings.model_copy(update={"gmail_user_units_per_minute": 15000})
    client, recorder = mock_client(lambda r: json_response(200, {"historyId": "9"}))
    provider = GmailProvider(configured, tokens, client, policy)
    assert provider.quota.units_per_minute == 15000

    clock = FakeClock()
    provider.quota = UserQuota(12, clock=clock, sleep=clock.sleep)  # history.list: 2 units
    for _ in range(6):
        await provider.list_changes("1")
    assert clock.sleeps == []
    await provider.list_changes("1")
    assert clock.sleeps == [60.0]
    assert len(recorder.requests) == 7
    await client.aclose()
