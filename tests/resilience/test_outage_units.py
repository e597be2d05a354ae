"""Units of the outage behaviour, without a database: the 503 mapping and the pixel
recorder's hold (tests/resilience/test_postgres_restart.py runs the whole thing)."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import asyncpg
import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.errors import database_unavailable, install_error_handlers
from app.observability.metrics import TRACKING_OPENS_DROPPED
from app.tracking.limiter import TrackingLimiter
from app.tracking.recorder import OpenRecorder


def _wrapped(driver_error: BaseException) -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, driver_error)


OUTAGES: list[BaseException] = [
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError(),
    _wrapped(asyncpg.CannotConnectNowError("the database system is starting up")),
    _wrapped(asyncpg.AdminShutdownError("terminating connection due to administrator command")),
    sqlalchemy.exc.InterfaceError("SELECT 1", {}, asyncpg.ConnectionDoesNotExistError("gone")),
    sqlalchemy.exc.TimeoutError("QueuePool limit reached"),
]


def _app(error: BaseException) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


@pytest.mark.asyncio
@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_a_database_outage_is_503_problem_json_with_retry_after(
    error: BaseException,
) -> None:
    transport = httpx.ASGITransport(app=_app(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["type"] == "/problems/unavailable"


@pytest.mark.asyncio
async def test_other_database_errors_stay_500() -> None:
    error = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert not database_unavailable(error)
    transport = httpx.ASGITransport(app=_app(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == 500


class _FlakyDatabase:
    """Stands in for OpenRecorder._write: unreachable until `up`, then records."""

    def __init__(self) -> None:
        self.up = False
        self.written: list[Any] = []

    async def write(self, org_id: uuid.UUID, opens: list[Any]) -> int:
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")
        self.written.extend(opens)
        return len(opens)


def _recorder(database: _FlakyDatabase, max_held: int = 1_000) -> OpenRecorder:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        tracking_rate_limit="100000/minute",
        tracking_token_rate_limit="100000/minute",
    )
    recorder = OpenRecorder(
        cast(AsyncEngine, None), "secret", TrackingLimiter(settings), 50, max_held=max_held
    )
    org = uuid.uuid4()
    recorder._verify = lambda token: (org, uuid.UUID(int=int(token)))  # type: ignore[method-assign]  # every token signed
    recorder._write = database.write  # type: ignore[method-assign]  # the flaky database
    return recorder


def _notes(first: int, count: int) -> list[tuple[str, str, str | None, float]]:
    return [
        (str(n), f"10.0.0.{n % 250}", "Mozilla/5.0", time.time())
        for n in range(first, first + count)
    ]


@pytest.mark.asyncio
async def test_opens_are_held_while_the_database_is_down_and_written_when_it_returns() -> None:
    database = _FlakyDatabase()
    recorder = _recorder(database)
    assert await recorder._record(_notes(1, 10)) == 0
    assert await recorder._record(_notes(11, 5)) == 0  # within the backoff: held, not tried
    assert recorder.held == 15
    database.up = True
    recorder._retry_at = 0.0  # the backoff is over
    assert await recorder.flush() == 15
    assert recorder.held == 0
    assert sorted(int(one[0].int) for one in database.written) == list(range(1, 16))


@pytest.mark.asyncio
async def test_past_the_bound_the_oldest_held_opens_are_dropped_and_counted() -> None:
    database = _FlakyDatabase()
    recorder = _recorder(database, max_held=8)
    dropped_before = TRACKING_OPENS_DROPPED._value.get()
    await recorder._record(_notes(1, 5))
    await recorder._record(_notes(6, 7))
    assert recorder.held == 8
    assert recorder.dropped == 4
    assert TRACKING_OPENS_DROPPED._value.get() - dropped_before == 4
    database.up = True
    await recorder.close()  # shutdown writes what is held, whatever the backoff
    assert sorted(int(one[0].int) for one in database.written) == list(range(5, 13))
