"""The whole flow (connect, sync, send, track, bounce) through a real server with logs at
DEBUG: no subject, body text, participant address or token in the logs, the error
responses or the metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.fixtures.orgs import Org

ROOT = Path(__file__).resolve().parents[2]

# What the demo's mail and send contain (app/dev/sample_mail.py, app/dev/demo.py):
# subjects, body phrases, addresses.
CONTENT = [
    "Referral: Jordan Patel",
    "cardiology consult",
    "Lab results ready",
    "Question about my appointment",
    "Can we move it to Thursday",
    "Thank you!",
    "MRI slot confirmed",
    "This week in health",
    "Your care plan",
    "your care plan is attached",
    "Please find the referral",
    "jordan.patel@example.net",
    "maria.gomez@gmail.com",
    "a.lee@cardiology",
    "results@lab.stmarys",
    "scheduling@northside",
    "dr.smith@riverside-clinic.test",
    "dr.jones@riverside-clinic",
    "maps.example.com",
    "SANDBOXTOKEN",
]


@pytest.fixture(scope="module")
def demo_run(test_settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": str(test_settings.database_url),
        "LOG_LEVEL": "DEBUG",
        "CE_ENV": "development",
        "DOCUMENT_STORAGE_DIR": str(test_settings.document_storage_dir),
        "DATA_DIR": str(Path(str(test_settings.document_storage_dir)).parent / "demo-data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--exit"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_flow_logs_at_debug_hold_no_content(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    out, logs = demo_run.stdout, demo_run.stderr
    # the flow really happened (the walkthrough on stdout shows the content on purpose)
    assert "Referral: Jordan Patel" in out
    assert re.search(r"email [0-9a-f-]{36}: sent", out)
    assert re.search(r"email [0-9a-f-]{36}: bounced", out)
    assert "email_opened" in out
    assert "email_clicked" in out
    # ... and the logs were really at DEBUG and plentiful
    assert logs.count('"level": "DEBUG"') > 10, logs[:2000]
    assert '"logger": "app.sync.service"' in logs
    for needle in CONTENT:
        assert needle.lower() not in logs.lower(), needle


@pytest.mark.asyncio
async def test_error_responses_and_metrics_hold_no_content(
    demo_run: subprocess.CompletedProcess[str],
    client: httpx.AsyncClient,
    app: FastAPI,
    org_a: Org,
) -> None:
    assert demo_run.returncode == 0
    metrics = (await client.get("/metrics")).text
    assert "ce_email_emails" in metrics
    errors = [
        await client.post(
            "/v1/emails",
            headers=org_a.headers(),
            json={
                "account_id": "00000000-0000-0000-0000-000000000000",
                "to": ["not an address"],
                "subject": "Referral: Jordan Patel",
                "text": "Please find the referral",
            },
        ),
        await client.post(
            "/v1/emails",
            headers=org_a.headers(),
            json={"to": ["jordan.patel@example.net"], "subject": "Your care plan"},
        ),
        await client.get(
            "/v1/settings", headers={"Authorization": "Bearer ya29.SANDBOXTOKEN.forged"}
        ),
    ]
    for response in errors:
        assert response.status_code >= 400
        assert response.headers["content-type"] == "application/problem+json"
    for needle in CONTENT:
        assert needle.lower() not in metrics.lower(), needle
        for response in errors:
            assert needle.lower() not in response.text.lower(), (needle, response.text)
