"""Storing synced messages: fields, dedup, our own sends, attachments, deletion, events."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.rls import org_transaction
from app.events import synced_payload
from app.messages import store as messages_store
from app.messages.store import delete_remote_messages
from app.platform.documents import LocalDocumentStorage
from tests.fixtures.accounts import new_account
from tests.fixtures.database import make_contact, make_partner, rows
from tests.fixtures.events import Events
from tests.fixtures.mail import build_raw, remote, store
from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio

OWN = "front.desk@clinic.example"


async def test_an_inbound_message_is_stored_with_its_fields(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    raw = build_raw(
        sender='"Doe, Jane" <Jane.Doe@Example.NET>',
        to=[f"Front Desk <{OWN}>", "ops@mail.hospital.org"],
        cc=["Lab <lab@lab.example>"],
        subject="Referral for Mr Smith",
        message_id="ref-1",
        body="Please see the attached referral.",
        html='<p>Please <b>see</b><script>alert(1)</script> <img src="x" onerror="y"></p>',
        attachments=[("referral.pdf", "application/pdf", b"%PDF-1.4 referral")],
    )
    received = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
    result = await store(
        app_engine,
        org_a,
        account,
        [remote(raw, provider_id="p-1", received_at=received, thread_id="t-1")],
    )
    assert (result.stored, result.duplicates, result.completed) == (1, 0, 0)

    [email] = await rows(
        app_engine, org_a, "SELECT * FROM ce_emails_visible WHERE account_id = :a", a=account["id"]
    )
    assert email["id"] == result.email_ids[0]
    assert email["direction"] == "inbound"
    assert email["status"] == "received"
    assert email["folder"] == "inbox"
    assert email["provider_message_id"] == "p-1"
    assert email["provider_thread_id"] == "t-1"
    assert email["internet_message_id"] == "ref-1@mail.example"
    assert email["subject"] == "Referral for Mr Smith"
    assert email["snippet"].startswith("Please see the attached referral")
    assert email["from_address"] == "jane.doe@example.net"
    assert email["from_name"] == "Doe, Jane"
    assert email["to_recipients"] == [
        {"name": "Front Desk", "address": OWN},
        {"name": None, "address": "ops@mail.hospital.org"},
    ]
    assert email["cc_recipients"] == [{"name": "Lab", "address": "lab@lab.example"}]
    assert email["bcc_recipients"] == []
    assert "Please see the attached referral." in email["text_body"]
    assert "<b>see</b>" in email["html_body"]
    assert "script" not in email["html_body"]
    assert "onerror" not in email["html_body"]
    assert email["body_truncated"] is False
    assert email["has_attachments"] is True
    assert len(email["content_hash"]) == 64
    assert email["sent_at"] == datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    assert email["received_at"] == received
    assert email["occurred_at"] == received, "inbound mail is ordered by its arrival"
    # the mailbox's own address never links; the others do, with every parent domain
    assert set(email["participant_addresses"]) == {
        "jane.doe@example.net",
        "ops@mail.hospital.org",
        "lab@lab.example",
    }
    assert {"mail.hospital.org", "hospital.org", "example.net"} <= set(email["participant_domains"])
    assert "org" not in email["participant_domains"]

    [attachment] = await rows(
        app_engine,
        org_a,
        "SELECT * FROM ce_email_attachments WHERE email_id = :e",
        e=email["id"],
    )
    assert attachment["filename"] == "referral.pdf"
    assert attachment["content_type"] == "application/pdf"
    assert attachment["size"] == len(b"%PDF-1.4 referral")
    assert attachment["is_inline"] is False
    assert attachment["document_id"] is None, "no storage given: metadata only"


async def test_sent_folder_and_own_sender_make_outbound(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    sent = datetime(2026, 11, 4, 10, 0, tzinfo=UTC)
    in_sent_folder = build_raw(sender=OWN, to=["pat@example.net"], date=sent)
    # a copy in the inbox, but From is the mailbox itself (any case): still outbound
    own_sender = build_raw(sender=f"Desk <{OWN.upper()}>", to=["pat@example.net"], date=sent)
    result = await store(
        app_engine,
        org_a,
        account,
        [
            remote(
                in_sent_folder,
                provider_id="s-1",
                folder="sent",
                received_at=datetime(2026, 11, 4, 10, 5, tzinfo=UTC),
            ),
            remote(own_sender, provider_id="s-2", folder="inbox"),
        ],
    )
    assert result.stored == 2
    found = await rows(
        app_engine,
        org_a,
        "SELECT provider_message_id, direction, status, occurred_at, participant_addresses "
        "FROM ce_emails WHERE account_id = :a ORDER BY provider_message_id",
        a=account["id"],
    )
    for row in found:
        assert row["direction"] == "outbound"
        assert row["status"] == "sent"
        assert row["occurred_at"] == sent, "outbound mail is ordered by its sent time"
        assert row["participant_addresses"] == ["pat@example.net"]


async def test_restoring_the_same_messages_changes_nothing(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    messages = [
        remote(
            build_raw(sender="pat@example.net", to=[OWN, "a@hospital.org"]), provider_id=f"d-{i}"
        )
        for i in range(3)
    ]
    first = await store(app_engine, org_a, account, messages)
    assert (first.stored, first.links) == (3, 6)

    # the same page again, a page with repeats inside it, and one more time
    again = await store(app_engine, org_a, account, [*messages, messages[0]])
    assert (again.stored, again.duplicates, again.links) == (0, 4, 0)
    assert (await store(app_engine, org_a, account, messages[:1])).stored == 0

    [counts] = await rows(
        app_engine,
        org_a,
        "SELECT (SELECT count(*) FROM ce_emails WHERE account_id = :a) AS emails, "
        "(SELECT count(*) FROM ce_email_links WHERE contact_id = :c) AS contact_links, "
        "(SELECT count(*) FROM ce_email_links WHERE partner_id = :p) AS partner_links, "
        "(SELECT count(*) FROM activities WHERE contact_id = :c) AS contact_activities, "
        "(SELECT count(*) FROM activities WHERE partner_id = :p) AS partner_activities",
        a=account["id"],
        c=contact,
        p=partner,
    )
    assert counts == {
        "emails": 3,
        "contact_links": 3,
        "partner_links": 3,
        "contact_activities": 3,
        "partner_activities": 3,
    }


async def test_our_own_send_is_completed_by_the_synced_copy_not_duplicated(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    async with org_transaction(app_engine, org_a.id) as s:
        queued_id = (
            await s.execute(
                text(
                    "INSERT INTO ce_emails (org_id, account_id, internet_message_id, direction, "
                    "status, subject, from_address, to_recipients, occurred_at) VALUES "
                    "(:o, :a, 'sent-1@clinic.example', 'outbound', 'queued', 'Your results', "
                    ':own, \'[{"name": null, "address": "pat@example.net"}]\', '
                    "'2026-11-05T07:00:00Z') RETURNING id"
                ),
                {"o": org_a.id, "a": account["id"], "own": OWN},
            )
        ).scalar_one()
        # the send path links what it sends; the synced copy must not add a second link
        await s.execute(
            text("INSERT INTO ce_email_links (org_id, email_id, contact_id) VALUES (:o, :e, :c)"),
            {"o": org_a.id, "e": queued_id, "c": contact},
        )

    sent = datetime(2026, 11, 5, 7, 1, tzinfo=UTC)
    copy = build_raw(
        sender=OWN,
        to=["pat@example.net"],
        cc=["ops@hospital.org"],
        subject="Your results",
        message_id="sent-1@clinic.example",
        date=sent,
    )
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    result = await store(
        app_engine,
        org_a,
        account,
        [remote(copy, provider_id="gm-77", folder="sent", thread_id="th-9")],
    )
    assert (result.stored, result.completed) == (0, 1)
    assert result.links == 1, "the partner link is new; the contact link existed"

    [email] = await rows(
        app_engine, org_a, "SELECT * FROM ce_emails_visible WHERE account_id = :a", a=account["id"]
    )
    assert email["id"] == queued_id
    assert email["provider_message_id"] == "gm-77"
    assert email["provider_thread_id"] == "th-9"
    assert email["status"] == "sent"
    assert email["sent_at"] == sent
    assert email["occurred_at"] == sent
    activities = await rows(
        app_engine,
        org_a,
        "SELECT contact_id, partner_id, occurred_at FROM activities WHERE source_email_id = :e",
        e=queued_id,
    )
    assert {(a["contact_id"], a["partner_id"]) for a in activities} == {
        (contact, None),
        (None, partner),
    }
    assert len(activities) == 2
    assert all(a["occurred_at"] == sent for a in activities), "activities follow the real time"

    # and the next sync of the same provider message is a plain duplicate
    again = await store(
        app_engine, org_a, account, [remote(copy, provider_id="gm-77", folder="sent")]
    )
    assert (again.stored, again.completed, again.duplicates) == (0, 0, 1)


async def test_bodies_are_cut_at_the_limit_and_flagged(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    long_text = "Lorem ipsum dolor sit amet. " * 200  # ~5.6 KB
    raw = build_raw(sender="pat@example.net", to=[OWN], body=long_text, html=f"<p>{long_text}</p>")
    await store(app_engine, org_a, account, [remote(raw)], body_limit_kb=1)
    [email] = await rows(
        app_engine,
        org_a,
        "SELECT text_body, html_body, body_truncated FROM ce_emails_visible WHERE account_id = :a",
        a=account["id"],
    )
    assert email["body_truncated"] is True
    assert 0 < len(email["text_body"].encode()) <= 1024
    assert 0 < len(email["html_body"].encode()) <= 1024


async def test_attachments_go_to_the_document_store_under_the_size_limit(
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    tmp_path: Path,
    test_settings: Settings,
) -> None:
    # The limit of the settings the caller was given, not the environment's (25 MB).
    settings = test_settings.model_copy(update={"attachment_max_bytes": 100})
    account = await new_account(owner_engine, org_a, OWN)
    storage = LocalDocumentStorage(tmp_path)
    small, big = b"small lab result", b"x" * 500
    raw = build_raw(
        sender="lab@lab.example",
        to=[OWN],
        attachments=[
            ("result.txt", "text/plain", small),
            ("scan.bin", "application/octet-stream", big),
        ],
    )
    result = await store(
        app_engine,
        org_a,
        account,
        [remote(raw)],
        storage=storage,
        attachment_max_bytes=settings.attachment_max_bytes,
    )
    found = await rows(
        app_engine,
        org_a,
        "SELECT a.filename, a.size, a.document_id, d.content_type, d.size AS doc_size, "
        "d.storage_key, d.sha256 FROM ce_email_attachments a "
        "LEFT JOIN documents d ON d.id = a.document_id WHERE a.email_id = :e "
        "ORDER BY a.part_index",
        e=result.email_ids[0],
    )
    assert [f["filename"] for f in found] == ["result.txt", "scan.bin"]
    stored, skipped = found
    assert stored["document_id"] is not None
    assert stored["doc_size"] == len(small)
    assert storage.get(stored["storage_key"]) == small
    assert skipped["document_id"] is None
    assert skipped["size"] == len(big)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_a_page_that_fails_takes_its_files_back_out_of_the_store(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, tmp_path: Path
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    storage = LocalDocumentStorage(tmp_path)
    raw = build_raw(
        sender="lab@lab.example", to=[OWN], attachments=[("result.txt", "text/plain", b"hb 13")]
    )

    async def write_then_fail() -> None:
        async with org_transaction(app_engine, org_a.id) as session:
            await messages_store.store_remote_messages(
                session,
                org_id=org_a.id,
                account=account,
                messages=[remote(raw)],
                body_limit_kb=500,
                storage=storage,
                attachment_max_bytes=1024,
            )
            assert len(_files(tmp_path)) == 1  # written, in the transaction
            raise ConnectionError("the database went away before the commit")

    with pytest.raises(ConnectionError):
        await write_then_fail()
    assert _files(tmp_path) == []

    # the same page committed keeps its file
    result = await store(app_engine, org_a, account, [remote(raw)], storage=storage)
    assert result.stored == 1
    assert len(_files(tmp_path)) == 1


async def test_deleting_removes_rows_links_and_activities(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    raw = build_raw(sender="pat@example.net", to=[OWN], attachments=[("a.txt", "text/plain", b"a")])
    await store(
        app_engine,
        org_a,
        account,
        [remote(raw, provider_id="gone"), remote(raw, provider_id="kept")],
    )
    async with org_transaction(app_engine, org_a.id) as s:
        assert await delete_remote_messages(s, account["id"], ["gone", "gone", "unknown"]) == 1
    [counts] = await rows(
        app_engine,
        org_a,
        "SELECT (SELECT array_agg(provider_message_id) FROM ce_emails WHERE account_id = :a) "
        "AS ids, (SELECT count(*) FROM ce_email_links WHERE contact_id = :c) AS links, "
        "(SELECT count(*) FROM activities WHERE contact_id = :c) AS activities, "
        "(SELECT count(*) FROM ce_email_attachments) AS attachments",
        a=account["id"],
        c=contact,
    )
    assert counts == {"ids": ["kept"], "links": 1, "activities": 1, "attachments": 1}


async def test_each_new_email_is_announced_once_after_commit(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, test_settings: Settings
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    async with Events(test_settings) as listener:
        inbound = remote(
            build_raw(sender="pat@example.net", to=[OWN, "x@a.hospital.org"]), provider_id="n-1"
        )
        outbound = remote(
            build_raw(sender=OWN, to=["nobody@elsewhere.example"]), provider_id="n-2", folder="sent"
        )
        result = await store(app_engine, org_a, account, [inbound, outbound])
        events = await listener.heard()
        assert len(events) == 2
        by_id = {e["email_id"]: e for e in events}
        assert set(by_id) == {str(i) for i in result.email_ids}
        [first] = [e for e in events if e["direction"] == "inbound"]
        assert set(first) == {
            "event",
            "org_id",
            "email_id",
            "account_id",
            "direction",
            "occurred_at",
            "contact_ids",
            "partner_ids",
        }
        assert first["event"] == "ce.email.synced"
        assert first["org_id"] == str(org_a.id)
        assert first["account_id"] == str(account["id"])
        assert first["contact_ids"] == [str(contact)]
        assert first["partner_ids"] == [str(partner)]
        assert datetime.fromisoformat(first["occurred_at"]) == inbound.received_at
        [second] = [e for e in events if e["direction"] == "outbound"]
        assert second["contact_ids"] == []
        assert second["partner_ids"] == []

        # a re-store announces nothing; a rolled-back store announces nothing either
        await store(app_engine, org_a, account, [inbound, outbound])

        async def store_then_fail() -> None:
            async with org_transaction(app_engine, org_a.id) as s:
                await messages_store.store_remote_messages(
                    s,
                    org_id=org_a.id,
                    account=account,
                    body_limit_kb=500,
                    storage=None,
                    attachment_max_bytes=1024,
                    messages=[remote(build_raw(sender="pat@example.net", to=[OWN]))],
                )
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            await store_then_fail()
        assert await listener.heard() == []


async def test_an_oversized_event_stays_under_the_notify_limit() -> None:
    contacts = [uuid.uuid4() for _ in range(400)]
    payload = synced_payload(
        org_id=uuid.uuid4(),
        email_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        direction="outbound",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        contact_ids=contacts,
        partner_ids=[uuid.uuid4()],
    )
    body = json.loads(payload)
    assert len(payload.encode()) < 8000
    assert body["truncated"] is True
    assert 0 < len(body["contact_ids"]) < 400
    assert len(body["partner_ids"]) == 1
    assert body["contact_ids"] == [str(c) for c in contacts[: len(body["contact_ids"])]]


async def test_a_page_costs_a_fixed_number_of_statements(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    await make_contact(owner_engine, org_a.id, "pat0@example.net")
    await make_partner(owner_engine, org_a.id, "hospital.org")
    page = [
        remote(
            build_raw(
                sender=f"pat{i}@example.net",
                to=[OWN, f"doc{i}@hospital.org"],
                attachments=[("a.txt", "text/plain", b"x")],
            ),
            folder="sent" if i % 5 == 1 else "inbox",
        )
        for i in range(200)
    ]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(app_engine.sync_engine, "before_cursor_execute", count)
    try:
        result = await store(app_engine, org_a, account, page)
    finally:
        event.remove(app_engine.sync_engine, "before_cursor_execute", count)
    assert result.stored == 200
    assert result.links == 200 + 1  # every message to the partner, one from the contact
    # org context, matching, own sends, insert, links, attachments + events: whatever the
    # page size
    assert len(statements) == 6, statements
