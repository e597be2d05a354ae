"""`ce-email demo`: the whole product in one command, on the embedded database and the sandbox.

It serves the real API (with the sandbox and a job worker in-process) and drives it over
HTTP exactly as the CRM frontend, a browser and the mail providers would: OAuth through
the real endpoints, syncs through the job queue, a tracked send, an open and a click.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.config import Settings
from app.db.migrate import run_migrations
from app.db.urls import owner_url
from app.dev import fixtures, repository
from app.dev.sample_mail import GMAIL_BOX, OUTLOOK_BOX, delivery_failure, realistic_mail
from app.main import create_app

FRONTEND = "http://localhost:3000"


class DemoFailed(RuntimeError):
    """The walkthrough cannot go on (a mailbox did not connect or sync); the message says
    why, for the person who ran it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bar(provider: str, status: dict[str, Any], width: int) -> str:
    done = status["processed"]
    total = status["estimate"] or 0
    filled = min(width, int(width * done / total)) if total else 0
    return (
        f"{provider}: [{'#' * filled}{'.' * (width - filled)}] "
        f"{done}/{total or '?'} {status['state']}"
    )


def _is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


@dataclass
class Demo:
    base: str
    http: httpx.AsyncClient
    out: TextIO = sys.stdout
    poll_seconds: float = 0.2
    sync_timeout_seconds: float = 120.0

    def say(self, line: str = "") -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def connect(self, provider: str, mailbox: str, token: str) -> str:
        r = await self.http.get(
            f"{self.base}/v1/oauth/{provider}/authorize",
            params={"return_to": f"{FRONTEND}/settings/email", "login_hint": mailbox},
            headers=self.headers(token),
        )
        r.raise_for_status()
        consent = await self.http.get(r.json()["authorization_url"])  # the provider's page
        callback = await self.http.get(consent.headers["location"])  # back to us
        target = callback.headers["location"]
        params = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        if "account_id" not in params:
            raise DemoFailed(f"connecting {mailbox} failed: {params.get('error')}")
        self.say(f"  {provider:<8} {mailbox:<45} connected → {target.split('?')[0]}?account_id=…")
        return params["account_id"]

    async def wait_synced(self, accounts: dict[str, str], token: str) -> None:
        """Until every mailbox has synced once; a failed sync stops the demo with its error.

        On a terminal the bars are redrawn in place. Anywhere else (a log, a pipe) a
        redraw would be a new line each time, so a line is written only when an account's
        state or phase changes."""
        width = 30
        redraw = _is_terminal(self.out)
        shown: tuple[tuple[str, str, str | None], ...] | None = None
        deadline = time.monotonic() + self.sync_timeout_seconds
        while True:
            states = []
            for provider, account_id in accounts.items():
                response = await self.http.get(
                    f"{self.base}/v1/accounts/{account_id}/sync", headers=self.headers(token)
                )
                response.raise_for_status()
                states.append((provider, response.json()))
            line = "  ".join(_bar(p, s, width) for p, s in states)
            if redraw:
                self.out.write("\r  " + line)
                self.out.flush()
            else:
                phases = tuple((p, s["state"], s.get("phase")) for p, s in states)
                if phases != shown:
                    self.say("  " + line)
                    shown = phases
            failed = [(p, s) for p, s in states if s["state"] == "failed"]
            if failed:
                if redraw:
                    self.say()
                raise DemoFailed(
                    "; ".join(
                        f"the {p} sync failed: {s.get('last_error') or 'no error recorded'}"
                        for p, s in failed
                    )
                )
            if all(s["state"] == "idle" and s["last_synced_at"] for _, s in states):
                if redraw:
                    self.say()
                return
            if time.monotonic() > deadline:
                if redraw:
                    self.say()
                raise DemoFailed(f"the sync did not finish in {self.sync_timeout_seconds:.0f} s")
            await asyncio.sleep(self.poll_seconds)

    async def timeline(self, title: str, path: str, token: str) -> None:
        r = await self.http.get(f"{self.base}{path}", headers=self.headers(token))
        r.raise_for_status()
        self.say(f"\n{title}")
        for item in r.json()["items"]:
            when = (item.get("sent_at") or item.get("occurred_at") or "")[:16].replace("T", " ")
            arrow = "→" if item["direction"] == "outbound" else "←"
            self.say(f"  {when}  {arrow} {item['subject']}")


