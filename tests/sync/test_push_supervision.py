"""Supervised push and adaptive polling (issue 12): a push that stops delivering is noticed
by the next poll, re-armed, and its mailbox polled at the minimum interval until a
notification arrives again; the `push` status says which of active/silent/expired/off."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction, system_transaction
from app.jobs.runtime import RUNTIME
from app.jobs.worker import run_worker
from app.observability.metrics import REGISTRY
from app.sync import jobs, repository
from app.sync.service import enqueue_sync
from tests.fixtures.accounts import connect
from tests.fixtures.database import account_row
from tests.fixtures.mail import make_raw
from tests.fixtures.mailboxes import sandbox_messages, sandbox_of, seed, seed_many, stored_messages
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio

MIN_INTERVAL = 2  # seconds: the test's minimum polling interval
ORG_INTERVAL = 15 * 60  # the org's email_sync_interval_minutes (default 15)


@pytest.fixture
def fast_supervision(app: FastAPI) -> Iterator[None]:
    """Periods a test can wait out: no grace, a 2-second minimum polling interval."""
    ctx = app.state.ctx
    original = ctx.settings
    ctx.settings = original.model_copy(
        update={
            "push_grace_seconds": 0,
            "push_quiet_period_seconds": 3600,
            "poll_min_interval_seconds": MIN_INTERVAL,
        }
    )
    RUNTIME.ctx = ctx
    yield
    ctx.settings = original


async def _run_sync_jobs(app: FastAPI) -> None:
    await sandbox_of(app).drain_pushes()
    await run_worker(
        app.state.settings,
        app.state.ctx,
        wait=False,
        install_signal_handlers=False,
        queues=["sync"],
    )


def _show(line: str) -> None:
    """A step of the demonstration, displayed by `pytest -s`."""
    print(line)  # noqa: T201 - the Must-show run prints the states it goes through


async def _push(
    client: httpx.AsyncClient, org: Org, account_id: str, show: str | None = None
) -> dict[str, Any]:
    """The `push` part of the sync status; `show`: print it (`pytest -s` displays it)."""
    r = await client.get(f"/v1/accounts/{account_id}/sync", headers=org.headers())
    assert r.status_code == 200, r.text
    push = r.json()["push"]
    assert isinstance(push, dict)
    if show:
        _show(f"{show}: push = {push}")
    return push


async def _set(owner_engine: AsyncEngine, account_id: str, assignments: str) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE ce_email_accounts SET {assignments} WHERE id = :a"), {"a": account_id}
        )


async def _due(app: FastAPI, owner_engine: AsyncEngine, account_id: str, ago: str) -> bool:
    """Whether the poller would sync the account if its last sync was `ago`."""
    await _set(owner_engine, account_id, f"last_synced_at = now() - interval '{ago}'")
    ctx = app.state.ctx
    async with system_transaction(ctx.engine) as session:
        due = await repository.accounts_due_for_sync(
            session, 100_000, ctx.settings.poll_min_interval_seconds
        )
    return uuid.UUID(account_id) in {ref.account_id for ref in due}


async def _poll(app: FastAPI, owner_engine: AsyncEngine, org: Org, account_id: str) -> None:
    """What the poller does once the account is due: a sync whose reason is `poll`."""
    assert await _due(app, owner_engine, account_id, "1 hour")
    async with org_transaction(app.state.ctx.engine, org.id) as session:
        await enqueue_sync(session, org.id, uuid.UUID(account_id), reason="poll")
    await _run_sync_jobs(app)


def _channel_at_sandbox(app: FastAPI, provider: str, mailbox: str) -> object:
    """What the sandbox holds as the mailbox's push registration (a new object per watch
    call; a Graph subscription's id)."""
    state = sandbox_of(app)
    if provider == "gmail":
        return state.gmail.mailboxes[mailbox].watch
    subscriptions = [s.id for s in state.outlook.subscriptions.values() if s.mailbox == mailbox]
    return tuple(subscriptions)


