"""Must show 4: mail past the retention window is gone from every table and from the
document store, the receipt counts what went, and no later sync brings it back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.retention.jobs import run_retention
from app.sync.service import run_sync
from tests.fixtures.accounts import connect
from tests.fixtures.database import insert, make_contact, make_partner
from tests.fixtures.mail import make_raw
from tests.fixtures.mailboxes import seed
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.retention import (
    documents_exist,
    documents_of,
    email_ids,
    file_path,
    rows_of,
)

pytestmark = pytest.mark.asyncio

PROVIDERS = ["gmail", "outlook"]


async def _patch(client: httpx.AsyncClient, org: Org, **values: object) -> None:
    r = await client.patch("/v1/settings", json=values, headers=org.headers())
    assert r.status_code == 200, r.text


async def _sync(app: FastAPI, org: Org, account_id: str) -> None:
    await run_sync(app.state.ctx, org.id, uuid.UUID(account_id), reason="test")


async def _tracking_rows(owner_engine: AsyncEngine, org: Org, ids: list[uuid.UUID]) -> None:
    """Sync writes no tracking rows for received mail; these stand for opens and links."""
    for n, email_id in enumerate(ids):
        await insert(
            owner_engine,
            "INSERT INTO ce_email_tracking_events (org_id, email_id, type) "
            "VALUES (:o, :e, 'opened'), (:o, :e, 'clicked')",
            o=org.id,
            e=email_id,
        )
        await insert(
            owner_engine,
            "INSERT INTO ce_email_tracked_links (org_id, email_id, position, url) "
            "VALUES (:o, :e, 0, :u)",
            o=org.id,
            e=email_id,
            u=f"https://example.org/{n}",
        )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_retention_purges_everywhere_with_a_matching_receipt_and_no_reimport(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    test_settings: Settings,
    provider: str,
) -> None:
    org: Org = await make_org(f"Retention {provider}")
    mailbox = f"box-{uuid.uuid4().hex[:8]}@clinic-{provider}.test"
    sender = f"pat-{uuid.uuid4().hex[:6]}@hospital-{provider}.org"
    await make_contact(owner_engine, org.id, sender)
    await make_partner(owner_engine, org.id, f"hospital-{provider}.org")
    now = datetime.now(UTC)
    # a 90-day window first, so that mail 50 and 80 days old is synced
    await _patch(client, org, email_sync_history_days=90)
    for age, label in ((80, "old-a"), (50, "old-b"), (10, "new-a"), (2, "new-b")):
        raw = make_raw(
            sender,
            mailbox,
            f"{label} {uuid.uuid4().hex[:6]}",
            attachment=b"%PDF-1.4 " + label.encode(),
        )
        await seed(client, provider, mailbox, raw, received_at=now - timedelta(days=age))
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    await _sync(app, org, account["id"])

    cutoff_sql = "occurred_at < now() - interval '30 days'"
    old = await email_ids(owner_engine, account["id"], cutoff_sql)
    new = await email_ids(owner_engine, account["id"], f"NOT ({cutoff_sql})")
    assert len(old) == 2
    assert len(new) == 2
    await _tracking_rows(owner_engine, org, old + new[:1])
    # an audited read of an old email: audit rows outlive the mail they name
    assert (await client.get(f"/v1/emails/{old[0]}", headers=org.headers())).status_code == 200

    before = await rows_of(owner_engine, old)
    assert before == {
        "emails": 2,
        "links": 4,  # the contact and the partner, each
        "activities": 4,
        "participants": 4,  # each: its sender and the mailbox it reached
        "attachments": 2,
        "tracking_events": 4,
        "tracked_links": 2,
    }
    kept_before = await rows_of(owner_engine, new)
    old_docs = await documents_of(owner_engine, old)
    new_docs = await documents_of(owner_engine, new)
    assert len(old_docs) == 2
    assert len(new_docs) == 2
    assert all(file_path(test_settings, key).exists() for key in old_docs.values())

    # retention 30 days (the window must shrink first: retention >= history)
    await _patch(client, org, email_sync_history_days=30, email_retention_days=30)
    report = await run_retention(app.state.ctx.engine, test_settings, org_id=org.id)

    # gone from every table that referred to it, and from the document store
    assert set((await rows_of(owner_engine, old)).values()) == {0}
    assert await documents_exist(owner_engine, list(old_docs)) == 0
    assert not any(file_path(test_settings, key).exists() for key in old_docs.values())
    # the newer mail and its documents are untouched
    assert await rows_of(owner_engine, new) == kept_before
    assert await documents_exist(owner_engine, list(new_docs)) == 2
    assert all(file_path(test_settings, key).exists() for key in new_docs.values())
    # audit rows are not email retention's to delete
    async with owner_engine.connect() as conn:
        audited = (
            await conn.execute(
                text("SELECT count(*) FROM ce_email_access_audit WHERE :e = ANY(email_ids)"),
                {"e": old[0]},
            )
        ).scalar_one()
    assert audited == 1

    # the receipt counts exactly what went
    expected = {**before, "documents": 2}
    assert report.accounts == 1
    assert report.counts.as_dict() == expected
    assert report.files_removed == 2
    page = (await client.get("/v1/purges", headers=org.headers())).json()
    assert len(page["items"]) == 1
    receipt = page["items"][0]
    assert receipt["scope"] == "retention"
    assert receipt["account_id"] == account["id"]
    assert receipt["counts"] == expected
    cutoff = datetime.fromisoformat(receipt["cutoff"])
    assert abs((cutoff - (now - timedelta(days=30))).total_seconds()) < 120

    # a second run finds nothing more and writes no receipt
    again = await run_retention(app.state.ctx.engine, test_settings, org_id=org.id)
    assert again.receipts == []
    assert again.counts.emails == 0

    # not re-imported: widen both windows back to 90 days (the purged mail is inside it
    # again), forget the cursor so the next sync lists the whole window afresh
    await _patch(client, org, email_retention_days=90, email_sync_history_days=90)
    await insert(
        owner_engine,
        "UPDATE ce_email_accounts SET sync_cursor = '{}'::jsonb WHERE id = :a",
        a=account["id"],
    )
    await _sync(app, org, account["id"])
    assert await email_ids(owner_engine, account["id"]) == new
    async with owner_engine.connect() as conn:
        purged = (
            await conn.execute(
                text("SELECT count(*) FROM ce_email_purged_ids WHERE account_id = :a"),
                {"a": account["id"]},
            )
        ).scalar_one()
    assert purged == 2

    # control: the same sync without the record of purged ids would have fetched them
    await insert(
        owner_engine, "DELETE FROM ce_email_purged_ids WHERE account_id = :a", a=account["id"]
    )
    await insert(
        owner_engine,
        "UPDATE ce_email_accounts SET sync_cursor = '{}'::jsonb WHERE id = :a",
        a=account["id"],
    )
    await _sync(app, org, account["id"])
    assert len(await email_ids(owner_engine, account["id"])) == 4
