"""The timeline and detail API: shapes, keyset pages, dedup, visibility, org isolation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.rls import org_transaction
from app.messages.endpoints import content_disposition
from app.messages.store import delete_remote_messages
from app.platform.documents import document_storage
from tests.fixtures.accounts import new_account
from tests.fixtures.database import insert, make_contact, make_partner, rows
from tests.fixtures.mail import build_raw, remote, store
from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio

OWN = "desk@clinic.example"
LIST_ITEM_KEYS = {
    "id",
    "account_id",
    "direction",
    "status",
    "subject",
    "snippet",
    "from",
    "to",
    "cc",
    "sent_at",
    "contact_ids",
    "partner_ids",
    "has_attachments",
}


async def _get(
    client: httpx.AsyncClient, org: Org, path: str, who: str = "admin", **params: Any
) -> httpx.Response:
    return await client.get(
        path, params={k: v for k, v in params.items() if v is not None}, headers=org.headers(who)
    )


async def _walk(
    client: httpx.AsyncClient, org: Org, path: str, limit: int, **params: Any
) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        response = await _get(client, org, path, limit=limit, cursor=cursor, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


async def test_list_items_have_the_contract_shape(
    client: httpx.AsyncClient, owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    raw = build_raw(
        sender="Pat <pat@example.net>",
        to=[OWN],
        cc=["Dr Who <dr@hospital.org>"],
        subject="Lab results",
        body="All fine.",
        attachments=[("r.pdf", "application/pdf", b"%PDF")],
    )
    result = await store(app_engine, org_a, account, [remote(raw)])

    for path, params in (
        ("/v1/emails", {}),
        ("/v1/emails", {"contact_id": str(contact)}),
        (f"/v1/contacts/{contact}/emails", {}),
        (f"/v1/partners/{partner}/emails", {}),
    ):
        response = await _get(client, org_a, path, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert body["next_cursor"] is None
        [item] = [i for i in body["items"] if i["id"] == str(result.email_ids[0])]
        assert LIST_ITEM_KEYS <= set(item)
        assert item["account_id"] == str(account["id"])
        assert (item["direction"], item["status"]) == ("inbound", "received")
        assert item["subject"] == "Lab results"
        assert item["snippet"] == "All fine."
        assert item["from"] == {"name": "Pat", "address": "pat@example.net"}
        assert item["to"] == [{"name": None, "address": OWN}]
        assert item["cc"] == [{"name": "Dr Who", "address": "dr@hospital.org"}]
        assert item["sent_at"].startswith("2026-11-02T09:30:00")
        assert item["contact_ids"] == [str(contact)]
        assert item["partner_ids"] == [str(partner)]
        assert item["has_attachments"] is True
        assert "text_body" not in item
        assert "html_body" not in item


async def test_keyset_pages_cover_everything_once_with_ties(
    client: httpx.AsyncClient, owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    tie = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
    times = (
        [tie] * 7
        + [tie + timedelta(minutes=i) for i in (1, 2, 3)]
        + [tie - timedelta(minutes=i) for i in (1, 2)]
    )
    messages = [
        remote(build_raw(sender="pat@example.net", to=[OWN], subject=f"m{i}"), received_at=t)
        for i, t in enumerate(times)
    ]
    await store(app_engine, org_a, account, messages)

    for path, params in (
        ("/v1/emails", {"account_id": str(account["id"])}),
        (f"/v1/contacts/{contact}/emails", {}),
    ):
        pages = await _walk(client, org_a, path, limit=3, **params)
        assert [len(p) for p in pages] == [3, 3, 3, 3]
        items = [i for p in pages for i in p]
        ids = [i["id"] for i in items]
        assert len(set(ids)) == len(times) == len(ids), "every email exactly once"
        keys = [(datetime.fromisoformat(i["occurred_at"]), uuid.UUID(i["id"])) for i in items]
        assert keys == sorted(keys, reverse=True), "occurred_at DESC, id DESC"

    # a page size that divides the total still ends with next_cursor null
    pages = await _walk(client, org_a, "/v1/emails", limit=4, account_id=str(account["id"]))
    assert [len(p) for p in pages] == [4, 4, 4]


async def test_bad_cursor_and_limits_are_problems(client: httpx.AsyncClient, org_a: Org) -> None:
    response = await _get(client, org_a, "/v1/emails", cursor="not-a-cursor")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    for limit in (0, 101):
        response = await _get(client, org_a, "/v1/emails", limit=limit)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
    response = await _get(client, org_a, "/v1/emails", direction="sideways")
    assert response.status_code == 422


async def test_one_message_in_two_mailboxes_shows_once(
    client: httpx.AsyncClient, owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    first = await new_account(owner_engine, org_a, "one@clinic.example")
    second = await new_account(owner_engine, org_a, "two@clinic.example", owner="member")
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    raw = build_raw(
        sender="pat@example.net",
        to=["one@clinic.example", "two@clinic.example"],
        message_id="shared-1",
    )
    early = datetime(2026, 11, 6, 8, 0, tzinfo=UTC)
    one = await store(app_engine, org_a, first, [remote(raw, received_at=early)])
    two = await store(
        app_engine, org_a, second, [remote(raw, received_at=early + timedelta(seconds=30))]
    )

    for path, params in (
        ("/v1/emails", {}),
        (f"/v1/contacts/{contact}/emails", {}),
        ("/v1/emails", {"contact_id": str(contact)}),
    ):
        response = await _get(client, org_a, path, **params)
        ids = [i["id"] for i in response.json()["items"]]
        assert ids == [str(one.email_ids[0])], "the earliest copy stands for both"
    # each mailbox's own view still shows its copy
    response = await _get(client, org_a, "/v1/emails", account_id=str(second["id"]))
    assert [i["id"] for i in response.json()["items"]] == [str(two.email_ids[0])]

    # the first copy leaves its mailbox: the other one takes its place
    async with org_transaction(app_engine, org_a.id) as s:
        [pid] = [
            r["provider_message_id"]
            for r in await rows(
                app_engine,
                org_a,
                "SELECT provider_message_id FROM ce_emails WHERE id = :e",
                e=one.email_ids[0],
            )
        ]
        assert await delete_remote_messages(s, first["id"], [pid]) == 1
    response = await _get(client, org_a, f"/v1/contacts/{contact}/emails")
    assert [i["id"] for i in response.json()["items"]] == [str(two.email_ids[0])]


async def test_deleted_mail_leaves_the_timeline_and_the_activities(
    client: httpx.AsyncClient, owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    await store(
        app_engine,
        org_a,
        account,
        [
            remote(build_raw(sender="pat@example.net", to=[OWN]), provider_id="keep"),
            remote(build_raw(sender="pat@example.net", to=[OWN]), provider_id="drop"),
        ],
    )
    assert len((await _get(client, org_a, f"/v1/contacts/{contact}/emails")).json()["items"]) == 2
    async with org_transaction(app_engine, org_a.id) as s:
        await delete_remote_messages(s, account["id"], ["drop"])
    items = (await _get(client, org_a, f"/v1/contacts/{contact}/emails")).json()["items"]
    [kept] = await rows(
        app_engine, org_a, "SELECT id FROM ce_emails WHERE provider_message_id = 'keep'"
    )
    assert [i["id"] for i in items] == [str(kept["id"])]
    activities = await rows(
        app_engine, org_a, "SELECT source_email_id FROM activities WHERE contact_id = :c", c=contact
    )
    assert [a["source_email_id"] for a in activities] == [kept["id"]]


async def test_private_mailboxes_show_to_their_owner_only(
    client: httpx.AsyncClient, owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    # the admin's private mailbox, and the member's own private one
    admin_box = await new_account(owner_engine, org_a, "admin-box@clinic.example")
    member_box = await new_account(owner_engine, org_a, "member-box@clinic.example", owner="member")
    for box in (admin_box, member_box):
        await insert(
            owner_engine,
            "UPDATE ce_email_accounts SET visibility = 'private' WHERE id = :id",
            id=box["id"],
        )
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    hidden = (
        await store(
            app_engine,
            org_a,
            admin_box,
            [remote(build_raw(sender="pat@example.net", to=["admin-box@clinic.example"]))],
        )
    ).email_ids[0]
    mine = (
        await store(
            app_engine,
            org_a,
            member_box,
            [remote(build_raw(sender="pat@example.net", to=["member-box@clinic.example"]))],
        )
    ).email_ids[0]

    as_member = {
        i["id"]
        for i in (await _get(client, org_a, f"/v1/contacts/{contact}/emails", who="member")).json()[
            "items"
        ]
    }
    assert as_member == {str(mine)}
    assert (await _get(client, org_a, f"/v1/emails/{hidden}", who="member")).status_code == 404
    assert (
        await _get(client, org_a, "/v1/emails", who="member", account_id=str(admin_box["id"]))
    ).json()["items"] == []
    assert (await _get(client, org_a, f"/v1/emails/{mine}", who="member")).status_code == 200

    as_admin = {
        i["id"]
        for i in (await _get(client, org_a, f"/v1/contacts/{contact}/emails")).json()["items"]
    }
    # Issue 11: admins are "others" for content; a member's private mailbox hides from them.
    assert as_admin == {str(hidden)}, "admins see their own private mail, not a member's"
    assert (await _get(client, org_a, f"/v1/emails/{mine}")).status_code == 404
    assert (await _get(client, org_a, f"/v1/emails/{hidden}")).status_code == 200


async def test_detail_has_bodies_participants_attachments_and_tracking(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    test_settings: Settings,
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    raw = build_raw(
        sender=OWN,
        to=["Pat <PAT@example.net>"],
        cc=["dr@ward.hospital.org"],
        bcc=["audit@elsewhere.example"],
        subject="Follow-up",
        body="See you Monday.",
        html="<p>See you <i>Monday</i>.</p>",
        attachments=[
            ("plan.txt", "text/plain", b"the care plan"),
            ('we"ird\\name.txt', "text/plain", b"odd"),
        ],
    )
    storage = document_storage(test_settings)
    [email_id] = (
        await store(app_engine, org_a, account, [remote(raw, folder="sent")], storage=storage)
    ).email_ids
    await insert(
        owner_engine,
        "UPDATE ce_emails SET open_count = 3, click_count = 1, "
        "first_opened_at = '2026-11-02T10:00:00Z', last_opened_at = '2026-11-02T12:00:00Z', "
        "html_body = html_body || '<script>alert(1)</script>' WHERE id = :id",
        id=email_id,
    )

    response = await _get(client, org_a, f"/v1/emails/{email_id}")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert LIST_ITEM_KEYS <= set(detail)
    assert detail["direction"] == "outbound"
    assert detail["status"] == "sent"
    assert "See you Monday." in detail["text_body"]
    assert "<i>Monday</i>" in detail["html_body"]
    assert "script" not in detail["html_body"]
    assert detail["body_truncated"] is False
    assert detail["contact_ids"] == [str(contact)]
    assert detail["partner_ids"] == [str(partner)]
    people = {(p["role"], p["address"]): p for p in detail["participants"]}
    assert set(people) == {
        ("from", OWN),
        ("to", "pat@example.net"),
        ("cc", "dr@ward.hospital.org"),
        ("bcc", "audit@elsewhere.example"),
    }
    assert people[("to", "pat@example.net")]["contact_id"] == str(contact)
    assert people[("to", "pat@example.net")]["name"] == "Pat"
    assert people[("cc", "dr@ward.hospital.org")]["partner_id"] == str(partner)
    assert people[("from", OWN)]["contact_id"] is None
    assert detail["tracking"]["opens"] == 3
    assert detail["tracking"]["clicks"] == 1
    assert detail["tracking"]["bounced"] is False
    assert detail["tracking"]["first_opened_at"].startswith("2026-11-02T10:00")
    assert detail["tracking"]["last_opened_at"].startswith("2026-11-02T12:00")
    plan, weird = detail["attachments"]
    assert {k: plan[k] for k in ("filename", "content_type", "size", "is_inline")} == {
        "filename": "plan.txt",
        "content_type": "text/plain",
        "size": 13,
        "is_inline": False,
    }
    assert plan["document_id"] is not None

    download = await _get(client, org_a, f"/v1/emails/{email_id}/attachments/{plan['id']}")
    assert download.status_code == 200
    assert download.content == b"the care plan"
    assert download.headers["content-type"].startswith("text/plain")
    assert download.headers["content-disposition"].startswith('attachment; filename="plan.txt"')
    assert download.headers["x-content-type-options"] == "nosniff"
    odd = await _get(client, org_a, f"/v1/emails/{email_id}/attachments/{weird['id']}")
    disposition = odd.headers["content-disposition"]
    assert odd.status_code == 200
    assert disposition.startswith("attachment; ")
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert disposition.count('"') == 2
    assert "\\" not in disposition

    # metadata without stored content, and an attachment of another email: 404
    await insert(
        owner_engine,
        "UPDATE ce_email_attachments SET document_id = NULL WHERE id = :id",
        id=weird["id"],
    )
    missing = await _get(client, org_a, f"/v1/emails/{email_id}/attachments/{weird['id']}")
    assert missing.status_code == 404
    other = (
        await store(
            app_engine, org_a, account, [remote(build_raw(sender="x@example.net", to=[OWN]))]
        )
    ).email_ids[0]
    assert (
        await _get(client, org_a, f"/v1/emails/{other}/attachments/{plan['id']}")
    ).status_code == 404


async def test_content_disposition_is_always_safe() -> None:
    assert content_disposition("report.pdf") == (
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    )
    header = content_disposition('../../etc/"passwd"\r\nX-Evil: 1.pdf')
    assert "\r" not in header
    assert "\n" not in header
    assert "/" not in header.split("''")[0]
    assert header.count('"') == 2
    assert "filename*=UTF-8''" in content_disposition("Befund für Müller.pdf")


async def test_other_orgs_ids_are_not_found(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    org_b: Org,
    test_settings: Settings,
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    raw = build_raw(
        sender="pat@example.net",
        to=[OWN, "a@hospital.org"],
        attachments=[("x.txt", "text/plain", b"secret")],
    )
    [email_id] = (
        await store(
            app_engine, org_a, account, [remote(raw)], storage=document_storage(test_settings)
        )
    ).email_ids
    [attachment] = await rows(
        app_engine, org_a, "SELECT id FROM ce_email_attachments WHERE email_id = :e", e=email_id
    )
    assert (
        await _get(client, org_a, f"/v1/emails/{email_id}/attachments/{attachment['id']}")
    ).status_code == 200

    for path in (
        f"/v1/emails/{email_id}",
        f"/v1/contacts/{contact}/emails",
        f"/v1/partners/{partner}/emails",
        f"/v1/emails/{email_id}/attachments/{attachment['id']}",
        f"/v1/contacts/{uuid.uuid4()}/emails",
    ):
        response = await _get(client, org_b, path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json")
    for params in (
        {"contact_id": str(contact)},
        {"partner_id": str(partner)},
        {"account_id": str(account["id"])},
        {},
    ):
        response = await _get(client, org_b, "/v1/emails", **params)
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}, params


async def test_the_timeline_needs_a_caller(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/emails")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_routes_have_summaries(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for path in (
        "/v1/emails",
        "/v1/contacts/{contact_id}/emails",
        "/v1/partners/{partner_id}/emails",
        "/v1/emails/{email_id}",
        "/v1/emails/{email_id}/attachments/{attachment_id}",
    ):
        assert paths[path]["get"]["summary"], path
