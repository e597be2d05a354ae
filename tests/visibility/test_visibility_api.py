"""Issue 11, Must show 2: the API under each level, for the owner, a member and an admin;
widening by an admin refused; sharing a thread and withdrawing it; the org's
`email_default_visibility` applied to new mailboxes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from tests.fixtures.accounts import connect
from tests.fixtures.mail import build_raw, remote, store
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.visibility import MarkedMail, marked_mailbox, other_of

pytestmark = pytest.mark.asyncio


async def _detail(client: httpx.AsyncClient, org: Org, who: str, mail: MarkedMail) -> Any:
    return await client.get(f"/v1/emails/{mail.email_id}", headers=org.headers(who))


async def _listed(client: httpx.AsyncClient, org: Org, who: str, mail: MarkedMail) -> list[Any]:
    r = await client.get(
        "/v1/emails", params={"account_id": mail.account_id}, headers=org.headers(who)
    )
    assert r.status_code == 200, r.text
    return [i for i in r.json()["items"] if i["id"] == mail.email_id]


def _shows(detail: dict[str, Any]) -> dict[str, bool]:
    return {
        "subject": detail["subject"] is not None,
        "snippet": detail["snippet"] is not None,
        "body": detail["text_body"] is not None or detail["html_body"] is not None,
        "attachments": bool(detail["attachments"]),
    }


EVERYTHING = {"subject": True, "snippet": True, "body": True, "attachments": True}
SEEN_BY_OTHERS = {
    "org": EVERYTHING,
    "subject": {"subject": True, "snippet": True, "body": False, "attachments": False},
    "metadata": {"subject": False, "snippet": False, "body": False, "attachments": False},
}


@pytest.mark.parametrize("level", ["org", "subject", "metadata", "private"])
@pytest.mark.parametrize("owner", ["admin", "member"])
async def test_each_level_as_owner_member_and_admin(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    make_org: MakeOrg,
    test_settings: Settings,
    level: str,
    owner: str,
) -> None:
    org: Org = await make_org(f"Levels {level} {owner}")
    mail = await marked_mailbox(
        owner_engine, app_engine, org, test_settings, level=level, owner=owner
    )
    other = other_of(owner)

    mine = await _detail(client, org, owner, mail)
    assert mine.status_code == 200
    assert _shows(mine.json()) == EVERYTHING, "the owner always sees everything"
    assert mine.json()["subject"] == mail.subject
    assert [i["subject"] for i in await _listed(client, org, owner, mail)] == [mail.subject]

    theirs = await _detail(client, org, other, mail)
    listed = await _listed(client, org, other, mail)
    if level == "private":
        assert theirs.status_code == 404
        assert listed == []
    else:
        assert theirs.status_code == 200
        body = theirs.json()
        assert _shows(body) == SEEN_BY_OTHERS[level], (other, level)
        # participants, times, direction and links stay visible at every level
        assert body["from"]["address"].startswith("pat-")
        assert body["direction"] == "inbound"
        assert body["sent_at"] is not None
        assert body["contact_ids"], "links are metadata"
        assert len(listed) == 1
        assert (listed[0]["subject"] is not None) == SEEN_BY_OTHERS[level]["subject"]
    # an admin sees every account and its sync status, whatever the level
    account = await client.get(f"/v1/accounts/{mail.account_id}", headers=org.headers("admin"))
    assert account.status_code == 200
    assert account.json()["visibility"] == level


async def test_only_the_owner_widens_an_admin_narrows(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    test_settings: Settings,
) -> None:
    mail = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="subject", owner="member"
    )
    path = f"/v1/accounts/{mail.account_id}"
    widened = await client.patch(path, json={"visibility": "org"}, headers=org_a.headers())
    assert widened.status_code == 403, widened.text
    narrowed = await client.patch(path, json={"visibility": "metadata"}, headers=org_a.headers())
    assert narrowed.status_code == 200
    assert narrowed.json()["visibility"] == "metadata"
    assert _shows((await _detail(client, org_a, "admin", mail)).json())["subject"] is False
    again = await client.patch(path, json={"visibility": "subject"}, headers=org_a.headers())
    assert again.status_code == 403
    owner = org_a.headers("member")
    widened = await client.patch(path, json={"visibility": "org"}, headers=owner)
    assert widened.status_code == 200
    assert widened.json()["visibility"] == "org"
    assert _shows((await _detail(client, org_a, "admin", mail)).json()) == EVERYTHING
    bad = await client.patch(path, json={"visibility": "everyone"}, headers=owner)
    assert bad.status_code == 422


async def test_sharing_a_thread_and_withdrawing_it(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    test_settings: Settings,
) -> None:
    mail = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="private", owner="member"
    )
    share = f"/v1/emails/{mail.email_id}/share"
    assert (await _detail(client, org_a, "admin", mail)).status_code == 404
    # only the owner shares (the admin cannot even see the email)
    refused = await client.post(share, json={"level": "org"}, headers=org_a.headers())
    assert refused.status_code == 404
    bad = await client.post(share, json={"level": "subject"}, headers=org_a.headers("member"))
    assert bad.status_code == 422
    shared = await client.post(share, json={"level": "org"}, headers=org_a.headers("member"))
    assert shared.status_code == 200, shared.text
    assert shared.json() == {"level": "org"}
    seen = await _detail(client, org_a, "admin", mail)
    assert seen.status_code == 200
    assert _shows(seen.json()) == EVERYTHING
    # an admin who sees it still may not withdraw or re-share it
    not_owner = await client.delete(share, headers=org_a.headers())
    assert not_owner.status_code == 403
    withdrawn = await client.delete(share, headers=org_a.headers("member"))
    assert withdrawn.status_code == 204
    assert (await _detail(client, org_a, "admin", mail)).status_code == 404


async def test_a_later_message_of_a_shared_thread_is_shared_too(
    client: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    app_engine: AsyncEngine,
    org_a: Org,
    test_settings: Settings,
) -> None:
    mail = await marked_mailbox(
        owner_engine, app_engine, org_a, test_settings, level="metadata", owner="admin"
    )
    shared = await client.post(
        f"/v1/emails/{mail.email_id}/share", json={"level": "org"}, headers=org_a.headers()
    )
    assert shared.status_code == 200
    account = mail.account
    later = await store(
        app_engine,
        org_a,
        account,
        [remote(build_raw(sender="x@example.net", subject="Later"), thread_id=mail.thread_id)],
    )
    other = await store(
        app_engine,
        org_a,
        account,
        [remote(build_raw(sender="x@example.net", subject="Elsewhere"), thread_id="another")],
    )
    member = org_a.headers("member")
    later_seen = await client.get(f"/v1/emails/{later.email_ids[0]}", headers=member)
    assert later_seen.json()["subject"] == "Later"
    other_seen = await client.get(f"/v1/emails/{other.email_ids[0]}", headers=member)
    assert other_seen.json()["subject"] is None


async def test_new_mailboxes_take_the_org_default(
    client: httpx.AsyncClient, make_org: MakeOrg
) -> None:
    org: Org = await make_org("Defaults")
    first = await connect(client, "gmail", org.headers("member"), login_hint="one@a.test")
    assert first["visibility"] == "metadata", "unset: the minimum-necessary default"
    r = await client.patch(
        "/v1/settings", json={"email_default_visibility": "subject"}, headers=org.headers()
    )
    assert r.status_code == 200
    assert r.json()["email_default_visibility"] == "subject"
    bad = await client.patch(
        "/v1/settings", json={"email_default_visibility": "everyone"}, headers=org.headers()
    )
    assert bad.status_code == 422
    second = await connect(client, "outlook", org.headers("member"), login_hint="two@a.test")
    assert second["visibility"] == "subject"
    # reconnecting an existing mailbox keeps its level
    again = await connect(client, "gmail", org.headers("member"), login_hint="one@a.test")
    assert again["id"] == first["id"]
    assert again["visibility"] == "metadata"
