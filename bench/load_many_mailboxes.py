"""Load: many sandbox mailboxes (mixed providers) synced by several workers.

Runs the real processes over loopback: the sandbox (`ce-email sandbox`), the API
(`ce-email serve`, which receives the sandbox's pushes) and N workers (`ce-email worker`).
Mailboxes are connected through the API's OAuth endpoints (the connect queues each first
sync); once a quarter of them are synced, new mail arrives in some synced mailboxes and
must be in the timeline while other backfills still run. At the end every mailbox must
equal the sandbox (counts per folder), nothing duplicated, no deadlock, and the sandbox's
provider-limit counters (Gmail units per user per minute, Graph concurrent requests per
mailbox) must show zero violations.

With `--reconcile`, every mailbox also gets a reconciliation (`POST .../reconcile`) as soon
as its first sync is done, while the other backfills and the new mail go on: the run ends
once every mailbox is verified, and the same checks (nothing missing or duplicated, zero
provider-limit violations) cover the reconciliations too. `seconds` and `messages_per_s`
still measure the syncs (until every mailbox is synced and the new mail is visible);
`reconcile_seconds` is until the last mailbox is verified.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ce_load .venv/bin/python \\
        bench/load_many_mailboxes.py --mailboxes 200 --messages 200 --workers 2

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = "referral results appointment consult imaging discharge summary schedule".split()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raw(i: int, mailbox: str, rng: random.Random, subject: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Dr {i} <doc{i % 50}@dept.hospital{i % 9}.org>"
    msg["To"] = mailbox
    msg["Subject"] = subject or " ".join(rng.choices(WORDS, k=5))
    msg["Date"] = format_datetime(datetime.now(UTC) - timedelta(minutes=i))
    msg["Message-ID"] = make_msgid(domain="load.test")
    msg.set_content(" ".join(rng.choices(WORDS, k=rng.randint(60, 300))))
    return bytes(msg)


LOG_DIR: Path | None = None


def _out(name: str) -> Any:
    if LOG_DIR is None:
        return subprocess.DEVNULL
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return (LOG_DIR / f"{name}.log").open("w")


def _env(api: str, sandbox: str) -> dict[str, str]:
    from app.config import Settings

    urls = Settings(_env_file=None).with_sandbox_urls(sandbox)  # type: ignore[call-arg]
    level = "INFO" if LOG_DIR else "WARNING"
    env = {**os.environ, "CE_ENV": "development", "PUBLIC_BASE_URL": api, "LOG_LEVEL": level}
    for name in (
        "gmail_auth_url",
        "gmail_token_url",
        "gmail_revoke_url",
        "gmail_api_base",
        "gmail_batch_url",
        "gmail_upload_base",
        "outlook_auth_url",
        "outlook_token_url",
        "graph_api_base",
    ):
        env[name.upper()] = getattr(urls, name)
    return env


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


async def _connect(
    http: httpx.AsyncClient, api: str, token: str, provider: str, mailbox: str
) -> str:
    r = await http.get(
        f"{api}/v1/oauth/{provider}/authorize",
        params={"return_to": "http://localhost:3000/x", "login_hint": mailbox},
        headers={"Authorization": f"Bearer {token}"},
    )
    r.raise_for_status()
    consent = await http.get(r.json()["authorization_url"])
    callback = await http.get(consent.headers["location"])
    params = parse_qs(urlsplit(callback.headers["location"]).query)
    if "account_id" not in params:
        raise SystemExit(f"connect failed: {params}")
    return params["account_id"][0]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.config import Settings
    from app.db.urls import owner_url
    from app.dev.fixtures import seed_org

    api_port, sb_port = _port(), _port()
    api, sandbox = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sb_port}/_sandbox"
    env = _env(api, sandbox)
    settings = Settings(_env_file=None, database_url=os.environ["DATABASE_URL"])  # type: ignore[call-arg]
    owner = create_async_engine(owner_url(settings, "asyncpg"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "sandbox", "--port", str(sb_port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=_out("sandbox"),
        ),
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(api_port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=_out("api"),
        ),
    ]
    try:
        _wait_http(f"http://127.0.0.1:{sb_port}/healthz")
        _wait_http(f"{api}/readyz")
        async with owner.connect() as conn:
            deadlocks_before = (
                await conn.execute(
                    text(
                        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
                    )
                )
            ).scalar_one()
        org = await seed_org(owner, settings, "Load test")
        token = org["admin"]["token"]
        rng = random.Random(42)
        boxes = [
            (
                "gmail" if i % 2 == 0 else "outlook",
                f"load{i}-{uuid.uuid4().hex[:6]}@clinic{i % 5}.test",
            )
            for i in range(args.mailboxes)
        ]
        async with httpx.AsyncClient(timeout=120) as http:
            for provider, box in boxes:
                items = [
                    {
                        "raw_base64": base64.b64encode(_raw(j, box, rng)).decode(),
                        "folder": "sent" if j % 10 == 0 else "inbox",
                    }
                    for j in range(args.messages)
                ]
                r = await http.post(
                    f"{sandbox}/{provider}/mailboxes/{box}/messages:bulk", json={"messages": items}
                )
                r.raise_for_status()
            # the workers start once the mailboxes are full, like a morning of connects
            procs += [
                subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=_out(f"worker{number}"),
                )
                for number in range(args.workers)
            ]
            started = time.perf_counter()
            accounts: dict[str, tuple[str, str]] = {}
            for provider, box in boxes:
                accounts[await _connect(http, api, token, provider, box)] = (provider, box)

            new_mail: dict[str, str] = {}
            new_mail_seen_at = None
            still_backfilling_when_seen = None
            new_mail_sent_at = 0.0
            reconcile_requested: set[str] = set()
            verified: set[str] = set()
            synced_at: float | None = None
            admin = {"Authorization": f"Bearer {token}"}
            while True:
                async with owner.connect() as conn:
                    done = set(
                        (
                            await conn.execute(
                                text(
                                    "SELECT id::text FROM ce_email_accounts WHERE org_id = :o AND "
                                    "last_synced_at IS NOT NULL AND sync_state = 'idle'"
                                ),
                                {"o": org["org_id"]},
                            )
                        ).scalars()
                    )
                    if new_mail and new_mail_seen_at is None:
                        seen = (
                            await conn.execute(
                                text(
                                    "SELECT count(*) FROM ce_emails WHERE org_id = :o AND "
                                    "subject LIKE 'Arrived during backfill %'"
                                ),
                                {"o": org["org_id"]},
                            )
                        ).scalar_one()
                        if seen == len(new_mail):
                            new_mail_seen_at = time.perf_counter()
                            still_backfilling_when_seen = len(accounts) - len(done)
                    if args.reconcile:
                        verified = set(
                            (
                                await conn.execute(
                                    text(
                                        "SELECT id::text FROM ce_email_accounts WHERE org_id = :o "
                                        "AND reconcile_verified_at IS NOT NULL"
                                    ),
                                    {"o": org["org_id"]},
                                )
                            ).scalars()
                        )
                for account_id in sorted(done - reconcile_requested) if args.reconcile else ():
                    r = await http.post(f"{api}/v1/accounts/{account_id}/reconcile", headers=admin)
                    r.raise_for_status()
                    reconcile_requested.add(account_id)
                if not new_mail and len(done) >= max(2, len(accounts) // 4):
                    for account_id in sorted(done)[:10]:
                        provider, box = accounts[account_id]
                        raw = _raw(0, box, rng, subject=f"Arrived during backfill {box}")
                        r = await http.post(
                            f"{sandbox}/{provider}/mailboxes/{box}/messages",
                            params={"folder": "inbox"},
                            content=raw,
                            headers={"Content-Type": "message/rfc822"},
                        )
                        r.raise_for_status()
                        new_mail[account_id] = box
                    new_mail_sent_at = time.perf_counter()
                if synced_at is None and len(done) == len(accounts):
                    if new_mail_seen_at or not new_mail:
                        synced_at = time.perf_counter()
                if synced_at is not None and (not args.reconcile or len(verified) == len(accounts)):
                    break
                print(
                    f"  {time.perf_counter() - started:6.1f}s synced {len(done)}/{len(accounts)}"
                    f" new mail seen: {new_mail_seen_at is not None}"
                    f" verified: {len(verified)}",
                    file=sys.stderr,
                )
                if time.perf_counter() - started > args.timeout:
                    raise SystemExit(f"timed out: {len(done)}/{len(accounts)} synced")
                await asyncio.sleep(0.5)
            reconcile_elapsed = time.perf_counter() - started
            assert synced_at is not None
            elapsed = synced_at - started

            missing = duplicated = 0
            async with owner.connect() as conn:
                stored = dict(
                    (
                        await conn.execute(
                            text(
                                "SELECT account_id::text, count(*) FROM ce_emails "
                                "WHERE org_id = :o GROUP BY 1"
                            ),
                            {"o": org["org_id"]},
                        )
                    ).all()
                )
                duplicated = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM (SELECT account_id, internet_message_id "
                            "FROM ce_emails WHERE org_id = :o GROUP BY 1, 2 "
                            "HAVING count(*) > 1) d"
                        ),
                        {"o": org["org_id"]},
                    )
                ).scalar_one()
                completeness = (
                    await conn.execute(
                        text(
                            "SELECT count(reconcile_verified_at), "
                            "COALESCE(sum(reconcile_missing_fetched), 0), "
                            "COALESCE(sum(reconcile_stale_removed), 0) "
                            "FROM ce_email_accounts WHERE org_id = :o"
                        ),
                        {"o": org["org_id"]},
                    )
                ).one()
                deadlocks = (
                    await conn.execute(
                        text(
                            "SELECT deadlocks FROM pg_stat_database "
                            "WHERE datname = current_database()"
                        )
                    )
                ).scalar_one() - deadlocks_before
            for account_id, (provider, box) in accounts.items():
                summary = (await http.get(f"{sandbox}/{provider}/mailboxes/{box}")).json()
                expected = summary["folders"]["inbox"] + summary["folders"]["sent"]
                missing += max(0, expected - stored.get(account_id, 0))
                duplicated += max(0, stored.get(account_id, 0) - expected)
            violations = 0
            for provider in ("gmail", "outlook"):
                stats = (await http.get(f"{sandbox}/{provider}/stats")).json()["mailboxes"]
                violations += sum(
                    s["concurrency_violations"] + s["quota_violations"] for s in stats.values()
                )
        total = sum(stored.values())
        return {
            "mailboxes": len(accounts),
            "messages": total,
            "workers": args.workers,
            "seconds": round(elapsed, 1),
            "messages_per_s": round(total / elapsed, 1),
            "missing": missing,
            "duplicated": duplicated,
            "deadlocks": deadlocks,
            "provider_limit_violations": violations,
            "new_mail_latency_s": round((new_mail_seen_at or 0) - new_mail_sent_at, 2)
            if new_mail
            else None,
            "mailboxes_still_backfilling_when_new_mail_visible": still_backfilling_when_seen,
            **(
                {
                    "reconciled_mailboxes": int(completeness[0]),
                    "reconcile_missing_fetched": int(completeness[1]),
                    "reconcile_stale_removed": int(completeness[2]),
                    "reconcile_seconds": round(reconcile_elapsed, 1),
                }
                if args.reconcile
                else {}
            ),
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await owner.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument(
        "--reconcile",
        action="store_true",
        help="reconcile every mailbox once its first sync is done; wait until all are verified",
    )
    parser.add_argument("--log-dir", help="keep each process's JSON logs (INFO) here")
    args = parser.parse_args()
    global LOG_DIR
    LOG_DIR = Path(args.log_dir) if args.log_dir else None
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL to a migrated database (owner URL)")
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
