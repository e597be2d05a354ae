"""The pytest fixtures every folder shares: one migrated PostgreSQL database per test run,
the app, orgs and tokens. What they are built from lives in tests/fixtures/.

The database is real (DATABASE_URL, or the embedded server when unset): tests build it with
the migrations, so RLS, grants and triggers are exercised as in production.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.migrate import run_migrations
from app.db.urls import ensure_database_url
from tests.fixtures.database import app_engine_for, owner_engine_for, throwaway_database
from tests.fixtures.orgs import MakeOrg, Org, org_factory


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for tests: dev defaults, isolated document storage, no .env influence."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        ce_env="test",
        ce_sandbox=True,
        database_url=os.environ.get("DATABASE_URL") or None,
        document_storage_dir=str(tmp_path_factory.mktemp("documents")),
        public_base_url="http://127.0.0.1:8000",
        frontend_origins="http://localhost:3000,https://crm.example.org",
        tracking_flush_ms=0,  # opens written before the pixel answers: tests assert at once
    ).with_sandbox_urls()
    return ensure_database_url(settings)


@pytest.fixture(scope="session")
def test_settings(base_settings: Settings) -> Iterator[Settings]:
    with throwaway_database(base_settings, "ce_email_test") as settings:
        run_migrations(settings)
        yield settings


@pytest_asyncio.fixture(scope="session")
async def owner_engine(test_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = owner_engine_for(test_settings)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def app_engine(test_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Connected as ce_app, the way the service connects: subject to RLS."""
    engine = app_engine_for(test_settings)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def app(test_settings: Settings) -> AsyncIterator[FastAPI]:
    from app.main import create_app

    application = create_app(test_settings)
    # Provider calls and sandbox pushes go into the app itself, over HTTP semantics.
    application.state.http_transport = httpx.ASGITransport(app=application)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest_asyncio.fixture
async def make_org(owner_engine: AsyncEngine, test_settings: Settings) -> MakeOrg:
    return org_factory(owner_engine, test_settings)


@pytest_asyncio.fixture
async def org_a(make_org: MakeOrg) -> Org:
    return await make_org("Org A")


@pytest_asyncio.fixture
async def org_b(make_org: MakeOrg) -> Org:
    return await make_org("Org B")
