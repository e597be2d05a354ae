"""Sending through the in-process sandbox, end to end: request → row and links → job →
the provider's sent mailbox → the Sent-folder sync adds no second row."""

from __future__ import annotations

import asyncio
import email
import os
import uuid
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.dev.fixtures import add_contact, add_document, add_partner
from app.providers.base import MailProvider, OutgoingMessage, SentMessage
from app.providers.errors import ProviderRequestError, ProviderUnavailable, RateLimited
from app.send.runner import SENT_COPY_GRACE_SECONDS
from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.database import email_row, scalar
from tests.fixtures.events import Events
from tests.fixtures.mailboxes import seed, sent_log
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.worker import drain, make_due, send_jobs

pytestmark = pytest.mark.asyncio

PATIENT = "pat.smith@riverside-clinic.org"


@pytest_asyncio.fixture
async def routes(app: FastAPI) -> FastAPI:
    return app  # create_app registers the send routes


async def connected(
    client: httpx.AsyncClient, app: FastAPI, org: Org, provider: str, who: str = "member"
) -> tuple[dict[str, Any], str]:
    mailbox = f"send-{uuid.uuid4().hex[:8]}@{provider}.test"
    account = await connect(client, provider, org.headers(who), login_hint=mailbox)
    await drain(app)  # the first sync
    return account, mailbox


def write_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


