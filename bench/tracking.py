"""Benchmark: the open pixel under load on loopback, beside a bare GIF endpoint.

Not a test. Needs DATABASE_URL (a migrated database, owner URL) and `wrk`
(`apt-get install wrk`). One API worker (`ce-email serve`) records every open; in the same
run a bare Starlette app serves the same 43 bytes. Each gets 50 connections for 20 s.
It prints requests/s, p50/p99 latency and the ratio to the bare endpoint, and checks that
every request that should have recorded an open did (the rate limits are lifted for the
run). The last line is one JSON object.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ce_bench .venv/bin/python bench/tracking.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from app.tracking.endpoints import GIF, PIXEL_HEADERS

async def pixel(request):
    return Response(GIF, media_type="image/gif", headers=PIXEL_HEADERS)

app = Starlette(routes=[Route("/t/o/{token}", pixel)])
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str) -> None:
    for _ in range(150):
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def _wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            raise SystemExit(f"cannot read p{label} from wrk:\n{out}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "requests": requests,
        "requests_per_s": requests / seconds,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": 1 if errors else 0,
    }


async def _fixture(database_url: str, emails: int) -> tuple[list[str], list[str]]:
    """An org, a mailbox and `emails` sent emails (opens spread over them, as a mailing's
    opens are); returns (email ids, pixel tokens)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.config import Settings
    from app.db.urls import owner_url
    from app.dev.fixtures import seed_org
    from app.tracking.tokens import make_token

    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    engine = create_async_engine(owner_url(settings, "asyncpg"))
    org = await seed_org(engine, settings, "Tracking bench")
    async with engine.begin() as conn:
        account = (
            await conn.execute(
                text(
                    "INSERT INTO ce_email_accounts (org_id, owner_user_id, provider, "
                    "email_address) VALUES (:o, :u, 'gmail', :a) RETURNING id"
                ),
                {
                    "o": org["org_id"],
                    "u": org["admin"]["user_id"],
                    "a": f"bench-{uuid.uuid4().hex[:6]}@clinic.test",
                },
            )
        ).scalar_one()
        email_ids = list(
            (
                await conn.execute(
                    text(
                        "INSERT INTO ce_emails (org_id, account_id, direction, status, "
                        "subject, sent_at, occurred_at, sent_by_user_id) SELECT :o, :a, "
                        "'outbound', 'sent', 'Bench', now() - interval '1 hour', now(), :u "
                        "FROM generate_series(1, :n) RETURNING id"
                    ),
                    {"o": org["org_id"], "a": account, "u": org["admin"]["user_id"], "n": emails},
                )
            ).scalars()
        )
        # Planner statistics for what was just loaded, as autovacuum would give them (it
        # is off on this machine's PostgreSQL; without any statistics the recorder's
        # statement took twice as long).
        await conn.execute(
            text(
                "ANALYZE ce_emails, ce_email_accounts, ce_email_tracking_events, notifications"
            )
        )
    await engine.dispose()
    secret = settings.tracking_token_secret.get_secret_value()
    tokens = [
        make_token(secret, "o", uuid.UUID(org["org_id"]), uuid.UUID(str(e))) for e in email_ids
    ]
    return [str(e) for e in email_ids], tokens


async def _opens(database_url: str, email_ids: list[str]) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.config import Settings
    from app.db.urls import owner_url

    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    engine = create_async_engine(owner_url(settings, "asyncpg"))
    async with engine.connect() as conn:
        count = (
            await conn.execute(
                text("SELECT count(*) FROM ce_email_tracking_events WHERE email_id = ANY(:e)"),
                {"e": [uuid.UUID(e) for e in email_ids]},
            )
        ).scalar_one()
    await engine.dispose()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--emails", type=int, default=500)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("set DATABASE_URL to a migrated database (owner URL)")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    email_ids, tokens = asyncio.run(_fixture(database_url, args.emails))
    api_port, bare_port = _port(), _port()
    env = {
        **os.environ,
        "CE_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "TRACKING_RATE_LIMIT": "100000000/minute",
        "TRACKING_TOKEN_RATE_LIMIT": "100000000/minute",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
    }
    (ROOT / ".data").mkdir(exist_ok=True)
    bare_module = ROOT / ".data" / "bench_bare_pixel.py"
    bare_module.write_text(BARE_APP)
    script = ROOT / ".data" / "bench_pixel_tokens.lua"
    script.write_text(
        "local tokens = {" + ",".join(f'"{t}"' for t in tokens) + "}\n"
        "local i = math.random(#tokens)\n"
        "request = function()\n  i = i % #tokens + 1\n"
        '  return wrk.format("GET", "/t/o/" .. tokens[i])\nend\n'
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(api_port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_bare_pixel:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=bare_module.parent,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        _wait(f"http://127.0.0.1:{api_port}/healthz")
        _wait(f"http://127.0.0.1:{bare_port}/t/o/x")
        bare = _wrk(f"http://127.0.0.1:{bare_port}", args.seconds, args.connections, script)
        before = asyncio.run(_opens(database_url, email_ids))
        api = _wrk(f"http://127.0.0.1:{api_port}", args.seconds, args.connections, script)
        time.sleep(1)  # let the last in-flight requests finish their transaction
        recorded = asyncio.run(_opens(database_url, email_ids)) - before
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    served = api["requests"] - api["non_2xx"]
    print(
        f"bare pixel : {bare['requests_per_s']:.0f} req/s, p50 {bare['p50_ms']:.2f} ms, "
        f"p99 {bare['p99_ms']:.2f} ms"
    )
    print(
        f"api pixel  : {api['requests_per_s']:.0f} req/s, p50 {api['p50_ms']:.2f} ms, "
        f"p99 {api['p99_ms']:.2f} ms, ratio {api['requests_per_s'] / bare['requests_per_s']:.2f}"
    )
    print(f"opens recorded {recorded} for {served} served pixels")
    print(
        json.dumps(
            {
                "requests_per_s": round(api["requests_per_s"], 1),
                "bare_requests_per_s": round(bare["requests_per_s"], 1),
                "p50_ms": round(api["p50_ms"], 2),
                "p99_ms": round(api["p99_ms"], 2),
                "lost_events": max(0, served - recorded),
            }
        )
    )


if __name__ == "__main__":
    main()