def _rearmed_metric(provider: str) -> float:
    return REGISTRY.get_sample_value("ce_email_push_rearmed_total", {"provider": provider}) or 0.0


async def _drop_pushes(client: httpx.AsyncClient, provider: str, mailbox: str, count: int) -> None:
    r = await client.post(
        f"/_sandbox/{provider}/faults",
        json={"kind": "drop_push", "count": count, "mailbox": mailbox},
    )
    assert r.status_code == 201, r.text


async def _sync_jobs_waiting(owner_engine: AsyncEngine, account_id: str) -> int:
    async with owner_engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM procrastinate_jobs WHERE args->>'account_id' = :a "
                        "AND status = 'todo' AND task_name = 'ce:sync_account'"
                    ),
                    {"a": account_id},
                )
            ).scalar_one()
        )


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_dropped_push_is_noticed_rearmed_polled_fast_then_active_again(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    fast_supervision: None,
    provider: str,
) -> None:
    org: Org = await make_org("Push supervision")
    mailbox = f"sup-{uuid.uuid4().hex[:6]}@{provider}.test"
    await seed_many(client, provider, mailbox, 2)
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    account_id = account["id"]
    await _run_sync_jobs(app)
    push = await _push(client, org, account_id, f"{provider} after the first sync")
    assert push["state"] == "active"
    assert push["rearmed"] == 0
    assert push["expires_at"]
    assert push["poll_interval_seconds"] == ORG_INTERVAL
    assert not await _due(app, owner_engine, account_id, "10 seconds"), "healthy push: 15 min"
    registered = _channel_at_sandbox(app, provider, mailbox)
    assert registered

    # The provider stops delivering: new mail, no notification, nothing queued. (A second
    # later than the registration: Graph's receivedDateTime has whole seconds.)
    await asyncio.sleep(1.1)
    await _drop_pushes(client, provider, mailbox, 1)
    await seed_many(client, provider, mailbox, 1)
    await sandbox_of(app).drain_pushes()
    assert await _sync_jobs_waiting(owner_engine, account_id) == 0
    rearmed_before = _rearmed_metric(provider)

    # The poll finds the mail push should have announced: silent, re-armed, polled fast.
    await _poll(app, owner_engine, org, account_id)
    assert await stored_messages(owner_engine, account_id) == sandbox_messages(
        app, provider, mailbox
    )
    push = await _push(client, org, account_id, f"{provider} after a poll found unannounced mail")
    assert push["state"] == "silent"
    assert push["rearmed"] == 1
    assert push["last_notification_at"] is None
    assert push["poll_interval_seconds"] == MIN_INTERVAL
    assert _rearmed_metric(provider) == rearmed_before + 1
    _show(f"{provider} rearmed metric: {rearmed_before} -> {_rearmed_metric(provider)}")
    rearmed_channel = _channel_at_sandbox(app, provider, mailbox)
    assert rearmed_channel
    assert rearmed_channel is not registered
    assert rearmed_channel != registered, "the sandbox saw a new watch/subscription"
    _show(f"{provider} sandbox registration: {registered!r} -> {rearmed_channel!r}")
    row = await account_row(owner_engine, account_id)
    if provider == "outlook":
        # the silent subscription was deleted, the new one is the one we listen for
        assert rearmed_channel == (row["push_channel_id"],)
    assert await _due(app, owner_engine, account_id, f"{MIN_INTERVAL + 3} seconds")
    _show(f"{provider} silent: due for a poll {MIN_INTERVAL + 3} s after the last sync")

    # Pushes flow again (the fault is used up): the next notification makes it active.
    await seed_many(client, provider, mailbox, 1)
    await sandbox_of(app).drain_pushes()
    push = await _push(client, org, account_id, f"{provider} after a notification arrived")
    assert push["state"] == "active"
    assert push["rearmed"] == 1
    assert push["last_notification_at"]
    assert push["poll_interval_seconds"] == ORG_INTERVAL
    assert not await _due(app, owner_engine, account_id, f"{MIN_INTERVAL + 3} seconds")
    _show(f"{provider} active: not due {MIN_INTERVAL + 3} s after the last sync")
    await _run_sync_jobs(app)
    assert await stored_messages(owner_engine, account_id) == sandbox_messages(
        app, provider, mailbox
    )
    assert (await _push(client, org, account_id))["state"] == "active"


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_off_expired_renewal_and_idle_backoff(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    fast_supervision: None,
    provider: str,
) -> None:
    org: Org = await make_org("Push states")
    mailbox = f"states-{uuid.uuid4().hex[:6]}@{provider}.test"
    await seed_many(client, provider, mailbox, 1)
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    account_id = account["id"]

    # Nothing registered before the first sync: off, polled at the minimum.
    push = await _push(client, org, account_id)
    assert push == {
        "state": "off",
        "expires_at": None,
        "last_notification_at": None,
        "rearmed": 0,
        "poll_interval_seconds": MIN_INTERVAL,
    }
    await _run_sync_jobs(app)
    assert (await _push(client, org, account_id))["state"] == "active"

    # Past the expiry the provider returned: expired, polled at the minimum while mail
    # comes in; an idle mailbox backs off to the org's interval, never beyond.
    await _set(owner_engine, account_id, "push_expires_at = now() - interval '1 minute'")
    push = await _push(client, org, account_id)
    assert push["state"] == "expired"
    assert push["poll_interval_seconds"] == MIN_INTERVAL
    assert await _due(app, owner_engine, account_id, f"{MIN_INTERVAL + 3} seconds")
    await _set(owner_engine, account_id, "last_mail_at = now() - interval '20 seconds'")
    assert MIN_INTERVAL < (await _push(client, org, account_id))["poll_interval_seconds"] <= 6
    await _set(owner_engine, account_id, "last_mail_at = now() - interval '2 hours'")
    assert (await _push(client, org, account_id))["poll_interval_seconds"] == ORG_INTERVAL
    await _set(owner_engine, account_id, "last_mail_at = now() - interval '30 days'")
    assert (await _push(client, org, account_id))["poll_interval_seconds"] == ORG_INTERVAL

    async def renewal_due() -> bool:
        async with system_transaction(app.state.ctx.engine) as session:
            rows = await repository.accounts_push_renewal_due(session, 100_000)
        return uuid.UUID(account_id) in {r.account_id for r in rows}

    assert await renewal_due()
    # Renewal follows the lifetime the provider granted: an 80-minute channel is renewed
    # in its last 40 minutes, a 3-hour one not 2 hours before expiry.
    await _set(
        owner_engine,
        account_id,
        "push_registered_at = now() - interval '1 hour', "
        "push_expires_at = now() + interval '20 minutes'",
    )
    assert await renewal_due()
    await _set(owner_engine, account_id, "push_expires_at = now() + interval '2 hours'")
    assert not await renewal_due()

    # A channel due for renewal is renewed by the next sync, with the provider's expiry,
    # in place: Graph's subscription is extended, not joined by a second one.
    before = _channel_at_sandbox(app, provider, mailbox)
    await _set(owner_engine, account_id, "push_expires_at = now() - interval '1 minute'")
    await _poll(app, owner_engine, org, account_id)
    if provider == "outlook":
        assert _channel_at_sandbox(app, provider, mailbox) == before
        assert len(before) == 1  # type: ignore[arg-type]
    push = await _push(client, org, account_id)
    assert push["state"] == "active"
    assert datetime.fromisoformat(push["expires_at"]) > datetime.now(
        datetime.fromisoformat(push["expires_at"]).tzinfo
    ) + timedelta(hours=1)


