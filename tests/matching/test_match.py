"""Matching stored mail to contacts (addresses) and partners (domains), now and later."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.rls import org_transaction
from app.matching.service import (
    link_existing_emails_for_contact,
    link_existing_emails_for_partner,
    link_keys,
    match_contacts_by_address,
    match_partners_by_domain,
)
from tests.fixtures.accounts import new_account
from tests.fixtures.database import insert, make_contact, make_partner, rows
from tests.fixtures.mail import build_raw, remote, store
from tests.fixtures.orgs import Org

pytestmark = pytest.mark.asyncio

OWN = "desk@clinic.example"


async def _links(engine: AsyncEngine, org: Org, email_id: uuid.UUID) -> dict[str, set]:
    found = await rows(
        engine,
        org,
        "SELECT contact_id, partner_id FROM ce_email_links WHERE email_id = :e",
        e=email_id,
    )
    return {
        "contacts": {r["contact_id"] for r in found if r["contact_id"]},
        "partners": {r["partner_id"] for r in found if r["partner_id"]},
    }


async def _store_one(engine: AsyncEngine, org: Org, account: dict[str, Any], **kw: Any) -> Any:
    folder = kw.pop("folder", "inbox")
    result = await store(engine, org, account, [remote(build_raw(**kw), folder=folder)])
    return result.email_ids[0]


async def _activity_count(engine: AsyncEngine, org: Org, **where: uuid.UUID) -> int:
    [column] = where
    [row] = await rows(
        engine, org, f"SELECT count(*) AS n FROM activities WHERE {column} = :v", v=where[column]
    )
    return int(row["n"])


async def test_contacts_match_whatever_the_case_spacing_or_display_name(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    jane = await make_contact(owner_engine, org_a.id, "jane.doe@example.net")
    email = await _store_one(
        app_engine,
        org_a,
        account,
        sender='"Doe, Jane (Patient)" <  Jane.DOE@Example.NET >',
        to=[OWN],
    )
    assert (await _links(app_engine, org_a, email))["contacts"] == {jane}
    # not a different mailbox: dots and +tags stay significant
    other = await _store_one(
        app_engine,
        org_a,
        account,
        sender="jane.doe+x@example.net",
        cc=["janedoe@example.net"],
        to=[OWN],
    )
    assert (await _links(app_engine, org_a, other))["contacts"] == set()


async def test_a_contact_with_several_addresses_links_once_per_email(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    contact = await make_contact(owner_engine, org_a.id, "home@example.net")
    await insert(
        owner_engine,
        "INSERT INTO contact_emails (org_id, contact_id, email) "
        "VALUES (:o, :c, 'work@corp.example')",
        o=org_a.id,
        c=contact,
    )
    first = await _store_one(app_engine, org_a, account, sender="home@example.net", to=[OWN])
    second = await _store_one(
        app_engine, org_a, account, sender="Work <WORK@corp.example>", to=[OWN]
    )
    both = await _store_one(
        app_engine, org_a, account, sender="home@example.net", to=[OWN], cc=["work@corp.example"]
    )
    for email in (first, second, both):
        assert (await _links(app_engine, org_a, email))["contacts"] == {contact}
    assert await _activity_count(app_engine, org_a, contact_id=contact) == 3


async def test_partners_match_their_domain_and_subdomains_only(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    expected = {
        "a@hospital.org": {partner},
        "b@mail.HOSPITAL.org": {partner},
        "c@x.y.hospital.org": {partner},
        "d@evilhospital.org": set(),
        "e@hospital.org.evil.com": set(),
        "f@hospital.com": set(),
    }
    for sender, partners in expected.items():
        email = await _store_one(app_engine, org_a, account, sender=sender, to=[OWN])
        assert (await _links(app_engine, org_a, email))["partners"] == partners, sender


async def test_free_mail_never_matches_a_partner(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    # a partner record that (wrongly) carries a free-mail domain still never matches
    await make_partner(owner_engine, org_a.id, "gmail.com")
    await make_partner(owner_engine, org_a.id, "hotmail.co.uk")
    contact = await make_contact(owner_engine, org_a.id, "pat@gmail.com")
    email = await _store_one(
        app_engine, org_a, account, sender="pat@gmail.com", cc=["someone@hotmail.co.uk"], to=[OWN]
    )
    links = await _links(app_engine, org_a, email)
    assert links == {"contacts": {contact}, "partners": set()}, "the contact still matches"


async def test_inbound_links_sender_and_others_outbound_links_recipients(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    sender = await make_contact(owner_engine, org_a.id, "sender@example.net")
    to = await make_contact(owner_engine, org_a.id, "to@example.net")
    cc = await make_contact(owner_engine, org_a.id, "cc@example.net")
    bcc = await make_contact(owner_engine, org_a.id, "bcc@example.net")
    # the member of staff is also on file as a contact: their own mailbox never links them
    own = await make_contact(owner_engine, org_a.id, OWN)

    inbound = await _store_one(
        app_engine,
        org_a,
        account,
        sender="sender@example.net",
        to=[OWN, "to@example.net"],
        cc=["cc@example.net"],
    )
    assert (await _links(app_engine, org_a, inbound))["contacts"] == {sender, to, cc}

    outbound = await _store_one(
        app_engine,
        org_a,
        account,
        folder="sent",
        sender=OWN,
        to=["to@example.net"],
        cc=["cc@example.net", OWN],
        bcc=["bcc@example.net"],
    )
    assert (await _links(app_engine, org_a, outbound))["contacts"] == {to, cc, bcc}

    # sent by someone else but found in Sent (a delegate): the sender is not a recipient
    delegated = await _store_one(
        app_engine,
        org_a,
        account,
        folder="sent",
        sender="sender@example.net",
        to=["to@example.net"],
    )
    assert (await _links(app_engine, org_a, delegated))["contacts"] == {to}
    assert await _activity_count(app_engine, org_a, contact_id=own) == 0


async def test_direct_lookups_by_address_and_by_domain(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, org_b: Org
) -> None:
    contact = await make_contact(owner_engine, org_a.id, "pat@example.net")
    partner = await make_partner(owner_engine, org_a.id, "hospital.org")
    await make_contact(owner_engine, org_b.id, "pat@example.net")  # not visible from A
    async with org_transaction(app_engine, org_a.id) as s:
        contacts = await match_contacts_by_address(
            s, ["PAT@example.net ", "nobody@example.net", "not an address"]
        )
        partners = await match_partners_by_domain(
            s, ["x@lab.hospital.org", "y@evilhospital.org", "z@gmail.com"]
        )
    assert contacts == {"pat@example.net": {contact}}
    assert partners == {"x@lab.hospital.org": {partner}}


async def test_link_keys_exclude_the_own_mailbox_and_free_mail_domains() -> None:
    keys = link_keys(
        direction="inbound",
        own_address="Desk@Clinic.example",
        sender="a@gmail.com",
        recipients=["desk@clinic.example", "B@Mail.Hospital.org", "c@bücher.de"],
    )
    assert keys.addresses == ("a@gmail.com", "b@mail.hospital.org", "c@xn--bcher-kva.de")
    assert "c@bücher.de" in keys.lookup_addresses, "the as-written form is kept too"
    assert keys.partner_domains == ("mail.hospital.org", "hospital.org", "xn--bcher-kva.de")
    assert "gmail.com" in keys.participant_domains  # searchable; never claimable


async def test_a_contact_created_later_is_linked_to_existing_mail(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, org_b: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    b_account = await new_account(owner_engine, org_b, "desk@other.example")
    old_in = await _store_one(
        app_engine, org_a, account, sender="Late <LATE@example.net>", to=[OWN]
    )
    old_out = await _store_one(
        app_engine,
        org_a,
        account,
        folder="sent",
        sender=OWN,
        to=["x@example.net"],
        cc=["late@example.net"],
    )
    unrelated = await _store_one(app_engine, org_a, account, sender="other@example.net", to=[OWN])
    # the same address in org B's mailbox must not be touched
    b_email = await _store_one(
        app_engine, org_b, b_account, sender="late@example.net", to=["desk@other.example"]
    )

    contact = await make_contact(owner_engine, org_a.id, "late@example.net")
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_contact(s, contact) == 2
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_contact(s, contact) == 0, "idempotent"

    assert (await _links(app_engine, org_a, old_in))["contacts"] == {contact}
    assert (await _links(app_engine, org_a, old_out))["contacts"] == {contact}
    assert (await _links(app_engine, org_a, unrelated))["contacts"] == set()
    assert (await _links(app_engine, org_b, b_email))["contacts"] == set()
    assert await _activity_count(app_engine, org_a, contact_id=contact) == 2

    # a contact given a second address later picks up that address's mail too
    extra = await _store_one(app_engine, org_a, account, sender="late2@example.net", to=[OWN])
    await insert(
        owner_engine,
        "INSERT INTO contact_emails (org_id, contact_id, email) "
        "VALUES (:o, :c, 'late2@example.net')",
        o=org_a.id,
        c=contact,
    )
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_contact(s, contact) == 1
    assert (await _links(app_engine, org_a, extra))["contacts"] == {contact}
    assert await _activity_count(app_engine, org_a, contact_id=contact) == 3


async def test_a_contact_never_links_to_its_own_mailbox_retroactively(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    await _store_one(app_engine, org_a, account, sender="pat@example.net", to=[OWN])
    own = await make_contact(owner_engine, org_a.id, OWN)
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_contact(s, own) == 0


async def test_a_partner_created_later_is_linked_to_existing_mail(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    account = await new_account(owner_engine, org_a, OWN)
    direct = await _store_one(app_engine, org_a, account, sender="a@clinic-partner.org", to=[OWN])
    sub = await _store_one(
        app_engine, org_a, account, folder="sent", sender=OWN, to=["b@lab.clinic-partner.org"]
    )
    lookalike = await _store_one(
        app_engine, org_a, account, sender="c@evilclinic-partner.org", to=[OWN]
    )
    inbound_own = await _store_one(app_engine, org_a, account, sender="d@example.net", to=[OWN])

    partner = await make_partner(owner_engine, org_a.id, "clinic-partner.org")
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_partner(s, partner) == 2
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_partner(s, partner) == 0, "idempotent"
    assert (await _links(app_engine, org_a, direct))["partners"] == {partner}
    assert (await _links(app_engine, org_a, sub))["partners"] == {partner}
    assert (await _links(app_engine, org_a, lookalike))["partners"] == set()
    assert (await _links(app_engine, org_a, inbound_own))["partners"] == set()
    assert await _activity_count(app_engine, org_a, partner_id=partner) == 2

    # free-mail and public-suffix "domains" claim nothing, retroactively either
    await _store_one(app_engine, org_a, account, sender="x@gmail.com", to=[OWN])
    for domain in ("gmail.com", "org"):
        bogus = await make_partner(owner_engine, org_a.id, domain)
        async with org_transaction(app_engine, org_a.id) as s:
            assert await link_existing_emails_for_partner(s, bogus) == 0
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_partner(s, uuid.uuid4()) == 0


async def test_retroactive_linking_works_on_the_owner_connection_too(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org, org_b: Org
) -> None:
    """The dev fixtures write contacts as the owner (no RLS): links stay in the org."""
    a_account = await new_account(owner_engine, org_a, OWN)
    b_account = await new_account(owner_engine, org_b, "desk@b.example")
    await _store_one(app_engine, org_a, a_account, sender="shared@partner-x.org", to=[OWN])
    await _store_one(
        app_engine, org_b, b_account, sender="shared@partner-x.org", to=["desk@b.example"]
    )
    contact = await make_contact(owner_engine, org_a.id, "shared@partner-x.org")
    partner = await make_partner(owner_engine, org_a.id, "partner-x.org")
    async with AsyncSession(owner_engine) as s, s.begin():
        assert await link_existing_emails_for_contact(s, contact) == 1
        assert await link_existing_emails_for_partner(s, partner) == 1


async def test_rows_written_without_participants_are_filled_by_the_database(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, org_a: Org
) -> None:
    """The send path (or any other writer) stores recipients as JSON only: the trigger
    derives the linking addresses, so retroactive linking finds those rows too."""
    account = await new_account(owner_engine, org_a, OWN)
    async with org_transaction(app_engine, org_a.id) as s:
        insert_sql = text(
            "INSERT INTO ce_emails (org_id, account_id, direction, status, from_address, "
            "to_recipients, cc_recipients, occurred_at) VALUES (:o, :a, 'outbound', 'queued', "
            ":own, CAST(:to AS jsonb), CAST(:cc AS jsonb), now()) RETURNING id"
        )
        to = [{"name": "P", "address": " Later@Example.net"}]
        cc = [{"address": "desk@clinic.example"}, {"address": "x@ward.late-partner.org"}]
        params = {"o": org_a.id, "a": account["id"], "own": OWN}
        email_id = (
            await s.execute(insert_sql, {**params, "to": json.dumps(to), "cc": json.dumps(cc)})
        ).scalar_one()
    [row] = await rows(
        app_engine,
        org_a,
        "SELECT participant_addresses, participant_domains FROM ce_emails WHERE id = :e",
        e=email_id,
    )
    assert sorted(row["participant_addresses"]) == ["later@example.net", "x@ward.late-partner.org"]
    assert {"late-partner.org", "ward.late-partner.org"} <= set(row["participant_domains"])

    contact = await make_contact(owner_engine, org_a.id, "later@example.net")
    partner = await make_partner(owner_engine, org_a.id, "late-partner.org")
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_contact(s, contact) == 1
        assert await link_existing_emails_for_partner(s, partner) == 1

    # the recipients change (a draft edited before sending): the lookups follow
    async with org_transaction(app_engine, org_a.id) as s:
        await s.execute(
            text(
                "UPDATE ce_emails SET to_recipients = "
                '\'[{"address": "newer@example.net"}]\' WHERE id = :e'
            ),
            {"e": email_id},
        )
    newer = await make_contact(owner_engine, org_a.id, "newer@example.net")
    async with org_transaction(app_engine, org_a.id) as s:
        assert await link_existing_emails_for_contact(s, newer) == 1
    found = await rows(
        app_engine,
        org_a,
        "SELECT kind, value FROM ce_email_participants WHERE email_id = :e ORDER BY kind, value",
        e=email_id,
    )
    assert ("address", "later@example.net") not in {(r["kind"], r["value"]) for r in found}
    assert ("address", "newer@example.net") in {(r["kind"], r["value"]) for r in found}
