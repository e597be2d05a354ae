"""The access audit through the API: every read of content leaves a row, both audit
endpoints and the CSV show it, and only the right people may look."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.rls import org_transaction
from app.platform.documents import document_storage
from tests.fixtures.accounts import new_account
from tests.fixtures.database import insert, make_contact
from tests.fixtures.mail import build_raw, remote, store
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio

AUDIT = "/v1/audit/email-access"


async def _mail_with_attachment(
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org: Org,
    settings: Settings,
    owner: str = "member",
    address: str = "desk@clinic.example",
) -> tuple[uuid.UUID, uuid.UUID, dict[str, Any]]:
    account = await new_account(owner_engine, org, address, owner=owner)
    contact = await make_contact(owner_engine, org.id, f"pat-{uuid.uuid4().hex[:6]}@example.net")
    contact_address = await insert(
        owner_engine,
        "SELECT email FROM contact_emails WHERE contact_id = :c",
        c=contact,
    )
    raw = build_raw(
        sender=contact_address,
        to=[address],
        subject="Lab results",
        body="Results attached.",
        attachments=[("results.txt", "text/plain", b"all normal")],
    )
    stored = await store(
        app_engine, org, account, [remote(raw)], storage=document_storage(settings)
    )
    return stored.email_ids[0], contact, account


async def _items(client: httpx.AsyncClient, org: Org, path: str, who: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=org.headers(who))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_detail_download_and_page_appear_in_both_endpoints_and_the_csv(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    make_org: MakeOrg,
    test_settings: Settings,
) -> None:
    org: Org = await make_org("Audit clinic")
    email_id, contact, _ = await _mail_with_attachment(owner_engine, app_engine, org, test_settings)
    member = org["member"]["user_id"]
    headers = org.headers("member")

    detail = await client.get(f"/v1/emails/{email_id}", headers=headers)
    assert detail.status_code == 200, detail.text
    [attachment] = detail.json()["attachments"]
    download = await client.get(
        f"/v1/emails/{email_id}/attachments/{attachment['id']}", headers=headers
    )
    assert download.status_code == 200
    page = await client.get(f"/v1/contacts/{contact}/emails", headers=headers)
    assert [i["id"] for i in page.json()["items"]] == [str(email_id)]
    expected = {
        ("read", detail.headers["x-request-id"], None),
        ("download", download.headers["x-request-id"], attachment["id"]),
        ("list", page.headers["x-request-id"], None),
    }

    def seen(items: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
        for item in items:
            assert item["user_id"] == member
            assert item["email_ids"] == [str(email_id)]
            assert item["sealed"] is False
        return {(i["action"], i["request_id"], i["attachment_id"]) for i in items}

    # the org's audit (admins): newest first
    trail = await _items(client, org, AUDIT, "admin")
    assert seen(trail) == expected
    assert [i["action"] for i in trail] == ["list", "download", "read"]
    # who read this email: the mailbox's owner (the member) and an admin alike
    assert seen(await _items(client, org, f"/v1/emails/{email_id}/access", "member")) == expected
    assert seen(await _items(client, org, f"/v1/emails/{email_id}/access", "admin")) == expected

    # the compliance officer's CSV: a header row, then the same rows
    response = await client.get(AUDIT, headers={**org.headers(), "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert {(r["action"], r["request_id"], r["attachment_id"] or None) for r in table} == expected
    assert {r["user_id"] for r in table} == {member}
    assert {r["email_ids"] for r in table} == {str(email_id)}

    # filters: by user, by email, by time
    assert len(await _items(client, org, AUDIT, "admin", user_id=member)) == 3
    assert await _items(client, org, AUDIT, "admin", user_id=org["admin"]["user_id"]) == []
    assert len(await _items(client, org, AUDIT, "admin", email_id=str(email_id))) == 3
    assert await _items(client, org, AUDIT, "admin", email_id=str(uuid.uuid4())) == []
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert await _items(client, org, AUDIT, "admin", since=soon) == []
    assert len(await _items(client, org, AUDIT, "admin", until=soon)) == 3


async def test_keyset_pages_and_every_timeline_page_is_one_row(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    make_org: MakeOrg,
    test_settings: Settings,
) -> None:
    org: Org = await make_org("Pages")
    email_id, _, account = await _mail_with_attachment(owner_engine, app_engine, org, test_settings)
    headers = org.headers("member")
    for path in ("/v1/emails", f"/v1/emails?account_id={account['id']}"):
        assert (await client.get(path, headers=headers)).status_code == 200
    # an empty page showed no content: no row
    empty = await client.get("/v1/emails?direction=outbound", headers=headers)
    assert empty.json()["items"] == []
    for _ in range(3):
        await client.get(f"/v1/emails/{email_id}", headers=headers)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get(AUDIT, params=params, headers=org.headers())).json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5  # 2 pages listed + 3 reads


async def test_who_may_look(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    make_org: MakeOrg,
    test_settings: Settings,
) -> None:
    org: Org = await make_org("Who")
    # the admin's mailbox: the member is not its owner
    admins, _, account = await _mail_with_attachment(
        owner_engine, app_engine, org, test_settings, owner="admin"
    )
    # members may not read the org's audit
    response = await client.get(AUDIT, headers=org.headers("member"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    # ... nor who read a mailbox that is not theirs
    response = await client.get(f"/v1/emails/{admins}/access", headers=org.headers("member"))
    assert response.status_code == 403
    # a private mailbox's mail is not even found
    await insert(
        owner_engine,
        "UPDATE ce_email_accounts SET visibility = 'private' WHERE id = :id",
        id=account["id"],
    )
    response = await client.get(f"/v1/emails/{admins}/access", headers=org.headers("member"))
    assert response.status_code == 404
    # an unknown email, and another org's email, are not found either
    other: Org = await make_org("Other")
    response = await client.get(f"/v1/emails/{admins}/access", headers=other.headers())
    assert response.status_code == 404
    assert (await client.get(AUDIT, headers=other.headers())).json()["items"] == []
    # without a token: 401
    assert (await client.get(AUDIT)).status_code == 401


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "not-a-cursor"}, 400),
        ({"since": "yesterday"}, 422),
        ({"until": "2026-13-45"}, 422),
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, 422),
        ({"user_id": "nobody"}, 422),
        ({"limit": 0}, 422),
        ({"limit": 101}, 422),
    ],
)
async def test_bad_input_is_a_problem(
    client: httpx.AsyncClient, org_a: Org, params: dict[str, Any], status: int
) -> None:
    response = await client.get(AUDIT, params=params, headers=org_a.headers())
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


async def test_naive_times_are_utc_and_dates_are_accepted(
    client: httpx.AsyncClient, org_a: Org
) -> None:
    for params in ({"since": "2026-01-01"}, {"until": "2026-01-01T10:00:00"}):
        response = await client.get(AUDIT, params=params, headers=org_a.headers())
        assert response.status_code == 200, (params, response.text)


async def test_one_page_row_names_every_email_and_each_is_found_by_email(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    make_org: MakeOrg,
    test_settings: Settings,
) -> None:
    org: Org = await make_org("Two")
    first, _, _ = await _mail_with_attachment(owner_engine, app_engine, org, test_settings)
    second, _, _ = await _mail_with_attachment(
        owner_engine, app_engine, org, test_settings, address="front@clinic.example"
    )
    page = await client.get("/v1/emails", headers=org.headers("member"))
    assert {i["id"] for i in page.json()["items"]} == {str(first), str(second)}
    [row] = await _items(client, org, AUDIT, "admin")
    assert row["action"] == "list"
    assert set(row["email_ids"]) == {str(first), str(second)}
    for email_id in (first, second):
        [found] = await _items(client, org, AUDIT, "admin", email_id=str(email_id))
        assert found["id"] == row["id"]
        [found] = await _items(client, org, f"/v1/emails/{email_id}/access", "member")
        assert found["id"] == row["id"]


async def test_who_read_an_email_is_an_index_range_scan_under_rls(
    app_engine: AsyncEngine, org_a: Org
) -> None:
    """Array containment is not leakproof, so under RLS it could never use an index; the
    side table's btree can."""
    async with org_transaction(app_engine, org_a.id) as session:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            (
                await session.execute(
                    text(
                        "EXPLAIN SELECT a.id FROM ce_email_access_audit_emails k "
                        "JOIN ce_email_access_audit a ON a.org_id = k.org_id "
                        "AND a.id = k.audit_id AND k.email_id = :e "
                        "ORDER BY k.occurred_at DESC, k.audit_id DESC LIMIT 26"
                    ),
                    {"e": uuid.uuid4()},
                )
            ).scalars()
        )
    assert "ce_email_access_audit_emails_pkey" in plan, plan
    assert "Index Cond: ((org_id = " in plan, plan
    assert "(email_id = " in plan, plan
