"""POST /v1/emails: who may send, what is refused (and how), PHI hints without leaks."""

from __future__ import annotations

import logging
import uuid
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
from app.messages.sanitize import html_to_text
from tests.fixtures.accounts import connect
from tests.fixtures.database import email_row, insert, scalar
from tests.fixtures.mailboxes import sent_log
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.worker import drain

pytestmark = pytest.mark.asyncio

PATIENT = "pat.jones@northside-health.org"


@pytest_asyncio.fixture
async def routes(app: FastAPI) -> FastAPI:
    return app  # create_app registers the send routes


@pytest_asyncio.fixture
async def sender(
    client: httpx.AsyncClient, routes: FastAPI, make_org: MakeOrg
) -> tuple[Org, dict[str, Any], str]:
    """An org whose member connected a Gmail mailbox."""
    org: Org = await make_org("Send API")
    mailbox = f"api-{uuid.uuid4().hex[:8]}@gmail.test"
    account = await connect(client, "gmail", org.headers("member"), login_hint=mailbox)
    return org, account, mailbox


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def send(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], who: str = "member", **headers: str
) -> httpx.Response:
    return await client.post("/v1/emails", json=body, headers={**org.headers(who), **headers})


async def test_recipients_are_required_and_validated(
    client: httpx.AsyncClient, sender: tuple[Org, dict[str, Any], str]
) -> None:
    org, account, _ = sender
    base = {"account_id": account["id"], "subject": "Hello", "text": "Hi"}

    body = problem(await send(client, org, base), 422)
    assert "recipient" in body["detail"]

    bad = "not-an-address@@example..org"
    for recipients in ([bad], ["pat@"], ["pat smith@example.org"], [{"address": "a\r\nb@x.org"}]):
        response = await send(client, org, {**base, "to": recipients})
        body = problem(response, 422)
        assert "not a valid email address" in body["detail"]
        assert bad not in response.text, "a rejected value is not echoed back"

    problem(await send(client, org, {**base, "to": [PATIENT], "bcc": ["x"] * 101}), 422)
    problem(await send(client, org, {**base, "to": [PATIENT], "surprise": 1}), 422)
    problem(await send(client, org, {"account_id": account["id"], "to": [PATIENT]}), 422)
    problem(await send(client, org, {**base, "to": [PATIENT], "subject": "a\nBcc: x@y.org"}), 422)
    long_key = {"Idempotency-Key": "k" * 256}
    problem(await send(client, org, {**base, "to": [PATIENT]}, **long_key), 422)


async def test_contact_gives_the_recipient_a_partner_does_not(
    client: httpx.AsyncClient,
    sender: tuple[Org, dict[str, Any], str],
    owner_engine: AsyncEngine,
    test_settings: Settings,
) -> None:
    org, account, _ = sender
    contact = await add_contact(
        owner_engine, test_settings, org.id, [PATIENT, "second@northside-health.org"]
    )
    partner = await add_partner(owner_engine, test_settings, org.id, ["northside-health.org"])
    base = {"account_id": account["id"], "subject": "Hello", "text": "Hi"}

    response = await send(client, org, {**base, "contact_id": contact["contact_id"]})
    assert response.status_code == 202, response.text
    row = await email_row(owner_engine, response.json()["id"])
    assert row["to_recipients"] == [{"name": None, "address": PATIENT}]
    linked = await scalar(
        owner_engine,
        "SELECT array_agg(coalesce(contact_id, partner_id)::text ORDER BY contact_id NULLS LAST) "
        "FROM ce_email_links WHERE email_id = :e",
        e=row["id"],
    )
    assert linked == [contact["contact_id"], partner["partner_id"]]

    body = problem(await send(client, org, {**base, "partner_id": partner["partner_id"]}), 422)
    assert "partner" in body["detail"]
    ok = await send(client, org, {**base, "partner_id": partner["partner_id"], "to": [PATIENT]})
    assert ok.status_code == 202


async def test_ids_of_another_org_are_not_found(
    client: httpx.AsyncClient,
    sender: tuple[Org, dict[str, Any], str],
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    test_settings: Settings,
    tmp_path: Path,
) -> None:
    org, account, _ = sender
    other: Org = await make_org("Elsewhere")
    other_account = await connect(
        client, "outlook", other.headers("member"), login_hint=f"o-{uuid.uuid4().hex[:6]}@x.test"
    )
    contact = await add_contact(owner_engine, test_settings, other.id, ["c@other.example"])
    partner = await add_partner(owner_engine, test_settings, other.id, ["other.example"])
    path = tmp_path / "x.pdf"
    path.write_bytes(b"%PDF")
    document = await add_document(owner_engine, test_settings, other.id, path)
    other_email = await insert(
        owner_engine,
        "INSERT INTO ce_emails (org_id, account_id, direction, status, subject, "
        "internet_message_id) VALUES (:o, :a, 'inbound', 'received', 's', 'm@x') "
        "RETURNING id",
        o=other.id,
        a=other_account["id"],
    )
    base = {"account_id": account["id"], "to": [PATIENT], "subject": "Hi", "text": "Hi"}
    for extra in (
        {"account_id": other_account["id"]},
        {"contact_id": contact["contact_id"]},
        {"partner_id": partner["partner_id"]},
        {"document_ids": [document["document_id"]]},
        {"reply_to_email_id": str(other_email)},
        {"account_id": str(uuid.uuid4())},
    ):
        problem(await send(client, org, {**base, **extra}), 404)
    assert (
        await scalar(
            owner_engine, "SELECT count(*) FROM ce_emails WHERE account_id = :a", a=account["id"]
        )
        == 0
    )


