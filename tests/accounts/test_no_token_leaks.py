"""No token in clear anywhere: database dump, API responses, logs."""

from __future__ import annotations

import logging
import shutil
import subprocess

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from tests.fixtures.accounts import authorize_url, connect, consent
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio

MARKER = "SANDBOXTOKEN"


def _pg_dump(settings: Settings) -> str:
    url = make_url(str(settings.database_url))
    binary = shutil.which("pg_dump")
    if url.query.get("host"):  # the embedded server: use its own pg_dump (same major)
        from pgserver._commands import POSTGRES_BIN_PATH

        binary = str(POSTGRES_BIN_PATH / "pg_dump")
    assert binary, "pg_dump is needed for this test"
    cmd = [
        binary,
        "--data-only",
        "--no-owner",
        "-U",
        url.username or "postgres",
        "-d",
        url.database or "postgres",
    ]
    host = url.query.get("host") or url.host or "127.0.0.1"
    cmd += ["-h", str(host)]
    if url.port:
        cmd += ["-p", str(url.port)]
    result = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if result.returncode != 0 and b"server version mismatch" in result.stderr:
        pytest.fail("pg_dump of the test database failed: " + result.stderr.decode()[:300])
    assert result.returncode == 0, result.stderr.decode()[:500]
    return result.stdout.decode("utf-8", "replace")


async def test_no_token_in_dump_responses_or_logs(
    client: httpx.AsyncClient,
    make_org: MakeOrg,
    test_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    org: Org = await make_org("Leaks")
    seen: list[str] = []
    for provider in ("gmail", "outlook"):
        account = await connect(client, provider, org.headers(), login_hint=f"leak@{provider}.t")
        seen.append(str(account))
        for path in ("/v1/accounts", f"/v1/accounts/{account['id']}"):
            seen.append((await client.get(path, headers=org.headers())).text)
        url = await authorize_url(client, provider, org.headers())
        callback = await consent(client, url)
        response = await client.get(callback)
        seen.append(str(response.headers))
        seen.append(response.text)
    assert all(MARKER not in text for text in seen)
    assert MARKER not in caplog.text
    for record in caplog.records:
        assert MARKER not in record.getMessage()
        assert MARKER not in str(record.__dict__)
    dump = _pg_dump(test_settings)
    assert "ce_email_accounts" in dump  # the dump really holds our data
    assert MARKER not in dump
