from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from app.config import Settings
from app.sandbox_mount import standalone_sandbox_app
from sandbox import SandboxState
from tests.fixtures.standalone_sandbox import BASE_URL, FakeClock, PushReceiver, Sandbox


@pytest.fixture
def settings() -> Settings:
    return Settings(ce_sandbox=True).with_sandbox_urls()


@pytest_asyncio.fixture
async def sandbox(settings: Settings) -> AsyncIterator[Sandbox]:
    clock = FakeClock()
    receiver = PushReceiver()
    state = SandboxState(push_client_factory=receiver.client, clock=clock)
    app = standalone_sandbox_app(settings, state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield Sandbox(client, state, settings, clock, receiver)
        await state.drain_pushes()
