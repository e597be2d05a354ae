"""Benchmark: a sandbox mailbox synced end to end over HTTP on loopback into PostgreSQL.

Not a test. Run with DATABASE_URL pointing at a migrated database (owner URL):

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ce_bench .venv/bin/python bench/sync_ingest.py

It starts the sandbox itself (`ce-email sandbox`, its own process), seeds mailboxes of
5,000 and 20,000 messages (2-12 KB bodies, 10% with a 20-60 KB attachment) from this
process, 1,000 messages per request (generated as they are sent, never all held), and
syncs each in a fresh child process, so the child's peak RSS is the sync's alone (its
parse process, `--parse-processes`, 1 by default, is reported beside it). The sandbox's
per-user Gmail quota is lifted: the figure is the sync engine's, not Gmail's 50 fetches
per second per mailbox. Beside that, in the same run, it times a plain bulk insert of the
same rows into the same table: the ceiling. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import secrets
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_SLICE = 1000
WORDS = (
    "patient referral follow-up appointment results cardiology lab imaging discharge "
    "summary medication review schedule clinic consult insurance authorization"
).split()


def _peak_rss_mb(pid: int | str = "self") -> float:
    """The high-water RSS of a process. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    fork and exec, so a child started by a big parent would report the parent's peak."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if pid == "self" else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _message(i: int, mailbox: str, rng: random.Random) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Dr {rng.choice(WORDS).title()} <doc{i % 500}@dept{i % 7}.hospital{i % 40}.org>"
    msg["To"] = mailbox
    if i % 3 == 0:
        msg["Cc"] = f"patient{i % 900}@example.net"
    msg["Subject"] = " ".join(rng.choices(WORDS, k=6))
    msg["Date"] = format_datetime(datetime.now(UTC) - timedelta(minutes=i))
    msg["Message-ID"] = make_msgid(domain="bench.test")
    body = " ".join(rng.choices(WORDS, k=rng.randint(250, 1500)))
    msg.set_content(body)
    msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    if i % 10 == 0:
        msg.add_attachment(
            rng.randbytes(rng.randint(20_000, 60_000)),
            maintype="application",
            subtype="pdf",
            filename=f"scan-{i}.pdf",
        )
    return bytes(msg)


def _settings(sandbox_base: str, parse_processes: int = 0):  # type: ignore[no-untyped-def]
    from app.config import Settings

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        ce_env="test",
        database_url=os.environ["DATABASE_URL"],
        # Attachments are stored as PF-11 documents, as in any sync (the service reads the
        # size cap from its own settings: 25 MB by default).
        document_storage_dir=str(ROOT / ".data" / "bench-documents"),
        sync_parse_processes=parse_processes,
        # the sandbox's quota is lifted (below): the driver's own pacing too
        gmail_user_units_per_minute=1_000_000_000,
    ).with_sandbox_urls(sandbox_base)


def _seed(sandbox_base: str, mailbox: str, count: int) -> None:
    """Generate and seed the mailbox in slices (runs in the parent, not in the child)."""
    rng = random.Random(count)
    with httpx.Client(timeout=300) as client:
        for start in range(0, count, SEED_SLICE):
            items = [
                {
                    "raw_base64": base64.b64encode(_message(i, mailbox, rng)).decode(),
                    "folder": "inbox",
                }
                for i in range(start, min(count, start + SEED_SLICE))
            ]
            r = client.post(
                f"{sandbox_base}/gmail/mailboxes/{mailbox}/messages:bulk", json={"messages": items}
            )
            r.raise_for_status()


