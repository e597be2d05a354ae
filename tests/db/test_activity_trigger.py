"""The CE-04 trigger: one activity per link, none for unlinked mail, none extra on repeats."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.rls import org_transaction
from tests.fixtures.database import make_account, make_contact, make_email, make_partner
from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio


async def _activities(engine: AsyncEngine, org: uuid.UUID, email: uuid.UUID) -> list[dict]:
    async with org_transaction(engine, org) as s:
        rows = await s.execute(
            text(
                "SELECT type, direction, subject, occurred_at, contact_id, partner_id, "
                "source_email_id FROM activities WHERE source_email_id = :e ORDER BY created_at"
            ),
            {"e": email},
        )
        return [dict(r) for r in rows.mappings()]


async def _link(
    engine: AsyncEngine,
    org: uuid.UUID,
    email: uuid.UUID,
    *,
    contact: uuid.UUID | None = None,
    partner: uuid.UUID | None = None,
) -> None:
    async with org_transaction(engine, org) as s:
        await s.execute(
            text(
                "INSERT INTO ce_email_links (org_id, email_id, contact_id, partner_id) "
                "VALUES (:o, :e, :c, :p) ON CONFLICT DO NOTHING"
            ),
            {"o": org, "e": email, "c": contact, "p": partner},
        )


@pytest_asyncio.fixture
async def mail(owner_engine: AsyncEngine, org_a: Org) -> dict[str, uuid.UUID]:
    account = await make_account(owner_engine, org_a.id, uuid.UUID(org_a["admin"]["user_id"]))
    return {
        "account": account,
        "linked": await make_email(
            owner_engine, org_a.id, account, subject="Referral", direction="outbound"
        ),
        "unlinked": await make_email(owner_engine, org_a.id, account, subject="Newsletter"),
        "contact": await make_contact(owner_engine, org_a.id, "pat@example.net"),
        "partner": await make_partner(owner_engine, org_a.id, "hospital.org"),
    }


async def test_one_activity_per_link_with_the_email_facts(
    app_engine: AsyncEngine, org_a: Org, mail: dict[str, uuid.UUID]
) -> None:
    await _link(app_engine, org_a.id, mail["linked"], contact=mail["contact"])
    acts = await _activities(app_engine, org_a.id, mail["linked"])
    assert len(acts) == 1
    assert acts[0]["type"] == "email"
    assert acts[0]["direction"] == "outbound"
    assert acts[0]["subject"] == "Referral"
    assert acts[0]["contact_id"] == mail["contact"]
    assert acts[0]["partner_id"] is None
    assert acts[0]["occurred_at"] is not None
    assert await _activities(app_engine, org_a.id, mail["unlinked"]) == []

    # linking the same email to a partner later: one more activity, for the partner tab
    await _link(app_engine, org_a.id, mail["linked"], partner=mail["partner"])
    acts = await _activities(app_engine, org_a.id, mail["linked"])
    assert len(acts) == 2
    assert {a["partner_id"] for a in acts} == {None, mail["partner"]}


async def test_relinking_and_reinserting_never_adds_a_second_activity(
    app_engine: AsyncEngine, org_a: Org, mail: dict[str, uuid.UUID]
) -> None:
    for _ in range(3):
        await _link(app_engine, org_a.id, mail["linked"], contact=mail["contact"])
    # a raw duplicate link (no ON CONFLICT) is refused by the unique index
    with pytest.raises(IntegrityError):
        async with org_transaction(app_engine, org_a.id) as s:
            await s.execute(
                text(
                    "INSERT INTO ce_email_links (org_id, email_id, contact_id) VALUES (:o, :e, :c)"
                ),
                {"o": org_a.id, "e": mail["linked"], "c": mail["contact"]},
            )
    assert len(await _activities(app_engine, org_a.id, mail["linked"])) == 1

    # unlink then relink: still exactly one
    async with org_transaction(app_engine, org_a.id) as s:
        await s.execute(
            text("DELETE FROM ce_email_links WHERE email_id = :e"), {"e": mail["linked"]}
        )
    assert await _activities(app_engine, org_a.id, mail["linked"]) == []
    await _link(app_engine, org_a.id, mail["linked"], contact=mail["contact"])
    assert len(await _activities(app_engine, org_a.id, mail["linked"])) == 1


async def test_deleting_the_email_removes_its_activities(
    app_engine: AsyncEngine, org_a: Org, mail: dict[str, uuid.UUID]
) -> None:
    await _link(app_engine, org_a.id, mail["linked"], contact=mail["contact"])
    await _link(app_engine, org_a.id, mail["linked"], partner=mail["partner"])
    async with org_transaction(app_engine, org_a.id) as s:
        await s.execute(text("DELETE FROM ce_emails WHERE id = :e"), {"e": mail["linked"]})
    assert await _activities(app_engine, org_a.id, mail["linked"]) == []


async def test_subject_change_follows_into_the_activity(
    app_engine: AsyncEngine, org_a: Org, mail: dict[str, uuid.UUID]
) -> None:
    await _link(app_engine, org_a.id, mail["linked"], contact=mail["contact"])
    async with org_transaction(app_engine, org_a.id) as s:
        await s.execute(
            text("UPDATE ce_emails SET subject = 'Referral (sent)' WHERE id = :e"),
            {"e": mail["linked"]},
        )
    acts = await _activities(app_engine, org_a.id, mail["linked"])
    assert [a["subject"] for a in acts] == ["Referral (sent)"]


async def test_a_link_cannot_point_into_another_org(
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    org_b: Org,
    mail: dict[str, uuid.UUID],
) -> None:
    foreign_contact = await make_contact(owner_engine, org_b.id, "other@example.net")
    with pytest.raises(IntegrityError):
        async with org_transaction(app_engine, org_a.id) as s:
            await s.execute(
                text(
                    "INSERT INTO ce_email_links (org_id, email_id, contact_id) VALUES (:o, :e, :c)"
                ),
                {"o": org_a.id, "e": mail["linked"], "c": foreign_contact},
            )
