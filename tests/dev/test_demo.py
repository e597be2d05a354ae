"""`ce-email demo` outside a terminal (a CI log, a pipe) and when a mailbox's sync fails."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app import cli, logs
from app.config import get_settings
from app.dev import demo as demo_module
from app.dev.demo import Demo, DemoFailed


def _status(
    state: str, processed: int = 0, phase: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "state": state,
        "phase": phase,
        "processed": processed,
        "estimate": 40,
        "started_at": None,
        "finished_at": None,
        "last_synced_at": None,
        "last_error": None,
        **extra,
    }


def _provider_api(statuses: dict[str, list[dict[str, Any]]]) -> httpx.AsyncClient:
    """GET /v1/accounts/{id}/sync answers each account's statuses in turn, then the last."""
    remaining = {account: iter(items) for account, items in statuses.items()}
    last: dict[str, dict[str, Any]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        account = request.url.path.split("/")[3]
        last[account] = next(remaining[account], last.get(account)) or statuses[account][-1]
        return httpx.Response(200, json=last[account])

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _syncing(account_phases: list[tuple[str, str | None, int]]) -> list[dict[str, Any]]:
    return [_status(state, processed, phase) for state, phase, processed in account_phases]


SYNCED = _status("idle", 40, None, last_synced_at="2026-01-01T00:00:00Z")


@pytest.mark.asyncio
async def test_without_a_terminal_the_progress_is_one_line_per_phase() -> None:
    gmail = [
        *_syncing([("queued", None, 0)] * 3),
        *_syncing([("running", "backfill:inbox", n) for n in range(0, 30, 3)]),
        *_syncing([("running", "backfill:sent", n) for n in range(30, 40, 2)]),
        SYNCED,
    ]
    outlook = [*_syncing([("running", "backfill:inbox", n) for n in range(0, 40, 5)]), SYNCED]
    out = io.StringIO()  # what a log or a pipe is: no TTY
    async with _provider_api({"gmail-id": gmail, "outlook-id": outlook}) as http:
        demo = Demo("http://demo.test", http, out)
        demo.poll_seconds = 0
        await demo.wait_synced({"gmail": "gmail-id", "outlook": "outlook-id"}, "token")

    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # gmail queued / inbox (outlook changes with it) / outlook done / gmail sent / gmail done
    assert len(lines) == 5, lines
    assert "queued" in lines[0]
    assert "gmail: [" in lines[-1]
    assert lines[-1].count("idle") == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.asyncio
async def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    statuses = _syncing([("running", "backfill:inbox", n) for n in range(0, 40, 10)])
    out = _Terminal()
    async with _provider_api({"g": [*statuses, SYNCED]}) as http:
        demo = Demo("http://demo.test", http, out)
        demo.poll_seconds = 0
        await demo.wait_synced({"gmail": "g"}, "token")
    assert out.getvalue().count("\r") == 5
    assert out.getvalue().count("\n") == 1


@pytest.mark.asyncio
async def test_a_failed_sync_stops_the_demo_with_the_accounts_error() -> None:
    error = "The provider refused the grant; connect the mailbox again."
    gmail = [_status("running", 3, "backfill:inbox"), _status("failed", 3, last_error=error)]
    out = io.StringIO()
    async with _provider_api({"g": gmail, "o": [SYNCED]}) as http:
        demo = Demo("http://demo.test", http, out)
        with pytest.raises(DemoFailed, match="the gmail sync failed: The provider refused"):
            await asyncio.wait_for(demo.wait_synced({"gmail": "g", "outlook": "o"}, "t"), 10)
    assert "failed" in out.getvalue().splitlines()[-1]


@pytest.fixture
def _database_url_set(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("CE_ENV", "development")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("_database_url_set")
def test_the_cli_exits_non_zero_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing_demo(*_args: object, **_kwargs: object) -> None:
        raise DemoFailed("the outlook sync failed: Internal error during sync")

    monkeypatch.setattr(demo_module, "run_demo", failing_demo)
    # the command configures the process's logging: leave pytest's capture in place
    monkeypatch.setattr(logs, "configure_logging", lambda _level: None)
    result = CliRunner().invoke(cli.cli, ["demo", "--exit"])
    assert result.exit_code == 2
    assert "error: the outlook sync failed: Internal error during sync" in result.output