async def _connect(ctx, org_id: uuid.UUID, owner: uuid.UUID, mailbox: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """The OAuth code flow against the sandbox, then the account and its vault secrets."""
    from app.accounts import repository
    from app.db.rls import org_transaction

    oauth = ctx.oauth_client("gmail")
    verifier = secrets.token_urlsafe(48)
    url = oauth.authorization_url("bench-state", verifier, mailbox)
    consent = await ctx.http.get(url)
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    tokens = await oauth.exchange_code(code, verifier)
    async with org_transaction(ctx.engine, org_id, owner) as session:
        account_id, _ = await repository.upsert_connected_account(
            session,
            org_id=org_id,
            owner_user_id=owner,
            provider="gmail",
            email_address=mailbox,
            display_name=None,
            token_expires_at=tokens.expires_at,
            scopes=tokens.scope,
        )
        a = await ctx.vault.put(session, account_id, "access_token", tokens.access_token)
        r = await ctx.vault.put(session, account_id, "refresh_token", str(tokens.refresh_token))
        await repository.set_secret_ids(session, account_id, a, r)
    return account_id


async def _ceiling(ctx, org_id: uuid.UUID, account_id: uuid.UUID, owner: uuid.UUID) -> float:  # type: ignore[no-untyped-def]
    """A plain bulk insert of the same rows (copied, new provider ids) into ce_emails."""
    from sqlalchemy import text

    from app.accounts import repository
    from app.db.rls import org_transaction

    async with org_transaction(ctx.engine, org_id, owner) as session:
        target, _ = await repository.upsert_connected_account(
            session,
            org_id=org_id,
            owner_user_id=owner,
            provider="gmail",
            email_address=f"ceiling-{uuid.uuid4().hex[:6]}@bench.test",
            display_name=None,
            token_expires_at=datetime.now(UTC),
            scopes=None,
        )
    columns = (
        "org_id, provider_thread_id, internet_message_id, direction, status, folder, "
        "subject, snippet, from_address, from_name, to_recipients, cc_recipients, "
        "bcc_recipients, text_body, html_body, body_truncated, has_attachments, "
        "content_hash, sent_at, received_at, occurred_at"
    )
    started = time.perf_counter()
    async with org_transaction(ctx.engine, org_id, owner) as session:
        result = await session.execute(
            text(
                f"INSERT INTO ce_emails (account_id, provider_message_id, {columns}) "
                # content is readable only through the view (sql/150_visibility.sql)
                f"SELECT :target, provider_message_id || '-copy', {columns} "
                "FROM ce_emails_visible WHERE account_id = :source"
            ),
            {"target": target, "source": account_id},
        )
        rows = result.rowcount
    elapsed = time.perf_counter() - started
    return rows / elapsed


async def _child(
    count: int, sandbox_base: str, mailbox: str, parse_processes: int
) -> dict[str, float]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.context import ServiceContext
    from app.db.engine import create_database
    from app.db.urls import owner_url
    from app.dev.fixtures import seed_org
    from app.providers.http import message_fetches, reset_call_counts
    from app.sync import parse_pool
    from app.sync import service as sync_service

    settings = _settings(sandbox_base, parse_processes)
    owner_engine = create_async_engine(owner_url(settings, "asyncpg"))
    org = await seed_org(owner_engine, settings, f"Bench {count}")
    await owner_engine.dispose()
    org_id, owner = uuid.UUID(org["org_id"]), uuid.UUID(org["admin"]["user_id"])

    db = create_database(settings)
    ctx = ServiceContext.build(settings, db.engine)
    account_id = await _connect(ctx, org_id, owner, mailbox)
    parse_pool.start_parse_pool(settings)  # as a worker would at startup (none by default)
    reset_call_counts()
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    run = await sync_service.run_sync(ctx, org_id, account_id, reason="bench")
    elapsed = time.perf_counter() - started
    peak_rss = _peak_rss_mb()
    pool = parse_pool.running_pool()
    parse_rss = sum(_peak_rss_mb(pid) for pid in (pool._processes if pool else {}))
    assert run is not None
    stored = run.stored
    fetches = message_fetches("gmail")
    ceiling = await _ceiling(ctx, org_id, account_id, owner)
    await ctx.aclose()
    await db.dispose()
    if stored != count:
        raise SystemExit(f"stored {stored} of {count} messages")
    return {
        "messages": count,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(count / elapsed, 1),
        "ceiling_messages_per_s": round(ceiling, 1),
        "fetches_per_message": round(fetches / count, 3),
        "peak_rss_mb": round(peak_rss, 1),
        "parse_processes_peak_rss_mb": round(parse_rss, 1),
        "rss_before_sync_mb": round(rss_before, 1),
        "parse_processes": parse_processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=int)
    parser.add_argument("--sandbox")
    parser.add_argument("--mailbox")
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument(
        "--parse-processes",
        type=int,
        default=1,
        help="sync_parse_processes of the syncing process (0: parse in its event loop)",
    )
    args = parser.parse_args()
    if args.child:
        result = _child(args.child, args.sandbox, args.mailbox, args.parse_processes)
        print(json.dumps(asyncio.run(result)))
        return
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL to a migrated database (owner URL)")
    port = _free_port()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "sandbox", "--port", str(port)],
        cwd=ROOT,
        env={
            **os.environ,
            "CE_ENV": "development",
            "LOG_LEVEL": "WARNING",
            # Gmail allows 250 quota units per user per second (messages.get costs 5: 50
            # messages/s for one mailbox); lifted, so the figure is the sync engine's.
            "SANDBOX_GMAIL_UNITS_PER_MINUTE": "1000000000",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/_sandbox"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        results = {}
        for size in (int(s) for s in args.sizes.split(",")):
            mailbox = f"bench-{size}-{uuid.uuid4().hex[:6]}@clinic.test"
            _seed(base, mailbox, size)
            child = [sys.executable, __file__, "--child", str(size), "--sandbox", base]
            options = ["--mailbox", mailbox, "--parse-processes", str(args.parse_processes)]
            out = subprocess.run(
                [*child, *options],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "LOG_LEVEL": "WARNING"},
            )
            if out.returncode != 0:
                raise SystemExit(f"child {size} failed:\n{out.stderr[-3000:]}")
            results[size] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{size:>6} messages: {results[size]}")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    small, large = results[min(results)], results[max(results)]
    print(
        json.dumps(
            {
                "messages_per_s": large["messages_per_s"],
                "ceiling_messages_per_s": large["ceiling_messages_per_s"],
                "fetches_per_message": large["fetches_per_message"],
                "peak_rss_mb_5k": small["peak_rss_mb"],
                "peak_rss_mb_20k": large["peak_rss_mb"],
            }
        )
    )


if __name__ == "__main__":
    main()
