"""Shared fixtures: one migrated PostgreSQL database per test run, the app, orgs and tokens.

The database is real (DATABASE_URL, or the embedded server when unset): tests build it with
the migrations, so RLS, grants and triggers are exercised as in production.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.db.migrate import run_migrations
from app.db.urls import app_url, ensure_database_url, owner_url
from app.dev import fixtures


def _create_database(base: Settings, name: str) -> Settings:
    admin = create_engine(owner_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(str(base.database_url)).set(database=name)
    return base.model_copy(update={"database_url": url.render_as_string(hide_password=False)})


def _drop_database(base: Settings, name: str) -> None:
    admin = create_engine(owner_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
    name = f"ce_email_test_{uuid.uuid4().hex[:10]}"
    settings = _create_database(base_settings, name)
    run_migrations(settings)
    yield settings
    _drop_database(base_settings, name)


@pytest_asyncio.fixture(scope="session")
async def owner_engine(test_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(owner_url(test_settings, "asyncpg"))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def app_engine(test_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Connected as ce_app, the way the service connects: subject to RLS."""
    engine = create_async_engine(app_url(test_settings))
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


class Org(dict[str, Any]):
    """`ce-email dev seed-org` output, with helpers for headers."""

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self["org_id"])

    def headers(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self[who]['token']}"}


@pytest_asyncio.fixture
async def make_org(owner_engine: AsyncEngine, test_settings: Settings) -> Any:
    async def _make(name: str = "Clinic") -> Org:
        return Org(await fixtures.seed_org(owner_engine, test_settings, name))

    return _make


@pytest_asyncio.fixture
async def org_a(make_org: Any) -> Org:
    return await make_org("Org A")


@pytest_asyncio.fixture
async def org_b(make_org: Any) -> Org:
    return await make_org("Org B")


def sandbox_of(application: FastAPI) -> Any:
    """The in-process sandbox's state (mounted under /_sandbox when CE_SANDBOX=1)."""
    for route in application.routes:
        if getattr(route, "path", None) == "/_sandbox":
            return route.app.state.sandbox  # type: ignore[attr-defined]
    raise LookupError("sandbox not mounted")