async def post_send(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    if key is not None:
        headers = {**headers, "Idempotency-Key": key}
    return await client.post("/v1/emails", json=body, headers=headers)


def parse(raw: str) -> EmailMessage:
    message = email.message_from_bytes(raw.encode("utf-8"), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def addresses(message: EmailMessage, header: str) -> set[str]:
    value = message.get(header)
    if value is None:
        return set()
    return {a.addr_spec.lower() for a in value.addresses}


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_send_reply_with_attachments_and_tracking_then_sync_keeps_one_row(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    test_settings: Settings,
    tmp_path: Path,
    provider: str,
) -> None:
    app = routes
    org: Org = await make_org("Send flow")
    mailbox = f"flow-{uuid.uuid4().hex[:8]}@{provider}.test"

    # the original mail, part of an existing thread, synced before the reply
    original = EmailMessage()
    original["From"] = f"Pat Smith <{PATIENT}>"
    original["To"] = mailbox
    original["Subject"] = "Question about my results"
    original["Date"] = format_datetime(datetime.now(UTC))
    original["Message-ID"] = f"<orig-{uuid.uuid4().hex}@riverside-clinic.org>"
    original["In-Reply-To"] = "<root-1@riverside-clinic.org>"
    original["References"] = "<root-1@riverside-clinic.org>"
    original.set_content("When will my results be ready?")
    await seed(client, provider, mailbox, bytes(original))
    contact = await add_contact(owner_engine, test_settings, org.id, [PATIENT], "Pat")
    partner = await add_partner(owner_engine, test_settings, org.id, ["riverside-clinic.org"])

    account = await connect(client, provider, org.headers("member"), login_hint=mailbox)
    await drain(app)
    original_id = original["Message-ID"].strip("<>")
    parent_id = await scalar(
        owner_engine,
        "SELECT id FROM ce_emails WHERE account_id = :a AND internet_message_id = :m",
        a=account["id"],
        m=original_id,
    )

    pdf = bytes(range(256)) * 300 + b"%PDF-1.7\r\n\x00\xff"
    notes = "Résultats: ok\r\nline two\n\x00 binary-ish \xe9".encode("latin-1")
    doc_pdf = await add_document(
        owner_engine, test_settings, org.id, write_file(tmp_path, "results.pdf", pdf)
    )
    doc_txt = await add_document(
        owner_engine, test_settings, org.id, write_file(tmp_path, "notes.txt", notes)
    )

    async with Events(test_settings) as events:
        response = await post_send(
            client,
            org.headers("member"),
            {
                "account_id": account["id"],
                "to": [{"address": PATIENT, "name": "Pat Smith"}],
                "cc": ["desk@riverside-clinic.org"],
                "bcc": ["audit@records.example"],
                "html": (
                    '<p>Your results are <a href="https://portal.example.org/results?id=7">'
                    "online</a>.</p>"
                ),
                "text": "Your results are online: https://portal.example.org/results?id=7",
                "contact_id": contact["contact_id"],
                "document_ids": [doc_pdf["document_id"], doc_txt["document_id"]],
                "reply_to_email_id": str(parent_id),
            },
            key=f"flow-{uuid.uuid4().hex}",
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert body["warnings"] == []
        assert response.headers["location"] == f"/v1/emails/{body['id']}"
        email_id = body["id"]

        row = await email_row(owner_engine, email_id)
        assert row["status"] == "queued"
        assert row["direction"] == "outbound"
        assert row["subject"] == "Re: Question about my results"
        assert row["in_reply_to"] == original_id
        assert row["internet_message_id"]
        assert "<" not in row["internet_message_id"]
        assert row["internet_message_id"].endswith(f"@{provider}.test")
        assert row["has_attachments"] is True
        assert str(row["sent_by_user_id"]) == org["member"]["user_id"]
        links = await scalar(
            owner_engine,
            "SELECT count(*) FROM ce_email_links WHERE email_id = :e "
            "AND (contact_id = :c OR partner_id = :p)",
            e=email_id,
            c=contact["contact_id"],
            p=partner["partner_id"],
        )
        assert links == 2, "linked to the contact and, by the recipients' domain, the partner"
        assert (
            await scalar(
                owner_engine,
                "SELECT count(*) FROM activities WHERE source_email_id = :e",
                e=email_id,
            )
            == 2
        )
        jobs = await send_jobs(owner_engine, email_id)
        assert [j["status"] for j in jobs] == ["todo"]
        assert jobs[0]["args"]["reply_to_email_id"] == str(parent_id)
        assert jobs[0]["args"]["track_opens"] is jobs[0]["args"]["track_clicks"] is True
        detail = await client.get(f"/v1/emails/{email_id}", headers=org.headers("member"))
        assert detail.status_code == 200
        assert detail.json()["status"] == "queued"

        await drain(app)

        sent = await sent_log(client, provider, mailbox)
        assert len(sent) == 1
        message = parse(sent[0]["raw"])
        assert addresses(message, "To") == {PATIENT}
        assert addresses(message, "Cc") == {"desk@riverside-clinic.org"}
        assert message["In-Reply-To"].strip() == f"<{original_id}>"
        references = message["References"].split()
        assert references == ["<root-1@riverside-clinic.org>", f"<{original_id}>"]
        assert message["Subject"].lower().startswith("re:")

        parts = {p.get_filename(): p for p in message.iter_attachments()}
        assert set(parts) == {"results.pdf", "notes.txt"}
        assert parts["results.pdf"].get_content() == pdf
        assert parts["results.pdf"].get_content_type() == "application/pdf"
        assert parts["notes.txt"].get_payload(decode=True) == notes

        html_part = message.get_body(preferencelist=("html",))
        assert html_part is not None
        html = html_part.get_content()
        assert "/t/o/" in html, "the open pixel"
        assert "/t/c/" in html, "rewritten links"
        assert 'href="https://portal.example.org/results?id=7"' not in html

        row = await email_row(owner_engine, email_id)
        assert row["status"] == "sent"
        assert row["send_error"] is None
        assert row["provider_message_id"] == sent[0]["id"]
        assert row["provider_thread_id"]
        assert row["sent_at"] is not None
        assert row["internet_message_id"] == message["Message-ID"].strip().strip("<>")
        if provider == "gmail":
            assert row["provider_thread_id"] == await scalar(
                owner_engine, "SELECT provider_thread_id FROM ce_emails WHERE id = :e", e=parent_id
            ), "the reply joined the original's thread"

        ours = await events.of(email_id)
        assert len(ours) == 1, "ce.email.synced once, when sent"
        assert ours[0]["event"] == "ce.email.synced"
        assert ours[0]["direction"] == "outbound"
        assert ours[0]["contact_ids"] == [contact["contact_id"]]
        assert ours[0]["partner_ids"] == [partner["partner_id"]]

    # the Sent folder's copy is found, not stored again
    await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]))
    await drain(app)
    assert (
        await scalar(
            owner_engine,
            "SELECT count(*) FROM ce_emails WHERE account_id = :a AND direction = 'outbound'",
            a=account["id"],
        )
        == 1
    )
    row = await email_row(owner_engine, email_id)
    assert row["status"] == "sent"
    assert row["provider_message_id"] == sent[0]["id"]
    assert (
        await scalar(
            owner_engine, "SELECT count(*) FROM activities WHERE source_email_id = :e", e=email_id
        )
        == 2
    )
    assert len(await sent_log(client, provider, mailbox)) == 1


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_same_idempotency_key_concurrently_sends_once(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
) -> None:
    org: Org = await make_org("Idempotent")
    account, mailbox = await connected(client, routes, org, provider)
    key = f"twice-{uuid.uuid4().hex}"
    body = {"account_id": account["id"], "to": [PATIENT], "subject": "Hi", "text": "Hello"}
    first, second = await asyncio.gather(
        post_send(client, org.headers("member"), body, key),
        post_send(client, org.headers("member"), body, key),
    )
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["status"] == second.json()["status"] == "queued"
    assert (
        await scalar(
            owner_engine,
            "SELECT count(*) FROM ce_emails WHERE account_id = :a AND idempotency_key = :k",
            a=account["id"],
            k=key,
        )
        == 1
    )
    assert len(await send_jobs(owner_engine, first.json()["id"])) == 1

    await drain(routes)
    assert len(await sent_log(client, provider, mailbox)) == 1
    again = await post_send(client, org.headers("member"), body, key)
    assert again.status_code == 202
    assert again.json() == {"id": first.json()["id"], "status": "sent", "warnings": []}
    await drain(routes)
    assert len(await sent_log(client, provider, mailbox)) == 1

    other = await post_send(
        client, org.headers("member"), {**body, "to": ["x@elsewhere.example"]}, key
    )
    assert other.status_code == 422
    assert other.headers["content-type"].startswith("application/problem+json")


