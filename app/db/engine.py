"""Engines: the app's (ce_app, subject to RLS) and, for tooling, the owner's."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.db.urls import app_url

CONNECT_TIMEOUT_SECONDS = 5.0
"""A connection attempt to a PostgreSQL that does not answer fails after this (asyncpg)."""
POOL_TIMEOUT_SECONDS = 10.0
"""A request waits at most this for a pooled connection before failing (503)."""
COMMAND_TIMEOUT_SECONDS = 120.0
"""A statement whose answer never comes (a server gone without closing the socket) fails
after this: long enough for the heaviest page write, short of holding a request forever."""


@dataclass
class Database:
    engine: AsyncEngine

    async def ping(self) -> None:
        """Raises when the database does not answer (readiness)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(settings: Settings) -> Database:
    engine = create_async_engine(
        app_url(settings),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={
            "timeout": CONNECT_TIMEOUT_SECONDS,
            "command_timeout": COMMAND_TIMEOUT_SECONDS,
        },
    )
    return Database(engine=engine)
