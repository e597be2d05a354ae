"""Who may see an audit row: a row naming mail hidden from the viewer is hidden too, and the
fast path of that policy (the mailboxes a row names, sql/180) cannot be steered by the
writer."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import repository
from app.config import Settings
from app.db.rls import org_transaction
from tests.fixtures.database import insert, scalar
from tests.fixtures.orgs import Org
from tests.fixtures.visibility import marked_mailbox

pytestmark = pytest.mark.asyncio


async def _visible_audit_rows(
    app_engine: AsyncEngine, org: Org, who: str, email_id: str
) -> list[uuid.UUID]:
    async with org_transaction(app_engine, org.id, uuid.UUID(org[who]["user_id"])) as session:
        result = await session.execute(
            text(
                "SELECT id FROM ce_email_access_audit "
                "WHERE CAST(:e AS uuid) = ANY (email_ids) ORDER BY occurred_at"
            ),
            {"e": email_id},
        )
        return [row for (row,) in result]


async def test_a_row_names_its_mailboxes_whatever_the_writer_sends(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, test_settings: Settings
) -> None:
    private = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="private", owner="admin"
    )
    open_box = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="org", owner="admin"
    )
    # The writer claims the private email sits in the open mailbox.
    forged = uuid.uuid4()
    async with org_transaction(app_engine, org_a.id) as session:
        await session.execute(
            text(
                "INSERT INTO ce_email_access_audit "
                "(org_id, id, user_id, action, email_ids, account_ids) "
                "VALUES (:o, :id, :u, 'read', ARRAY[CAST(:e AS uuid)], ARRAY[CAST(:a AS uuid)])"
            ),
            {
                "o": org_a.id,
                "id": forged,
                "u": org_a["admin"]["user_id"],
                "e": private.email_id,
                "a": open_box.account_id,
            },
        )
    stored = await scalar(
        owner_engine,
        "SELECT account_ids FROM ce_email_access_audit WHERE id = :id",
        id=forged,
    )
    assert [str(a) for a in stored] == [private.account_id]
    # ... so the member, who may not see the private mailbox, sees no row naming its mail
    assert await _visible_audit_rows(app_engine, org_a, "member", private.email_id) == []
    assert forged in await _visible_audit_rows(app_engine, org_a, "admin", private.email_id)


async def test_a_page_row_naming_one_hidden_email_is_hidden(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, test_settings: Settings
) -> None:
    private = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="private", owner="admin"
    )
    open_box = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="metadata", owner="admin"
    )
    async with org_transaction(
        app_engine, org_a.id, uuid.UUID(org_a["admin"]["user_id"])
    ) as session:
        await repository.append(
            session,
            org_id=org_a.id,
            user_id=uuid.UUID(org_a["admin"]["user_id"]),
            action="list",
            email_ids=[uuid.UUID(open_box.email_id), uuid.UUID(private.email_id)],
            attachment_id=None,
            request_id="page-with-both",
        )
        await repository.append(
            session,
            org_id=org_a.id,
            user_id=uuid.UUID(org_a["admin"]["user_id"]),
            action="list",
            email_ids=[uuid.UUID(open_box.email_id)],
            attachment_id=None,
            request_id="page-open-only",
        )
    both, open_only = [
        await scalar(
            owner_engine,
            "SELECT id FROM ce_email_access_audit WHERE request_id = :r",
            r=request,
        )
        for request in ("page-with-both", "page-open-only")
    ]
    seen_by_member = await _visible_audit_rows(app_engine, org_a, "member", open_box.email_id)
    assert open_only in seen_by_member
    assert both not in seen_by_member
    # the by-email side table, too
    async with org_transaction(
        app_engine, org_a.id, uuid.UUID(org_a["member"]["user_id"])
    ) as session:
        named = await session.execute(
            text("SELECT email_id FROM ce_email_access_audit_emails WHERE audit_id = :a"),
            {"a": both},
        )
        assert [str(e) for (e,) in named] == [open_box.email_id]
    # once the owner opens the mailbox, the row shows
    await insert(
        owner_engine,
        "UPDATE ce_email_accounts SET visibility = 'metadata' WHERE id = :id",
        id=private.account_id,
    )
    assert both in await _visible_audit_rows(app_engine, org_a, "member", open_box.email_id)