async def test_only_the_owner_of_an_active_mailbox_sends(
    client: httpx.AsyncClient,
    sender: tuple[Org, dict[str, Any], str],
    owner_engine: AsyncEngine,
) -> None:
    org, account, _ = sender
    body = {"account_id": account["id"], "to": [PATIENT], "subject": "Hi", "text": "Hi"}
    assert (
        "only the mailbox's owner"
        in problem(await send(client, org, body, "admin"), 403)["detail"].lower()
    )
    for status in ("reauth_required", "disconnected"):
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("UPDATE ce_email_accounts SET status = :s WHERE id = :id"),
                {"s": status, "id": account["id"]},
            )
        assert problem(await send(client, org, body), 409)["account_status"] == status
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE ce_email_accounts SET status = 'active' WHERE id = :id"),
            {"id": account["id"]},
        )
    assert (await send(client, org, body)).status_code == 202


@pytest.mark.parametrize(("provider", "size_mb"), [("gmail", 36), ("outlook", 151)])
async def test_too_large_for_the_provider_is_413(
    client: httpx.AsyncClient,
    routes: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    provider: str,
    size_mb: int,
) -> None:
    org: Org = await make_org("Large")
    account = await connect(
        client, provider, org.headers("member"), login_hint=f"big-{uuid.uuid4().hex[:6]}@x.test"
    )
    document_id = await insert(
        owner_engine,
        "INSERT INTO documents (org_id, filename, content_type, size, sha256, "
        "storage_key) VALUES (:o, 'scan.tiff', 'image/tiff', :size, 'x', 'nokey') "
        "RETURNING id",
        o=org.id,
        size=size_mb * 1024 * 1024,
    )
    body = {
        "account_id": account["id"],
        "to": [PATIENT],
        "subject": "Scan",
        "text": "Attached.",
        "document_ids": [str(document_id)],
    }
    response = await send(client, org, body)
    problem_body = problem(response, 413)
    assert problem_body["limit_bytes"] < problem_body["estimated_bytes"]
    assert (
        await scalar(
            owner_engine, "SELECT count(*) FROM ce_emails WHERE account_id = :a", a=account["id"]
        )
        == 0
    )


async def test_phi_hints_have_positions_and_never_reach_the_logs(
    client: httpx.AsyncClient,
    routes: FastAPI,
    sender: tuple[Org, dict[str, Any], str],
    owner_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    org, account, mailbox = sender
    ssn, dob, phone, mrn = "123-45-6789", "03/14/1975", "(555) 234-5678", "A1234567"
    subject = f"Call me at {phone}"
    text_body = f"Patient SSN {ssn}, MRN: {mrn}."
    html = f"<p>Name: Pat</p><table><tr><td>DOB:</td><td>{dob}</td></tr></table>"
    body = {
        "account_id": account["id"],
        "to": [PATIENT],
        "subject": subject,
        "text": text_body,
        "html": html,
    }
    caplog.set_level(logging.DEBUG)
    response = await send(client, org, body)
    assert response.status_code == 202, response.text
    warnings = response.json()["warnings"]
    found = {(w["field"], w["type"]) for w in warnings}
    assert found == {
        ("subject", "phone"),
        ("text", "ssn"),
        ("text", "mrn"),
        ("html", "date_of_birth"),
    }
    sources = {"subject": subject, "text": text_body, "html": html_to_text(html)}
    values = {"phone": phone, "ssn": ssn, "mrn": mrn, "date_of_birth": dob}
    for w in warnings:
        assert set(w) == {"type", "field", "start", "end"}
        assert sources[w["field"]][w["start"] : w["end"]] == values[w["type"]]
    for value in values.values():
        assert value not in response.text, "positions only, never the value"

    await drain(routes)  # the job's logs too
    assert len(await sent_log(client, "gmail", mailbox)) == 1
    assert caplog.records, "the request and the job logged"
    secrets = [*values.values(), subject, text_body, PATIENT]
    for record in caplog.records:
        rendered = " ".join([record.getMessage(), *(str(v) for v in record.__dict__.values())])
        for secret in secrets:
            assert secret not in rendered, (record.name, record.msg)

    quiet = await send(client, org, {**body, "check_phi": False})
    assert quiet.status_code == 202
    assert quiet.json()["warnings"] == []
