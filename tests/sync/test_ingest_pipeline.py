"""The pipelined ingest: several pages fetched at once, parsed while the previous page is
written, written in order. Each message is fetched and stored once, the cursor is saved
only after everything is stored, and a failure mid-pipeline keeps what was written (and no
cursor) so the next run finishes the job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.providers.errors import ProviderUnavailable
from app.providers.gmail.driver import GmailProvider
from app.providers.graph.driver import GraphProvider
from app.providers.http import message_fetches
from app.sync import repository as sync_repository
from app.sync.parse_pool import running_pool, shutdown_parse_pool
from app.sync.pipeline import FETCH_CHUNK, Listing, SyncRun
from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.database import account_row
from tests.fixtures.mailboxes import sandbox_messages, seed_many, stored_messages
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio

PROVIDERS = ["gmail", "outlook"]
DRIVERS = {"gmail": GmailProvider, "outlook": GraphProvider}
MESSAGES = 3 * FETCH_CHUNK + 10  # four pages, the last one short

GetMessages = Callable[..., Awaitable[list[Any]]]


async def _account(
    client: httpx.AsyncClient, make_org: MakeOrg, provider: str, count: int = MESSAGES
) -> tuple[Org, dict[str, Any], str]:
    org: Org = await make_org(f"Pipeline {provider}")
    mailbox = f"pipe-{uuid.uuid4().hex[:8]}@clinic-{provider}.test"
    await seed_many(client, provider, mailbox, count)
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    return org, account, mailbox


def _settings(app: FastAPI, monkeypatch: pytest.MonkeyPatch, **values: Any) -> None:
    ctx = app.state.ctx
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update=values))


async def _sync(app: FastAPI, org: Org, account: dict[str, Any]) -> None:
    await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]), reason="test")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_pages_overlap_yet_each_message_is_stored_once_before_the_cursor(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
) -> None:
    org, account, mailbox = await _account(client, make_org, provider)
    _settings(app, monkeypatch, sync_fetch_pipeline_depth=3)
    driver = DRIVERS[provider]
    original: GetMessages = driver.get_messages
    fetched: list[str] = []
    in_flight = peak = 0

    async def counting(self: Any, ids: Sequence[Any], folder: Any = None) -> list[Any]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.02)  # long enough for the next pages to start
            messages = await original(self, ids, folder)
        finally:
            in_flight -= 1
        fetched.extend(m.id for m in messages if m)
        return messages

    stored_when_saved: list[int] = []
    save_cursor = sync_repository.save_cursor

    async def watching(session: Any, account_id: Any, cursor: dict[str, Any]) -> None:
        stored_when_saved.append(len(await stored_messages(owner_engine, account["id"])))
        await save_cursor(session, account_id, cursor)

    monkeypatch.setattr(driver, "get_messages", counting)
    monkeypatch.setattr(sync_repository, "save_cursor", watching)
    await _sync(app, org, account)

    expected = sandbox_messages(app, provider, mailbox)
    assert len(expected) == MESSAGES
    assert await stored_messages(owner_engine, account["id"]) == expected
    assert sorted(fetched) == sorted(expected)  # one fetch per message, none twice
    assert peak == 3  # the pipeline depth, never more
    # every inbox message is stored before the first cursor is saved (Graph saves one
    # per folder, Gmail one at the end)
    assert stored_when_saved
    assert stored_when_saved[0] == MESSAGES
    assert (await account_row(owner_engine, account["id"]))["sync_cursor"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_fetch_failing_mid_pipeline_keeps_the_written_pages_and_no_cursor(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
) -> None:
    org, account, mailbox = await _account(client, make_org, provider)
    driver = DRIVERS[provider]
    original: GetMessages = driver.get_messages
    calls = 0

    async def failing_third(self: Any, ids: Sequence[Any], folder: Any = None) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ProviderUnavailable("down", provider=provider)
        return await original(self, ids, folder)

    with monkeypatch.context() as patch:
        patch.setattr(driver, "get_messages", failing_third)
        await _sync(app, org, account)

    partial = await stored_messages(owner_engine, account["id"])
    assert 0 < len(partial) < MESSAGES
    assert len(partial) % FETCH_CHUNK == 0  # whole pages: a page commits or not at all
    row = await account_row(owner_engine, account["id"])
    assert not row["sync_cursor"]
    assert row["sync_state"] == "queued"  # retried later, and it says so

    await _sync(app, org, account)
    assert await stored_messages(owner_engine, account["id"]) == sandbox_messages(
        app, provider, mailbox
    )


async def test_parsing_in_a_separate_process_stores_the_same(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org, account, mailbox = await _account(client, make_org, "gmail", count=FETCH_CHUNK + 5)
    _settings(app, monkeypatch, sync_parse_processes=1)
    try:
        await _sync(app, org, account)
        assert running_pool() is not None  # the pages really went through it
    finally:
        shutdown_parse_pool()
    assert await stored_messages(owner_engine, account["id"]) == sandbox_messages(
        app, "gmail", mailbox
    )


async def test_a_listing_streams_across_pages_repeats_fetch_once_deletions_wait(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    from datetime import UTC, datetime, timedelta

    from app.accounts import repository as accounts_repository
    from app.db.rls import org_transaction

    org, account, _ = await _account(client, make_org, "gmail", count=3)
    ctx = app.state.ctx
    account_id = uuid.UUID(account["id"])
    async with org_transaction(ctx.engine, org.id) as session:
        row = await accounts_repository.get_account(session, account_id)
    assert row is not None
    provider = ctx.account_provider("gmail", org.id, account_id)
    since = datetime.now(UTC) - timedelta(days=30)
    a, b, c = (await provider.list_messages("inbox", since, None)).added

    def run() -> SyncRun:
        return SyncRun(ctx, org.id, row, provider, since=since, body_limit_kb=500)

    async def listing(*pages: tuple[list[Any], list[str]]) -> Listing:
        for page in pages:
            yield page

    # The second page is listed (and its ids checked against the database) as soon as
    # the first page's fetch starts, so before that page is written: b is not known yet.
    # a is deleted once it is stored.
    fetches = message_fetches("gmail")
    await run().ingest(listing(([a, b], []), ([b, c], []), ([], [a.id])), phase="test")
    assert set(await stored_messages(owner_engine, account["id"])) == {b.id, c.id}
    assert message_fetches("gmail") - fetches == 3  # a, b, c: b once
    # a listed again after its deletion comes back
    await run().ingest(listing(([a], [])), phase="test")
    assert set(await stored_messages(owner_engine, account["id"])) == {a.id, b.id, c.id}
    assert message_fetches("gmail") - fetches == 4