class FlakyProvider:
    """The real driver whose sends are counted in `log`; the first one fails as `mode`
    says (`ok`: never)."""

    def __init__(self, inner: MailProvider, mode: str, log: list[str]) -> None:
        self.inner = inner
        self.mode = mode
        self.log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, message: OutgoingMessage) -> SentMessage:
        self.log.append("send")
        if self.mode == "ok" or len(self.log) > 1:
            return await self.inner.send(message)
        if self.mode == "accepted_then_timeout":
            await self.inner.send(message)
            raise ProviderUnavailable("network error (ReadTimeout)", provider=self.inner.name)
        if self.mode == "rate_limited":
            raise RateLimited(retry_after=1.0, provider=self.inner.name, status=429)
        if self.mode == "rejected":
            raise ProviderRequestError(
                "request rejected", provider=self.inner.name, status=400, code="invalidArgument"
            )
        raise AssertionError(self.mode)


def flaky(monkeypatch: pytest.MonkeyPatch, app: FastAPI, mode: str) -> list[str]:
    """Every driver made from now on is a FlakyProvider sharing one log of send calls."""
    log: list[str] = []
    ctx = app.state.ctx
    real = type(ctx).account_provider

    def account_provider(provider: str, org_id: uuid.UUID, account_id: uuid.UUID) -> Any:
        return FlakyProvider(real(ctx, provider, org_id, account_id), mode, log)

    monkeypatch.setattr(ctx, "account_provider", account_provider)
    return log


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_timeout_after_the_provider_accepted_is_found_in_sent_not_resent(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    test_settings: Settings,
    provider: str,
) -> None:
    org: Org = await make_org("Uncertain")
    account, mailbox = await connected(client, routes, org, provider)
    response = await post_send(
        client,
        org.headers("member"),
        {"account_id": account["id"], "to": [PATIENT], "subject": "Once", "html": "<p>Once</p>"},
    )
    email_id = response.json()["id"]
    sends = flaky(monkeypatch, routes, "accepted_then_timeout")
    async with Events(test_settings) as events:
        await drain(routes)  # a push-triggered sync of the Sent folder runs here too
        assert len(await sent_log(client, provider, mailbox)) == 1, "the provider took it"
        [job] = await send_jobs(owner_engine, email_id)
        assert job["status"] == "todo", "the same job, handed back to the queue"
        assert job["attempts"] == 1, "its rerun is uncertain: it looks in Sent first"
        waited = (job["scheduled_at"] - datetime.now(UTC)).total_seconds()
        assert waited > SENT_COPY_GRACE_SECONDS - 30, "after the grace for the Sent copy"
        assert await events.of(email_id) == []

        assert await make_due(owner_engine, email_id) == 1
        await drain(routes)
        assert len(await events.of(email_id)) == 1, "announced once, by the retry"
    row = await email_row(owner_engine, email_id)
    assert row["status"] == "sent"
    assert len(await sent_log(client, provider, mailbox)) == 1, "found in Sent, not sent again"
    assert sends == ["send"], "the retry looked in Sent, and did not send"
    assert row["provider_message_id"] == (await sent_log(client, provider, mailbox))[0]["id"]
    assert (
        await scalar(
            owner_engine,
            "SELECT count(*) FROM ce_emails WHERE account_id = :a AND direction = 'outbound'",
            a=account["id"],
        )
        == 1
    ), "a sync that ran meanwhile left no second row"


