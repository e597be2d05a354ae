"""Retention: the setting's rules, GET /v1/purges, disconnect with purge, what a purge keeps
(users' documents, newer mail, other orgs), bounded batches, the job and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.platform.documents import document_storage
from app.retention import service
from app.retention.jobs import run_retention
from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.database import insert, make_account, scalar
from tests.fixtures.mail import make_raw
from tests.fixtures.mailboxes import seed
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.retention import documents_exist, documents_of, email_ids, file_path, rows_of

pytestmark = pytest.mark.asyncio


async def _patch(client: httpx.AsyncClient, org: Org, **values: object) -> httpx.Response:
    return await client.patch("/v1/settings", json=values, headers=org.headers())


# --- the setting ------------------------------------------------------------------------


async def test_retention_must_cover_the_sync_window_whichever_is_patched(
    client: httpx.AsyncClient, org_a: Org
) -> None:
    assert (await client.get("/v1/settings", headers=org_a.headers())).json()[
        "email_retention_days"
    ] is None
    for bad in (29, 3651, 0, -1):
        r = await _patch(client, org_a, email_retention_days=bad)
        assert r.status_code == 422
        assert "between 30 and 3650" in r.json()["errors"][0]["message"]
    r = await _patch(client, org_a, email_retention_days="60")
    assert r.status_code == 422
    # the default window is 30 days: 30 is the least retention
    assert (await _patch(client, org_a, email_retention_days=30)).status_code == 200
    # widening the window past retention is refused...
    r = await _patch(client, org_a, email_sync_history_days=60)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "email_retention_days"
    assert "at least email_sync_history_days (60)" in r.json()["detail"]
    # ... as is shrinking retention below it, and a patch of both that disagrees
    assert (
        await _patch(client, org_a, email_retention_days=60, email_sync_history_days=60)
    ).status_code == 200
    assert (await _patch(client, org_a, email_retention_days=45)).status_code == 422
    r = await _patch(client, org_a, email_retention_days=40, email_sync_history_days=50)
    assert r.status_code == 422
    settings = (await client.get("/v1/settings", headers=org_a.headers())).json()
    assert settings["email_retention_days"] == 60
    assert settings["email_sync_history_days"] == 60
    # null keeps mail forever; then any window goes
    assert (await _patch(client, org_a, email_retention_days=None)).status_code == 200
    assert (await _patch(client, org_a, email_sync_history_days=90)).status_code == 200
    # resetting the window to its default (30) under a retention of 30 is fine
    assert (await _patch(client, org_a, email_retention_days=90)).status_code == 200
    assert (
        await _patch(client, org_a, email_sync_history_days=None, email_retention_days=30)
    ).status_code == 200
    # members may not change it
    r = await client.patch(
        "/v1/settings", json={"email_retention_days": 365}, headers=org_a.headers("member")
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    "values",
    [
        "email_retention_days = 29",
        "email_retention_days = 3651",
        "email_retention_days = 30, email_sync_history_days = 60",
        "email_retention_days = 29, email_sync_history_days = NULL",
    ],
)
async def test_the_database_refuses_what_the_api_refuses(
    owner_engine: AsyncEngine, org_a: Org, values: str
) -> None:
    columns = [part.split("=")[0].strip() for part in values.split(",")]
    literals = [part.split("=")[1].strip() for part in values.split(",")]
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await insert(
            owner_engine,
            f"INSERT INTO ce_module_settings (org_id, {', '.join(columns)}) "
            f"VALUES (:o, {', '.join(literals)})",
            o=org_a.id,
        )


# --- GET /v1/purges ---------------------------------------------------------------------


async def _receipt(owner_engine: AsyncEngine, org: Org, created_at: datetime, emails: int) -> None:
    counts = {
        k: 0
        for k in (
            "emails",
            "links",
            "activities",
            "participants",
            "attachments",
            "tracking_events",
            "tracked_links",
            "documents",
        )
    }
    await insert(
        owner_engine,
        "INSERT INTO ce_email_purges (org_id, scope, account_id, counts, cutoff, created_at) "
        "VALUES (:o, 'retention', gen_random_uuid(), CAST(:c AS jsonb), :t, :t)",
        o=org.id,
        c=json.dumps({**counts, "emails": emails}),
        t=created_at,
    )


async def test_purges_are_for_admins_newest_first_in_keyset_pages(
    client: httpx.AsyncClient, owner_engine: AsyncEngine, org_a: Org, org_b: Org
) -> None:
    now = datetime.now(UTC)
    for n in range(5):
        await _receipt(owner_engine, org_a, now - timedelta(days=n), emails=n)
    await _receipt(owner_engine, org_b, now, emails=99)

    assert (await client.get("/v1/purges", headers=org_a.headers("member"))).status_code == 403
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/purges", params=params, headers=org_a.headers())
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen.extend(item["counts"]["emails"] for item in body["items"])
        for item in body["items"]:
            assert item["scope"] == "retention"
            assert set(item) >= {"scope", "counts", "account_id", "cutoff", "created_at"}
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [0, 1, 2, 3, 4]  # newest first, org B's receipt never shown
    assert pages == 3
    r = await client.get("/v1/purges", params={"cursor": "not-a-cursor"}, headers=org_a.headers())
    assert r.status_code == 400
    assert (
        await client.get("/v1/purges", params={"limit": 101}, headers=org_a.headers())
    ).status_code == 422


# --- disconnect with purge ----------------------------------------------------------------


async def test_disconnect_with_purge_deletes_the_mail_and_writes_a_receipt(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    test_settings: Settings,
) -> None:
    org: Org = await make_org("Disconnect")
    mailbox = f"box-{uuid.uuid4().hex[:8]}@clinic-gmail.test"
    for n in range(3):
        raw = make_raw(
            f"s{n}@hospital.org", mailbox, f"Hello {n}", attachment=b"%PDF " + bytes([n])
        )
        await seed(client, "gmail", mailbox, raw)
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]), reason="test")
    ids = await email_ids(owner_engine, account["id"])
    assert len(ids) == 3
    before = await rows_of(owner_engine, ids)
    docs = await documents_of(owner_engine, ids)
    assert len(docs) == 3

    r = await client.delete(
        f"/v1/accounts/{account['id']}", params={"purge": "true"}, headers=org.headers()
    )
    assert r.status_code == 204, r.text
    assert set((await rows_of(owner_engine, ids)).values()) == {0}
    assert await documents_exist(owner_engine, list(docs)) == 0
    assert not any(file_path(test_settings, key).exists() for key in docs.values())
    page = (await client.get("/v1/purges", headers=org.headers())).json()
    assert len(page["items"]) == 1
    receipt = page["items"][0]
    assert receipt["scope"] == "disconnect"
    assert receipt["account_id"] == account["id"]
    assert receipt["cutoff"] is None
    assert receipt["counts"] == {**before, "documents": 3}
    assert (
        await client.get(f"/v1/accounts/{account['id']}", headers=org.headers())
    ).status_code == 404


async def test_disconnect_without_purge_keeps_mail_and_writes_no_receipt(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    org: Org = await make_org("Keep")
    mailbox = f"box-{uuid.uuid4().hex[:8]}@clinic-gmail.test"
    await seed(client, "gmail", mailbox, make_raw("s@hospital.org", mailbox, "Hi"))
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]), reason="test")
    r = await client.delete(
        f"/v1/accounts/{account['id']}", params={"purge": "false"}, headers=org.headers()
    )
    assert r.status_code == 204
    assert len(await email_ids(owner_engine, account["id"])) == 1
    assert (await client.get("/v1/purges", headers=org.headers())).json()["items"] == []


# --- what a purge keeps, batches ----------------------------------------------------------


async def _email(
    owner_engine: AsyncEngine,
    org: Org,
    account_id: uuid.UUID,
    days_ago: float,
    *,
    sent_by: uuid.UUID | None = None,
) -> uuid.UUID:
    return await insert(
        owner_engine,
        "INSERT INTO ce_emails (org_id, account_id, provider_message_id, direction, status, "
        "subject, occurred_at, sent_by_user_id) VALUES (:o, :a, :pid, :d, :s, 'x', "
        "now() - make_interval(secs => :age), :by) RETURNING id",
        o=org.id,
        a=account_id,
        pid=uuid.uuid4().hex,
        d="outbound" if sent_by else "inbound",
        s="sent" if sent_by else "received",
        age=days_ago * 86400,
        by=sent_by,
    )


async def _document(
    owner_engine: AsyncEngine,
    settings: Settings,
    org: Org,
    email_ids_: list[uuid.UUID],
    created_by: uuid.UUID | None,
) -> tuple[uuid.UUID, str]:
    key = document_storage(settings).put(b"bytes")
    document_id = await insert(
        owner_engine,
        "INSERT INTO documents (org_id, filename, size, sha256, storage_key, created_by) "
        "VALUES (:o, 'a.pdf', 5, 'x', :k, :by) RETURNING id",
        o=org.id,
        k=key,
        by=created_by,
    )
    for email_id in email_ids_:
        await insert(
            owner_engine,
            "INSERT INTO ce_email_attachments (org_id, email_id, filename, document_id) "
            "VALUES (:o, :e, 'a.pdf', :d)",
            o=org.id,
            e=email_id,
            d=document_id,
        )
    return document_id, key


async def test_users_documents_and_newer_mail_and_other_orgs_are_kept(
    app: FastAPI,
    owner_engine: AsyncEngine,
    test_settings: Settings,
    org_a: Org,
    org_b: Org,
) -> None:
    admin = uuid.UUID(org_a["admin"]["user_id"])
    account = await make_account(owner_engine, org_a.id, admin)
    old_synced = await _email(owner_engine, org_a, account, 100)
    old_sent = await _email(owner_engine, org_a, account, 100, sent_by=admin)
    old_shared = await _email(owner_engine, org_a, account, 100)
    recent = await _email(owner_engine, org_a, account, 10)
    synced_doc, synced_key = await _document(owner_engine, test_settings, org_a, [old_synced], None)
    # a document the user attached to a send (uploaded by the user, or with no creator)
    sent_doc, sent_key = await _document(owner_engine, test_settings, org_a, [old_sent], admin)
    sent_doc2, _ = await _document(owner_engine, test_settings, org_a, [old_sent], None)
    # a document an email outside the purge still names
    shared_doc, _ = await _document(owner_engine, test_settings, org_a, [old_shared, recent], None)
    other_account = await make_account(owner_engine, org_b.id, uuid.UUID(org_b["admin"]["user_id"]))
    other_old = await _email(owner_engine, org_b, other_account, 400)
    await insert(
        owner_engine,
        "INSERT INTO ce_module_settings (org_id, email_retention_days) VALUES (:o, 30)",
        o=org_a.id,
    )

    # every org (org B's untouched mail below); the counts asserted are org A's receipt's,
    # whatever other tests left in the shared database
    await run_retention(app.state.ctx.engine, test_settings)
    counts = await scalar(
        owner_engine, "SELECT counts FROM ce_email_purges WHERE org_id = :o", o=org_a.id
    )
    assert (counts["emails"], counts["documents"]) == (3, 1)
    assert await email_ids(owner_engine, str(account)) == [recent]
    assert await documents_exist(owner_engine, [synced_doc]) == 0
    assert not file_path(test_settings, synced_key).exists()
    assert await documents_exist(owner_engine, [sent_doc, sent_doc2, shared_doc]) == 3
    assert file_path(test_settings, sent_key).exists()
    # org B set no retention: nothing of it is touched
    assert await email_ids(owner_engine, str(other_account)) == [other_old]


async def test_a_big_purge_goes_in_bounded_batches_under_one_growing_receipt(
    app: FastAPI,
    owner_engine: AsyncEngine,
    test_settings: Settings,
    org_a: Org,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "BATCH_EMAILS", 2)
    admin = uuid.UUID(org_a["admin"]["user_id"])
    account = await make_account(owner_engine, org_a.id, admin)
    for n in range(5):
        await _email(owner_engine, org_a, account, 40 + n)
    await _email(owner_engine, org_a, account, 1)
    await insert(
        owner_engine,
        "INSERT INTO ce_module_settings (org_id, email_retention_days) VALUES (:o, 30)",
        o=org_a.id,
    )
    report = await run_retention(app.state.ctx.engine, test_settings, org_id=org_a.id)
    assert len(report.receipts) == 1
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT scope, counts, account_id FROM ce_email_purges WHERE org_id = :o"),
                {"o": org_a.id},
            )
        ).one()
        purged = (
            await conn.execute(
                text("SELECT count(*) FROM ce_email_purged_ids WHERE account_id = :a"),
                {"a": account},
            )
        ).scalar_one()
    assert row.scope == "retention"
    assert row.account_id == account
    assert row.counts["emails"] == 5
    assert purged == 5
    assert len(await email_ids(owner_engine, str(account))) == 1


async def test_the_retention_job_is_daily_on_the_maintenance_queue(test_settings: Settings) -> None:
    from app.jobs.registry import job_app_with_tasks

    job_app = job_app_with_tasks(test_settings)
    task = job_app.tasks["ce:purge_email_retention"]
    assert task.queue == "maintenance"
    assert any(p.task is task for p in job_app.periodic_registry.periodic_tasks.values())


async def test_cli_runs_the_purge_at_once_and_prints_a_summary(
    owner_engine: AsyncEngine, test_settings: Settings, org_a: Org
) -> None:
    admin = uuid.UUID(org_a["admin"]["user_id"])
    account = await make_account(owner_engine, org_a.id, admin)
    await _email(owner_engine, org_a, account, 45)
    await insert(
        owner_engine,
        "INSERT INTO ce_module_settings (org_id, email_retention_days) VALUES (:o, 30)",
        o=org_a.id,
    )
    env = {
        **os.environ,
        "DATABASE_URL": str(test_settings.database_url),
        "DOCUMENT_STORAGE_DIR": str(test_settings.document_storage_dir),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "retention", "run", "--org", str(org_a.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["orgs"] == 1
    assert summary["accounts"] == 1
    assert summary["counts"]["emails"] == 1
    assert len(summary["receipts"]) == 1
    assert await email_ids(owner_engine, str(account)) == []
