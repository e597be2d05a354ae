"""200 sandbox mailboxes (mixed providers, 200 messages each) synced by 2 worker processes:
all complete, nothing missing or duplicated, no deadlock, no provider-limit violation, and
mail arriving during the backfill is in the timeline before the backfill ends; every
mailbox is also reconciled once its first sync is done (LOAD_RECONCILE=0 leaves that out)
and verified complete, within the same provider limits.
(bench/load_many_mailboxes.py; sizes can be lowered with LOAD_MAILBOXES/LOAD_MESSAGES.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_many_mailboxes_two_workers(test_settings: Settings) -> None:
    mailboxes = os.environ.get("LOAD_MAILBOXES", "200")
    messages = os.environ.get("LOAD_MESSAGES", "200")
    reconcile = os.environ.get("LOAD_RECONCILE", "1") != "0"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load_many_mailboxes.py"),
            "--mailboxes",
            mailboxes,
            "--messages",
            messages,
            "--workers",
            "2",
            "--timeout",
            "600",
            *(["--reconcile"] if reconcile else []),
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": str(test_settings.database_url)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    sys.stderr.write(f"many-mailbox load: {figures}\n")
    assert figures["mailboxes"] == int(mailboxes)
    assert figures["messages"] >= int(mailboxes) * int(messages)
    assert figures["missing"] == 0
    assert figures["duplicated"] == 0
    assert figures["deadlocks"] == 0
    assert figures["provider_limit_violations"] == 0
    assert figures["mailboxes_still_backfilling_when_new_mail_visible"] > 0
    if reconcile:
        assert figures["reconciled_mailboxes"] == int(mailboxes)