async def test_rate_limited_send_is_retried_later_and_sent_once(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org: Org = await make_org("Throttled")
    account, mailbox = await connected(client, routes, org, "gmail")
    response = await post_send(
        client,
        org.headers("member"),
        {"account_id": account["id"], "to": [PATIENT], "subject": "Later", "text": "Later"},
    )
    email_id = response.json()["id"]
    sends = flaky(monkeypatch, routes, "rate_limited")
    await drain(routes)
    assert await sent_log(client, "gmail", mailbox) == []
    [job] = await send_jobs(owner_engine, email_id)
    assert (job["status"], job["attempts"]) == ("todo", 1)
    assert (await email_row(owner_engine, email_id))["status"] == "queued"

    await make_due(owner_engine, email_id)
    await drain(routes)
    assert len(await sent_log(client, "gmail", mailbox)) == 1
    assert sends == ["send", "send"], "429 means not sent: the retry sends"
    assert (await email_row(owner_engine, email_id))["status"] == "sent"


async def test_rejected_send_fails_with_an_error_code_and_no_content(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org: Org = await make_org("Rejected")
    account, mailbox = await connected(client, routes, org, "outlook")
    response = await post_send(
        client,
        org.headers("member"),
        {"account_id": account["id"], "to": [PATIENT], "subject": "Secret", "text": "Body"},
    )
    email_id = response.json()["id"]
    sends = flaky(monkeypatch, routes, "rejected")
    await drain(routes)
    row = await email_row(owner_engine, email_id)
    assert row["status"] == "failed"
    assert row["send_error"].startswith("rejected:")
    assert "400" in row["send_error"]
    for secret in ("Secret", "Body", PATIENT, mailbox):
        assert secret not in row["send_error"]
    assert await sent_log(client, "outlook", mailbox) == []
    assert sends == ["send"]
    assert all(j["status"] != "todo" for j in await send_jobs(owner_engine, email_id)), (
        "no retry queued"
    )
    detail = await client.get(f"/v1/emails/{email_id}", headers=org.headers("member"))
    assert detail.json()["status"] == "failed"


async def test_a_rerun_after_a_crash_mid_send_does_not_send_twice(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker dies after the provider accepted (nothing recorded): procrastinate runs
    the stalled job again, which then starts as uncertain."""
    from app.send.runner import SendJob, run_send_job

    org: Org = await make_org("Crash")
    account, mailbox = await connected(client, routes, org, "outlook")
    response = await post_send(
        client,
        org.headers("member"),
        {"account_id": account["id"], "to": [PATIENT], "subject": "Crash", "html": "<b>x</b>"},
    )
    email_id = uuid.UUID(response.json()["id"])

    class WorkerDied(BaseException):
        pass

    ctx = routes.state.ctx
    real = type(ctx).account_provider

    class Dies(FlakyProvider):
        async def send(self, message: OutgoingMessage) -> SentMessage:
            await self.inner.send(message)
            raise WorkerDied

    monkeypatch.setattr(ctx, "account_provider", lambda p, o, a: Dies(real(ctx, p, o, a), "ok", []))
    job = SendJob(org_id=org.id, email_id=email_id)
    with pytest.raises(WorkerDied):
        await run_send_job(ctx, job)
    assert (await email_row(owner_engine, str(email_id)))["status"] == "queued"
    monkeypatch.undo()

    assert await run_send_job(ctx, job, attempt=2) == "found"
    assert len(await sent_log(client, "outlook", mailbox)) == 1
    assert (await email_row(owner_engine, str(email_id)))["status"] == "sent"
    # one more run of either kind never sends it again
    assert await run_send_job(ctx, job) == "skipped"
    assert await run_send_job(ctx, job, attempt=3) == "found"
    assert len(await sent_log(client, "outlook", mailbox)) == 1


async def test_tracking_instruments_the_html_as_the_org_and_the_request_say(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The call into app.tracking.instrument (the real one, watched): made in the job,
    before the message is built, only when tracking is on."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.send import runner

    calls: list[dict[str, Any]] = []
    real_instrument_html = runner.instrument_html

    async def instrument_html(session: Any, **kwargs: Any) -> str:
        assert isinstance(session, AsyncSession)
        calls.append(kwargs)
        return await real_instrument_html(session, **kwargs)

    monkeypatch.setattr(runner, "instrument_html", instrument_html)

    org: Org = await make_org("Tracking")
    account, mailbox = await connected(client, routes, org, "gmail")
    patch = await client.patch(
        "/v1/settings",
        json={"email_custom_tracking_domain": "track.clinic.example"},
        headers=org.headers("admin"),
    )
    assert patch.status_code == 200, patch.text
    base = {"account_id": account["id"], "to": [PATIENT], "subject": "T", "html": "<p>Hi</p>"}

    first = await post_send(client, org.headers("member"), {**base, "track_clicks": False})
    await drain(routes)
    assert calls == [
        {
            "org_id": org.id,
            "email_id": uuid.UUID(first.json()["id"]),
            "html": "<p>Hi</p>",
            "track_opens": True,
            "track_clicks": False,
            "base_url": "https://track.clinic.example",
            "token_secret": routes.state.settings.tracking_token_secret.get_secret_value(),
        }
    ]
    [sent] = await sent_log(client, "gmail", mailbox)
    html = parse(sent["raw"]).get_body(preferencelist=("html",))
    assert html is not None
    assert 'src="https://track.clinic.example/t/o/' in html.get_content()
    stored = await email_row(owner_engine, first.json()["id"])
    assert stored["html_body"] == "<p>Hi</p>", "the stored copy has no pixel"

    await post_send(
        client, org.headers("member"), {**base, "track_opens": False, "track_clicks": False}
    )
    await client.patch(
        "/v1/settings", json={"email_tracking_enabled": False}, headers=org.headers("admin")
    )
    await post_send(client, org.headers("member"), base)
    await drain(routes)
    assert len(calls) == 1, "tracking off on the request, then for the org: no instrumentation"
    for later in (await sent_log(client, "gmail", mailbox))[1:]:
        later_html = parse(later["raw"]).get_body(preferencelist=("html",))
        assert later_html is not None
        assert "/t/o/" not in later_html.get_content()
    assert len(await sent_log(client, "gmail", mailbox)) == 3


async def test_a_stalled_send_job_is_run_again_and_looks_in_sent_first(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker died while the job was `doing`: the periodic task hands it back to the
    queue and the rerun (attempts > 0) checks the Sent folder before sending."""
    from types import SimpleNamespace

    from app.jobs.registry import job_app_with_tasks
    from app.send.jobs import retry_stalled_sends

    org: Org = await make_org("Stalled")
    account, mailbox = await connected(client, routes, org, "gmail")
    response = await post_send(
        client,
        org.headers("member"),
        {"account_id": account["id"], "to": [PATIENT], "subject": "S", "text": "S"},
    )
    email_id = response.json()["id"]
    async with owner_engine.begin() as conn:
        worker = (
            await conn.execute(
                text(
                    "INSERT INTO procrastinate_workers (last_heartbeat) "
                    "VALUES (now() - interval '10 minutes') RETURNING id"
                )
            )
        ).scalar_one()
        await conn.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'doing', worker_id = :w "
                "WHERE task_name = 'ce:send_email' AND args->>'email_id' = :e"
            ),
            {"w": worker, "e": email_id},
        )

    job_app = job_app_with_tasks(routes.state.settings)
    async with job_app.open_async():
        await retry_stalled_sends(SimpleNamespace(app=job_app), 0)  # type: ignore[arg-type]
    async with owner_engine.connect() as conn:
        status, attempts = (
            await conn.execute(
                text(
                    "SELECT status::text, attempts FROM procrastinate_jobs "
                    "WHERE task_name = 'ce:send_email' AND args->>'email_id' = :e"
                ),
                {"e": email_id},
            )
        ).one()
    assert (status, attempts) == ("todo", 1)

    looked: list[str] = []
    ctx = routes.state.ctx
    real = type(ctx).account_provider

    class Watched(FlakyProvider):
        async def list_messages(self, *args: Any, **kwargs: Any) -> Any:
            looked.append(args[0])
            return await self.inner.list_messages(*args, **kwargs)

    monkeypatch.setattr(
        ctx, "account_provider", lambda p, o, a: Watched(real(ctx, p, o, a), "ok", [])
    )
    await drain(routes)
    assert "sent" in looked, "the rerun looked for an earlier copy"
    assert len(await sent_log(client, "gmail", mailbox)) == 1
    assert (await email_row(owner_engine, email_id))["status"] == "sent"


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_a_large_attachment_goes_through_the_upload_paths_byte_exact(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    test_settings: Settings,
    tmp_path: Path,
    provider: str,
) -> None:
    """6 MB: above Gmail's simple send (media upload) and Graph's 3 MB (upload session)."""
    org: Org = await make_org("Large attachment")
    account, mailbox = await connected(client, routes, org, provider)
    content = os.urandom(6 * 1024 * 1024)
    document = await add_document(
        owner_engine, test_settings, org.id, write_file(tmp_path, "scan.bin", content)
    )
    response = await post_send(
        client,
        org.headers("member"),
        {
            "account_id": account["id"],
            "to": [PATIENT],
            "subject": "Scan",
            "text": "Attached.",
            "document_ids": [document["document_id"]],
        },
    )
    assert response.status_code == 202, response.text
    await drain(routes)
    [sent] = await sent_log(client, provider, mailbox)
    [attachment] = list(parse(sent["raw"]).iter_attachments())
    assert attachment.get_filename() == "scan.bin"
    assert attachment.get_payload(decode=True) == content
    assert (await email_row(owner_engine, response.json()["id"]))["status"] == "sent"
