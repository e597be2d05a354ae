"""Sandbox control paths: seeding (one and bulk), deletion, faults admin, stats, reset."""

from __future__ import annotations

import pytest

from tests.fixtures.standalone_sandbox import (
    GMAIL_API,
    GMAIL_USER,
    GRAPH_API,
    OUTLOOK_USER,
    SANDBOX,
    Sandbox,
    bearer,
    connect,
    make_message,
    seed,
)


@pytest.mark.asyncio
async def test_bulk_seed_of_a_big_mailbox_pages_through_completely(sandbox: Sandbox) -> None:
    raw = make_message().decode()
    messages = [
        {
            "raw": raw.replace("Quarterly report", f"message {n}"),
            "received_at": f"2024-01-01T00:00:{n % 60:02d}Z",
        }
        for n in range(20_000)
    ]
    messages[0]["folder"] = "sent"
    response = await sandbox.client.post(
        f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages:bulk", json={"messages": messages}
    )
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert len(set(ids)) == 20_000

    headers = bearer(await connect(sandbox, "gmail"))
    profile = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()
    assert profile["messagesTotal"] == 20_000
    seen: set[str] = set()
    token = None
    while True:
        params: dict[str, str | int] = {"maxResults": 500, "labelIds": "INBOX"}
        if token:
            params["pageToken"] = token
        page = (
            await sandbox.client.get(f"{GMAIL_API}/messages", params=params, headers=headers)
        ).json()
        seen.update(m["id"] for m in page["messages"])
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == set(ids[1:])


@pytest.mark.asyncio
async def test_bulk_seed_fires_one_gmail_push(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    await sandbox.client.post(
        f"{GMAIL_API}/watch", json={"topicName": "projects/p/topics/t"}, headers=headers
    )
    batch = [{"raw": make_message(subject=f"s{n}").decode()} for n in range(5)]
    response = await sandbox.client.post(
        f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages:bulk", json={"messages": batch}
    )
    assert response.status_code == 201
    await sandbox.state.drain_pushes()
    assert len(sandbox.receiver.gmail) == 1
    bad = await sandbox.client.post(
        f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages:bulk", json={"messages": [{}]}
    )
    assert bad.status_code == 400


@pytest.mark.asyncio
async def test_seed_validation_and_delete(sandbox: Sandbox) -> None:
    base = f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}/messages"
    assert (
        await sandbox.client.post(base, params={"folder": "junk"}, content=make_message())
    ).status_code == 400
    assert (
        await sandbox.client.post(base, params={"received_at": "yesterday"}, content=make_message())
    ).status_code == 400
    assert (await sandbox.client.post(base, content=b"")).status_code == 400
    assert (
        await sandbox.client.post(
            f"{SANDBOX}/yahoo/mailboxes/x@y.z/messages", content=make_message()
        )
    ).status_code == 404
    message_id = await seed(sandbox, "outlook", make_message(), folder="sentitems")
    summary = (await sandbox.client.get(f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}")).json()
    assert summary["folders"] == {"inbox": 0, "sent": 1, "drafts": 0}
    assert (await sandbox.client.delete(f"{base}/{message_id}")).status_code == 204
    assert (await sandbox.client.delete(f"{base}/{message_id}")).status_code == 404


@pytest.mark.asyncio
async def test_fault_admin_endpoints(sandbox: Sandbox) -> None:
    url = f"{SANDBOX}/gmail/faults"
    assert (await sandbox.client.post(url, json={"kind": "meteor", "count": 1})).status_code == 400
    assert (await sandbox.client.post(url, json={"kind": "slow", "count": 0})).status_code == 400
    created = await sandbox.client.post(
        url, json={"kind": "rate_limit", "count": 3, "mailbox": GMAIL_USER}
    )
    assert created.status_code == 201
    assert created.json()["faults"][0] == {
        "kind": "rate_limit",
        "count": 3,
        "mailbox": GMAIL_USER,
        "seconds": 0.5,
        "retry_after": 1.0,
    }
    assert len((await sandbox.client.get(url)).json()["faults"]) == 1
    assert (await sandbox.client.delete(url)).status_code == 204
    assert (await sandbox.client.get(url)).json() == {"faults": []}


@pytest.mark.asyncio
async def test_stats_count_calls_and_units_per_mailbox(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    message_id = await seed(sandbox, "gmail", make_message())
    await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)
    await sandbox.client.get(f"{GMAIL_API}/messages", headers=headers)
    await sandbox.client.get(f"{GMAIL_API}/messages/{message_id}", headers=headers)
    await sandbox.client.get(
        f"{GMAIL_API}/history", params={"startHistoryId": "100000"}, headers=headers
    )
    counters = (await sandbox.client.get(f"{SANDBOX}/gmail/stats")).json()["mailboxes"][GMAIL_USER]
    assert counters["calls"] == 4
    assert counters["quota_units"] == 1 + 5 + 5 + 2
    assert counters["max_concurrency"] == 1
    assert counters["quota_violations"] == counters["concurrency_violations"] == 0


@pytest.mark.asyncio
async def test_reset_forgets_everything(sandbox: Sandbox) -> None:
    gmail = bearer(await connect(sandbox, "gmail"))
    outlook = bearer(await connect(sandbox, "outlook"))
    await seed(sandbox, "gmail", make_message())
    await sandbox.client.post(f"{SANDBOX}/gmail/faults", json={"kind": "slow"})
    assert (await sandbox.client.post(f"{SANDBOX}/reset")).status_code == 204
    assert (await sandbox.client.get(f"{GMAIL_API}/profile", headers=gmail)).status_code == 401
    assert (await sandbox.client.get(f"{GRAPH_API}/me", headers=outlook)).status_code == 401
    assert (await sandbox.client.get(f"{SANDBOX}/gmail/mailboxes")).json() == {"mailboxes": []}
    assert (await sandbox.client.get(f"{SANDBOX}/gmail/faults")).json() == {"faults": []}
    sent = await sandbox.client.get(f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/sent")
    assert sent.json() == {"items": []}