async def test_a_gmail_burst_with_one_notification_is_not_silence(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    fast_supervision: None,
) -> None:
    org: Org = await make_org("Burst")
    mailbox = f"burst-{uuid.uuid4().hex[:6]}@gmail.test"
    await seed_many(client, "gmail", mailbox, 1)
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    account_id = account["id"]
    await _run_sync_jobs(app)

    # Five messages, one notification (for the last): all five are announced by it.
    await _drop_pushes(client, "gmail", mailbox, 4)
    await seed_many(client, "gmail", mailbox, 5)
    await _run_sync_jobs(app)
    await _poll(app, owner_engine, org, account_id)
    push = await _push(client, org, account_id)
    assert push["state"] == "active"
    assert push["rearmed"] == 0

    # One notification, then mail within the same second whose notifications Gmail drops
    # (at most one per second per user): still not silence.
    await seed_many(client, "gmail", mailbox, 1)
    await sandbox_of(app).drain_pushes()
    notified = (await account_row(owner_engine, account_id))["push_last_notification_at"]
    await _drop_pushes(client, "gmail", mailbox, 3)
    for i in range(3):
        raw = make_raw("burst@hospital.org", mailbox, f"Burst {i}")
        await seed(client, "gmail", mailbox, raw, received_at=notified + timedelta(seconds=0.5))
    await asyncio.sleep(0.6)  # their arrival is in the past when the syncs look
    await _run_sync_jobs(app)
    await _poll(app, owner_engine, org, account_id)
    assert await stored_messages(owner_engine, account_id) == sandbox_messages(
        app, "gmail", mailbox
    )
    push = await _push(client, org, account_id)
    assert push["state"] == "active"
    assert push["rearmed"] == 0


