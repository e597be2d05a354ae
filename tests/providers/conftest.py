"""Fixtures for provider client tests (built from tests/fixtures/providers.py)."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.providers.http import RetryPolicy, reset_call_counts
from tests.fixtures.providers import FakeTokenSource, RecordingSleep


@pytest.fixture(autouse=True)
def _reset_counts() -> None:
    reset_call_counts()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        provider_max_attempts=4,
        provider_max_backoff_seconds=10.0,
        provider_base_backoff_seconds=0.5,
        provider_timeout_seconds=5.0,
    )


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def policy(settings: Settings, sleep: RecordingSleep) -> RetryPolicy:
    return RetryPolicy.from_settings(settings, sleep=sleep, rand=lambda: 0.5)


@pytest.fixture
def tokens() -> FakeTokenSource:
    return FakeTokenSource()
