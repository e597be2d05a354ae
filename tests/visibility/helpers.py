"""A mailbox at a given level with one message whose subject, body, attachment name and
body link carry markers, linked to a contact, with tracking rows and a notification."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.platform.documents import document_storage
from tests.conftest import Org
from tests.db.factories import insert, make_contact
from tests.messages.test_store_helpers import build_raw, new_account, remote, store


@dataclass(frozen=True)
class MarkedMail:
    account_id: str
    email_id: str
    thread_id: str
    subject: str
    body: str
    filename: str
    link: str
    account: dict[str, Any]
    """The mailbox as `tests.messages.test_store_helpers.store` takes it."""


async def marked_mailbox(
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org: Org,
    settings: Settings,
    *,
    level: str,
    owner: str,
) -> MarkedMail:
    tag = uuid.uuid4().hex[:12]
    address = f"box-{tag}@clinic.example"
    account = await new_account(owner_engine, org, address, owner=owner)
    await insert(
        owner_engine,
        "UPDATE ce_email_accounts SET visibility = :v WHERE id = :id",
        v=level,
        id=account["id"],
    )
    patient = f"pat-{tag}@example.net"
    await make_contact(owner_engine, org.id, patient)
    mail = MarkedMail(
        account_id=str(account["id"]),
        email_id="",
        thread_id=f"thread-{tag}",
        subject=f"SUBJMARK{tag}",
        body=f"BODYMARK{tag}",
        filename=f"FILEMARK{tag}.txt",
        link=f"https://ward.example/LINKMARK{tag}",
        account=account,
    )
    # the marker comes after the snippet's length: `subject` shows the snippet, not the body
    opening = "Dear team, " * 60
    raw = build_raw(
        sender=patient,
        to=[address],
        subject=mail.subject,
        body=f"{opening}{mail.body} see {mail.link}",
        html=f'<p>{opening}{mail.body} <a href="{mail.link}">plan</a></p>',
        attachments=[(mail.filename, "text/plain", b"care plan")],
    )
    result = await store(
        app_engine,
        org,
        account,
        [remote(raw, thread_id=mail.thread_id)],
        storage=document_storage(settings),
    )
    email_id = str(result.email_ids[0])
    # the copies other modules make: tracked links, a click and an open, a notification
    await insert(
        owner_engine,
        "INSERT INTO ce_email_tracked_links (org_id, email_id, position, url) "
        "VALUES (:o, :e, 0, :u)",
        o=org.id,
        e=email_id,
        u=mail.link,
    )
    for kind, url in (("clicked", mail.link), ("opened", None)):
        await insert(
            owner_engine,
            "INSERT INTO ce_email_tracking_events (org_id, email_id, type, link_url) "
            "VALUES (:o, :e, :t, :u)",
            o=org.id,
            e=email_id,
            t=kind,
            u=url,
        )
    await insert(
        owner_engine,
        "INSERT INTO notifications (org_id, user_id, type, data) "
        "VALUES (:o, :u, 'email_clicked', CAST(:d AS jsonb))",
        o=org.id,
        u=org[owner]["user_id"],
        d=json.dumps({"email_id": email_id, "link_id": str(uuid.uuid4())}),
    )
    # the owner read it: the access audit names it (a detail read and a timeline page)
    audit_id = uuid.uuid4()
    await insert(
        owner_engine,
        "INSERT INTO ce_email_access_audit (org_id, id, user_id, action, email_ids) "
        "VALUES (:o, :id, :u, 'read', ARRAY[CAST(:e AS uuid)])",
        o=org.id,
        id=audit_id,
        u=org[owner]["user_id"],
        e=email_id,
    )
    await insert(
        owner_engine,
        "INSERT INTO ce_email_access_audit_emails (org_id, email_id, occurred_at, audit_id) "
        "VALUES (:o, :e, now(), :id)",
        o=org.id,
        e=email_id,
        id=audit_id,
    )
    return MarkedMail(**{**mail.__dict__, "email_id": email_id})


def other_of(owner: str) -> str:
    return "member" if owner == "admin" else "admin"


def as_text(rows: list[Any]) -> str:
    return "\n".join(str(r) for r in rows)