async def run_demo(settings: Settings, *, port: int | None, keep_serving: bool) -> None:
    """Own transactions: seeds, connects, syncs, sends and tracks through a served API.
    Raises DemoFailed when the walkthrough cannot go on."""
    port = port or _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = settings.model_copy(
        update={
            "ce_sandbox": True,
            "public_base_url": base,
            "run_worker_in_process": True,
            "frontend_origins": FRONTEND,
        }
    ).with_sandbox_urls()
    out = sys.stdout
    out.write("ce-email demo — embedded PostgreSQL, provider sandbox, one process\n\n")
    run_migrations(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            log_config=None,
        )
    )
    serving = asyncio.create_task(server.serve())
    owner = create_async_engine(owner_url(settings, "asyncpg"))
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{base}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            demo = Demo(base, http, out)
            demo.say("1. An organisation, its staff, contacts and partners")
            org = await fixtures.seed_org(owner, settings, "Riverside Clinic")
            org_id = uuid.UUID(org["org_id"])
            token = org["admin"]["token"]
            contact = await fixtures.add_contact(
                owner, settings, org_id, ["jordan.patel@example.net"], "Jordan Patel"
            )
            await fixtures.add_contact(
                owner, settings, org_id, ["maria.gomez@gmail.com"], "Maria Gomez"
            )
            partner = await fixtures.add_partner(
                owner, settings, org_id, ["stmarys-hospital.org"], "St Mary's Hospital"
            )
            await fixtures.add_partner(
                owner, settings, org_id, ["northside-imaging.com"], "Northside Imaging"
            )
            doc_path = Path(settings.data_dir) / "demo" / "care-plan.pdf"
            doc_path.parent.mkdir(parents=True, exist_ok=True)
            doc_path.write_bytes(b"%PDF-1.4\n% Riverside care plan (demo)\n")
            document = await fixtures.add_document(owner, settings, org_id, doc_path)
            demo.say(
                f"  org {org['org_id']}: admin {org['admin']['email']}, "
                f"member {org['member']['email']}"
            )
            demo.say(
                "  contacts: Jordan Patel, Maria Gomez; partners: St Mary's Hospital "
                "(stmarys-hospital.org), Northside Imaging"
            )

            demo.say("\n2. Mail waiting in two mailboxes (sandbox Gmail and Outlook)")
            mail = realistic_mail(GMAIL_BOX)
            for provider, box in (("gmail", GMAIL_BOX), ("outlook", OUTLOOK_BOX)):
                seeded = 0
                for folder, raw, days in mail:
                    if provider == "outlook" and (
                        folder == "sent" or b"Health Weekly" in raw or b"Maria Gomez" in raw
                    ):
                        continue  # the outlook box shares the doctors' inbound mail only
                    received = (datetime.now(UTC) - timedelta(days=days)).isoformat()
                    r = await http.post(
                        f"{base}/_sandbox/{provider}/mailboxes/{box}/messages",
                        params={"folder": folder, "received_at": received},
                        content=raw,
                        headers={"Content-Type": "message/rfc822"},
                    )
                    r.raise_for_status()
                    seeded += 1
                demo.say(f"  {provider:<8} {box}: {seeded} messages")

            demo.say("\n3. Connecting both mailboxes through the OAuth endpoints")
            accounts = {
                "gmail": await demo.connect("gmail", GMAIL_BOX, token),
                "outlook": await demo.connect("outlook", OUTLOOK_BOX, token),
            }
            demo.say("\n4. Syncing (the first sync was queued by the connect)")
            await demo.wait_synced(accounts, token)

            await demo.timeline(
                "5. Jordan Patel's email timeline (contact)",
                f"/v1/contacts/{contact['contact_id']}/emails",
                token,
            )
            await demo.timeline(
                "   St Mary's Hospital's email timeline (partner, by domain)",
                f"/v1/partners/{partner['partner_id']}/emails",
                token,
            )

            demo.say("\n6. Sending a tracked email with an attachment from Jordan's page")
            r = await http.post(
                f"{base}/v1/emails",
                headers={**demo.headers(token), "Idempotency-Key": f"demo-{uuid.uuid4()}"},
                json={
                    "account_id": accounts["gmail"],
                    "contact_id": contact["contact_id"],
                    "to": ["jordan.patel@example.net"],
                    "subject": "Your care plan",
                    "html": "<p>Hello Jordan, your care plan is attached. "
                    'Directions: <a href="https://maps.example.com/riverside">map</a></p>',
                    "text": "Hello Jordan, your care plan is attached.",
                    "document_ids": [document["document_id"]],
                },
            )
            r.raise_for_status()
            email_id = r.json()["id"]
            for _ in range(150):
                detail = (
                    await http.get(f"{base}/v1/emails/{email_id}", headers=demo.headers(token))
                ).json()
                if detail["status"] != "queued":
                    break
                await asyncio.sleep(0.2)
            demo.say(f"  email {email_id}: {detail['status']}")
            sent = (await http.get(f"{base}/_sandbox/gmail/mailboxes/{GMAIL_BOX}/sent")).json()
            raw = sent["items"][-1]["raw"]
            pixel = re.search(
                r'src="?(http[^"\s>]+/t/o/[^"\s>]+)',
                raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "="),
            )
            click = re.search(
                r'href="?(http[^"\s>]+/t/c/[^"\s>]+)',
                raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "="),
            )
            demo.say(
                "\n7. The recipient opens it and clicks the link (a few seconds later: "
                "fetches at delivery time are scanners)"
            )
            await asyncio.sleep(3.2)
            human = {"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Safari/605.1"}
            if pixel:
                r = await http.get(pixel.group(1), headers=human)
                demo.say(
                    f"  GET /t/o/… → {r.status_code} {r.headers.get('content-type')} "
                    f"({len(r.content)} bytes)"
                )
            if click:
                r = await http.get(click.group(1), headers=human)
                demo.say(f"  GET /t/c/… → {r.status_code} Location: {r.headers.get('location')}")
            # Opens are written in batches (TRACKING_FLUSH_MS): read once they are in.
            for _ in range(40):
                detail = (
                    await http.get(f"{base}/v1/emails/{email_id}", headers=demo.headers(token))
                ).json()
                if not pixel or (detail.get("tracking") or {}).get("opens"):
                    break
                await asyncio.sleep(0.05)
            demo.say(f"  tracking: {detail.get('tracking')}")

            demo.say("\n8. A message to a mistyped address bounces")
            r = await http.post(
                f"{base}/v1/emails",
                headers={**demo.headers(token), "Idempotency-Key": f"demo-{uuid.uuid4()}"},
                json={
                    "account_id": accounts["gmail"],
                    "to": ["jordan.patel@exmaple.net"],
                    "subject": "Appointment reminder",
                    "text": "See you on Thursday.",
                },
            )
            r.raise_for_status()
            bounced_id = r.json()["id"]
            for _ in range(150):
                state = (
                    await http.get(f"{base}/v1/emails/{bounced_id}", headers=demo.headers(token))
                ).json()["status"]
                if state != "queued":
                    break
                await asyncio.sleep(0.2)
            sent = (await http.get(f"{base}/_sandbox/gmail/mailboxes/{GMAIL_BOX}/sent")).json()
            original = sent["items"][-1]["raw"]
            message_id = re.search(r"(?im)^Message-ID:\s*(<[^>]+>)", original)
            dsn = delivery_failure(
                GMAIL_BOX,
                "jordan.patel@exmaple.net",
                message_id.group(1) if message_id else "<unknown>",
            )
            await http.post(
                f"{base}/_sandbox/gmail/mailboxes/{GMAIL_BOX}/messages",
                params={"folder": "inbox"},
                content=dsn,
                headers={"Content-Type": "message/rfc822"},
            )
            for _ in range(150):  # the sandbox pushes; the worker syncs; the DSN is linked
                state = (
                    await http.get(f"{base}/v1/emails/{bounced_id}", headers=demo.headers(token))
                ).json()["status"]
                if state == "bounced":
                    break
                await asyncio.sleep(0.2)
            demo.say(f"  email {bounced_id}: {state}")

            demo.say("\n9. Notifications for the sender (PF-10)")
            async with AsyncSession(owner) as session:
                notifications = await repository.notifications_of_org(session, org_id)
            for notification in notifications:
                demo.say(f"  {notification.created_at:%H:%M:%S}  {notification.type}")

            demo.say("\nExplore:")
            demo.say(f"  API docs      {base}/docs")
            demo.say(f"  Accounts      curl -H 'Authorization: Bearer $TOKEN' {base}/v1/accounts")
            demo.say(f"  Timeline      {base}/v1/contacts/{contact['contact_id']}/emails")
            demo.say(f"  Metrics       {base}/metrics")
            demo.say(f"  TOKEN={token}")
            if keep_serving:
                demo.say("\nServing until Ctrl-C.")
                await serving
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, timeout=10)
        await owner.dispose()