async def test_mail_too_young_to_judge_then_a_quiet_period_makes_push_silent(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    fast_supervision: None,
) -> None:
    ctx = app.state.ctx
    ctx.settings = ctx.settings.model_copy(
        update={"push_grace_seconds": 2, "push_quiet_period_seconds": 1}
    )
    org: Org = await make_org("Quiet")
    mailbox = f"quiet-{uuid.uuid4().hex[:6]}@gmail.test"
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    account_id = account["id"]
    await _run_sync_jobs(app)
    await asyncio.sleep(2.1)  # past the registration's grace
    await _drop_pushes(client, "gmail", mailbox, 1)
    await seed_many(client, "gmail", mailbox, 1)

    # Stored by a poll before its notification could have come (the grace): no verdict.
    await _poll(app, owner_engine, org, account_id)
    assert len(await stored_messages(owner_engine, account_id)) == 1
    assert (await _push(client, org, account_id))["state"] == "active"

    # Later, with no notification through the quiet period while that mail arrived, the
    # next poll (which stores nothing new) finds push silent.
    await asyncio.sleep(2.1)
    await _poll(app, owner_engine, org, account_id)
    push = await _push(client, org, account_id)
    assert push["state"] == "silent"
    assert push["rearmed"] == 1


async def test_the_poller_looks_again_every_tick_within_its_minute(
    app: FastAPI, fast_supervision: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = app.state.ctx
    ctx.settings = ctx.settings.model_copy(update={"poll_tick_seconds": 20})
    passes: list[int] = []
    waits: list[float] = []

    async def poll_once(min_interval_seconds: int) -> None:
        passes.append(min_interval_seconds)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(jobs, "_poll_once", poll_once)
    # only the job module's asyncio: the app's other tasks keep the real sleep
    monkeypatch.setattr(jobs, "asyncio", SimpleNamespace(sleep=sleep))
    await jobs.poll_due_accounts.func(timestamp=0)
    assert passes == [MIN_INTERVAL] * 3
    assert waits == [20, 20]
    passes.clear()
    ctx.settings = ctx.settings.model_copy(update={"poll_tick_seconds": 60})
    await jobs.poll_due_accounts.func(timestamp=0)
    assert passes == [MIN_INTERVAL]
