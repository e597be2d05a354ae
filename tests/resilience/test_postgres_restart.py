"""A PostgreSQL restart under load loses nothing (issue 12, item 6).

The test runs its own PostgreSQL (Debian's initdb/pg_ctl, as the `postgres` OS user when
run as root, else pgserver's binaries) in a temp dir on a free port, never the machine's
shared server, and the service as `make run` does: `ce-email serve --with-worker` with the
sandbox in-process. With a 3,000-message sync running, 10 sends queued and the pixel
hammered, PostgreSQL stops (`pg_ctl stop -m fast`) for 10 s and starts again. Meanwhile
every API call answers 503 problem+json with Retry-After, /readyz 503, the pixel its GIF.
Afterwards, with no restart of the service: every message stored once, every send sent
once, every served pixel's open recorded, the account not left `running`.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.db.migrate import run_migrations
from app.db.urls import owner_url
from app.dev import fixtures
from app.tracking.tokens import make_token

# util-linux installs runuser in /usr/sbin, which a bare PATH (/usr/bin:/bin) leaves out.
RUNUSER = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")

ROOT = Path(__file__).resolve().parents[2]
MAILBOX = "restart.box@riverside-clinic.test"
FRONTEND = "http://localhost:3000"
SECRET = "restart-test-tracking-secret-0123456789abcdef"
SYNCED = 3_000
QUEUED_SENDS = 10
TRACKED_SENDS = 3
OUTAGE_SECONDS = 10.0
CLIENT_TIMEOUT = 10.0
SETTLE_SECONDS = 75.0


def say(line: str) -> None:
    """The counts before and after, on the test's output (pytest -s shows them)."""
    sys.stdout.write(line + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin() -> Path | None:
    """Debian's server binaries (highest version), else pgserver's embedded ones."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if debian:
        return Path(debian[-1]).parent
    with contextlib.suppress(ImportError):
        import pgserver  # type: ignore[import-untyped]  # no type information shipped

        embedded = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (embedded / "pg_ctl").exists():
            return embedded
    return None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


@dataclass
class PrivatePostgres:
    """A throw-away cluster this test starts and stops itself."""

    bindir: Path
    root: Path
    port: int
    as_postgres: bool

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:  # pg_ctl and initdb refuse root
            command = [RUNUSER or "runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin nor pgserver)")
    as_postgres = os.geteuid() == 0
    if as_postgres and RUNUSER is None:
        pytest.skip("running as root without runuser: pg_ctl cannot be run as postgres")
    root = Path(tempfile.mkdtemp(prefix="ce-pg-restart-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(bindir, root, _free_port(), as_postgres)
    server.init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Service:
    base: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def service(
    private_postgres: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    settings = Settings(_env_file=None, database_url=private_postgres.url)  # type: ignore[call-arg]
    run_migrations(settings)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CE_", "APP_DATABASE"))},
        "DATABASE_URL": private_postgres.url,
        "CE_ENV": "development",
        "CE_SANDBOX": "1",
        "PUBLIC_BASE_URL": base,
        "FRONTEND_ORIGINS": FRONTEND,
        "TRACKING_TOKEN_SECRET": SECRET,
        "TRACKING_RATE_LIMIT": "10000000/minute",  # every hit is recorded (as in bench/)
        "TRACKING_TOKEN_RATE_LIMIT": "10000000/minute",
        "LOG_LEVEL": "INFO",
        # A minute's budget of 9,000 units covers 1,800 of the backfill's 3,000 messages
        # (5 units each): the rest waits for the window, so the sync is still running when
        # PostgreSQL stops, however fast the machine (unpaced, a quiet machine finished it
        # before the stop). The retry after the outage starts with a fresh budget.
        "GMAIL_USER_UNITS_PER_MINUTE": "9000",
        "SANDBOX_GMAIL_UNITS_PER_MINUTE": "100000",
        "DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }
    log = tmp_path_factory.mktemp("service") / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--with-worker", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield Service(base, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest_asyncio.fixture
async def owner(private_postgres: PrivatePostgres) -> AsyncIterator[AsyncEngine]:
    settings = Settings(_env_file=None, database_url=private_postgres.url)  # type: ignore[call-arg]
    engine = create_async_engine(owner_url(settings, "asyncpg"), pool_pre_ping=True)
    yield engine
    await engine.dispose()


def _mail(number: int) -> str:
    msg = EmailMessage()
    msg["From"] = f"Patient {number} <patient{number}@example.net>"
    msg["To"] = MAILBOX
    msg["Subject"] = f"Message {number}"
    msg["Date"] = format_datetime(datetime.now(UTC) - timedelta(hours=1))
    msg["Message-ID"] = make_msgid(domain="restart.example")
    msg.set_content(f"Body of message {number}.\n" * 20)
    return msg.as_string()


@dataclass
class Outage:
    """What the clients saw while PostgreSQL was down."""

    api: list[tuple[str, int, str, str | None, float]] = field(default_factory=list)
    pixels_served: int = 0
    pixels_bad: int = 0
    slowest_pixel: float = 0.0


async def _connect(http: httpx.AsyncClient, base: str, token: str) -> str:
    auth = {"Authorization": f"Bearer {token}"}
    r = await http.get(
        f"{base}/v1/oauth/gmail/authorize",
        params={"return_to": f"{FRONTEND}/settings/email", "login_hint": MAILBOX},
        headers=auth,
    )
    r.raise_for_status()
    consent = await http.get(r.json()["authorization_url"])
    callback = await http.get(consent.headers["location"])
    params = parse_qs(urlsplit(callback.headers["location"]).query)
    return params["account_id"][0]


async def _send(
    http: httpx.AsyncClient, base: str, token: str, account_id: str, subject: str
) -> str:
    r = await http.post(
        f"{base}/v1/emails",
        json={
            "account_id": account_id,
            "to": ["pat.smith@example.net"],
            "subject": subject,
            "html": f"<p>{subject}</p>",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _counts(owner: AsyncEngine, account_id: str) -> dict[str, Any]:
    async with owner.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT "
                    "(SELECT count(*) FROM ce_emails WHERE account_id = :a "
                    " AND direction = 'inbound'), "
                    "(SELECT count(DISTINCT provider_message_id) FROM ce_emails "
                    " WHERE account_id = :a AND direction = 'inbound'), "
                    "(SELECT count(*) FROM ce_emails WHERE account_id = :a "
                    " AND direction = 'outbound' AND status = 'sent'), "
                    "(SELECT count(*) FROM ce_email_tracking_events WHERE type = 'opened'), "
                    "(SELECT sync_state FROM ce_email_accounts WHERE id = :a)"
                ),
                {"a": uuid.UUID(account_id)},
            )
        ).one()
    return {
        "stored": row[0],
        "distinct_provider_ids": row[1],
        "sent": row[2],
        "opens": row[3],
        "sync_state": row[4],
    }


async def _sends_due_now(owner: AsyncEngine) -> None:
    """A send whose attempt was cut by the outage is uncertain: it is retried after the
    Sent-folder grace (minutes, app/send/runner.py), then looks in Sent before sending.
    The test brings that retry forward instead of waiting the grace out."""
    async with owner.begin() as conn:
        await conn.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE task_name = 'ce:send_email' AND status = 'todo' AND scheduled_at > now()"
            )
        )


async def _hammer(base: str, tokens: list[str], stop: asyncio.Event, seen: Outage) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
        number = 0
        while not stop.is_set():
            number += 1
            started = time.monotonic()
            r = await http.get(f"{base}/t/o/{tokens[number % len(tokens)]}")
            seen.slowest_pixel = max(seen.slowest_pixel, time.monotonic() - started)
            if r.status_code == 200 and r.headers["content-type"] == "image/gif":
                seen.pixels_served += 1
            else:
                seen.pixels_bad += 1


async def _probe_api(
    http: httpx.AsyncClient, base: str, token: str, account_id: str, email_id: str, seen: Outage
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    calls = [
        ("GET", "/readyz", None),
        ("GET", f"/v1/accounts/{account_id}/sync", None),
        ("GET", "/v1/accounts", None),
        ("GET", f"/v1/emails/{email_id}", None),
        ("GET", "/v1/emails", None),
        ("POST", f"/v1/accounts/{account_id}/sync", None),
        (
            "POST",
            "/v1/emails",
            {"account_id": account_id, "to": ["x@example.net"], "subject": "during outage"},
        ),
    ]
    for method, path, body in calls:
        started = time.monotonic()
        r = await http.request(method, f"{base}{path}", json=body, headers=auth)
        seen.api.append(
            (
                f"{method} {path.replace(account_id, '{id}').replace(email_id, '{id}')}",
                r.status_code,
                r.headers.get("content-type", ""),
                r.headers.get("retry-after"),
                time.monotonic() - started,
            )
        )


@pytest.mark.asyncio
async def test_a_postgres_restart_under_load_loses_nothing(
    private_postgres: PrivatePostgres, service: Service, owner: AsyncEngine
) -> None:
    base = service.base
    org = await fixtures.seed_org(
        owner,
        Settings(_env_file=None, database_url=private_postgres.url),
        "Restart Clinic",  # type: ignore[call-arg]
    )
    token, org_id = org["admin"]["token"], uuid.UUID(org["org_id"])
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
        r = await http.post(
            f"{base}/_sandbox/gmail/mailboxes/{MAILBOX}/messages:bulk",
            json={"messages": [{"raw": _mail(n), "folder": "inbox"} for n in range(SYNCED)]},
        )
        assert r.status_code == 201, r.text
        account_id = await _connect(http, base, token)

        # three tracked emails sent first: their pixels are what the load fetches
        tracked = [
            await _send(http, base, token, account_id, f"Tracked {n}") for n in range(TRACKED_SENDS)
        ]
        deadline = time.monotonic() + 30
        while (await _counts(owner, account_id))["sent"] < TRACKED_SENDS:
            assert time.monotonic() < deadline, "the tracked sends did not go out"
            await asyncio.sleep(0.2)
        pixel_tokens = [make_token(SECRET, "o", org_id, uuid.UUID(e)) for e in tracked]

        seen = Outage()
        stop_hammer = asyncio.Event()
        hammer = [
            asyncio.create_task(_hammer(base, pixel_tokens, stop_hammer, seen)) for _ in range(8)
        ]
        await asyncio.sleep(1.0)
        # provider calls slowed down, so that sends are in flight when PostgreSQL stops:
        # the provider takes them, but their outcome cannot be written
        r = await http.post(
            f"{base}/_sandbox/gmail/faults",
            json={"kind": "slow", "count": 6, "seconds": 1.5, "mailbox": MAILBOX},
        )
        assert r.status_code < 300, r.text
        queued = [
            await _send(http, base, token, account_id, f"Queued {n}") for n in range(QUEUED_SENDS)
        ]
        await asyncio.sleep(0.5)
        before = await _counts(owner, account_id)
        status = (
            await http.get(
                f"{base}/v1/accounts/{account_id}/sync",
                headers={"Authorization": f"Bearer {token}"},
            )
        ).json()
        say(
            f"\nbefore the stop: {before}, sync {status['state']} {status['processed']}/"
            f"{status['estimate']}, pixels served {seen.pixels_served}"
        )
        assert before["sync_state"] == "running", "the sync should be running at the stop"
        assert before["stored"] < SYNCED

        await asyncio.to_thread(private_postgres.stop)
        stopped_at = time.monotonic()
        served_at_stop = seen.pixels_served
        while time.monotonic() - stopped_at < OUTAGE_SECONDS:
            await _probe_api(http, base, token, account_id, queued[0], seen)
            await asyncio.sleep(0.5)
        served_during = seen.pixels_served - served_at_stop
        await asyncio.to_thread(private_postgres.start)
        await asyncio.sleep(1.0)
        stop_hammer.set()
        await asyncio.gather(*hammer)
        say(
            f"outage: {len(seen.api)} API calls, statuses "
            f"{sorted({status for _, status, *_ in seen.api})}, slowest "
            f"{max(d for *_, d in seen.api):.2f}s; pixels served during it {served_during}, "
            f"in all {seen.pixels_served} (bad {seen.pixels_bad}), slowest "
            f"{seen.slowest_pixel:.2f}s"
        )

        for call, code, content_type, retry_after, duration in seen.api:
            assert code == 503, (call, code)
            assert content_type.startswith("application/problem+json"), (call, content_type)
            assert retry_after is not None, call
            assert int(retry_after) > 0, call
            assert duration < CLIENT_TIMEOUT, (call, duration)
        assert any(call == "GET /readyz" for call, *_ in seen.api)
        assert seen.pixels_bad == 0
        assert served_during > 0
        assert seen.slowest_pixel < CLIENT_TIMEOUT

        # settle: no restart of the service, only time
        deadline = time.monotonic() + SETTLE_SECONDS
        after = await _counts(owner, account_id)
        while not (
            after["stored"] >= SYNCED
            and after["sent"] >= TRACKED_SENDS + QUEUED_SENDS
            and after["opens"] >= seen.pixels_served
            and after["sync_state"] != "running"
        ):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
            await _sends_due_now(owner)
            after = await _counts(owner, account_id)
        sent_log = (await http.get(f"{base}/_sandbox/gmail/mailboxes/{MAILBOX}/sent")).json()[
            "items"
        ]
    subjects = [_subject(item["raw"]) for item in sent_log]
    say(
        f"after the restart: {after}, sandbox sent log {len(sent_log)} "
        f"(expected {TRACKED_SENDS + QUEUED_SENDS}), pixels served {seen.pixels_served}, "
        f"settled in {time.monotonic() - stopped_at - OUTAGE_SECONDS:.1f}s after the start"
    )
    worker_log = [
        line
        for line in service.log.read_text().splitlines()
        if "job worker" in line or "Stopped worker" in line or "orphaned jobs" in line
    ]
    say("\n".join(worker_log[-6:]))

    assert service.process.poll() is None, "the service must not have exited"
    assert any("job worker restarting" in line for line in worker_log), "no worker restart"
    assert after["stored"] == SYNCED, after
    assert after["distinct_provider_ids"] == SYNCED, after
    assert after["sync_state"] != "running", after
    expected = [f"Tracked {n}" for n in range(TRACKED_SENDS)] + [
        f"Queued {n}" for n in range(QUEUED_SENDS)
    ]
    assert sorted(subjects) == sorted(expected), subjects
    assert after["sent"] == TRACKED_SENDS + QUEUED_SENDS, after
    assert after["opens"] == seen.pixels_served, after


def _subject(raw: str) -> str:
    for line in raw.splitlines():
        if line.lower().startswith("subject:"):
            return line.split(":", 1)[1].strip()
    return ""
