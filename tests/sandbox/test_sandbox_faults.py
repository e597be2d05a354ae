"""Injected faults, the Gmail quota and the Graph concurrency cap."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.standalone_sandbox import (
    GMAIL_API,
    GMAIL_USER,
    GRAPH_API,
    OUTLOOK_USER,
    SANDBOX,
    Sandbox,
    add_fault,
    bearer,
    connect,
    make_message,
    seed,
    token_call,
)


def reason(response: Any) -> str:
    return str(response.json()["error"]["errors"][0]["reason"])


async def stats(sandbox: Sandbox, provider: str, mailbox: str) -> dict[str, int]:
    body = (await sandbox.client.get(f"{SANDBOX}/{provider}/stats")).json()
    counters: dict[str, int] = body["mailboxes"][mailbox]
    return counters


# --------------------------------------------------------------------------- Gmail


@pytest.mark.asyncio
async def test_gmail_rate_limit_alternates_429_and_403_then_recovers(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    await add_fault(sandbox, "gmail", "rate_limit", count=2)
    first = await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)
    second = await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)
    third = await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)
    assert (first.status_code, reason(first)) == (429, "rateLimitExceeded")
    assert first.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert (second.status_code, reason(second)) == (403, "userRateLimitExceeded")
    assert third.status_code == 200


@pytest.mark.asyncio
async def test_gmail_server_error_is_503_backend_error(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    await add_fault(sandbox, "gmail", "server_error")
    failed = await sandbox.client.get(f"{GMAIL_API}/messages", headers=headers)
    assert (failed.status_code, reason(failed)) == (503, "backendError")
    assert (await sandbox.client.get(f"{GMAIL_API}/messages", headers=headers)).status_code == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_expire_access_token_kills_that_token_only(sandbox: Sandbox, provider: str) -> None:
    tokens = await connect(sandbox, provider)
    url = f"{GMAIL_API}/profile" if provider == "gmail" else f"{GRAPH_API}/me"
    await add_fault(sandbox, provider, "expire_access_token")
    assert (await sandbox.client.get(url, headers=bearer(tokens))).status_code == 401
    again = await sandbox.client.get(url, headers=bearer(tokens))
    assert again.status_code == 401
    if provider == "outlook":
        assert again.json()["error"]["code"] == "InvalidAuthenticationToken"
    else:
        assert reason(again) == "authError"
    refreshed = await token_call(
        sandbox, provider, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert (await sandbox.client.get(url, headers=bearer(refreshed.json()))).status_code == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_revoke_refresh_token_keeps_answering_invalid_grant(
    sandbox: Sandbox, provider: str
) -> None:
    tokens = await connect(sandbox, provider)
    rotated = (
        await token_call(
            sandbox, provider, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
    ).json()
    await add_fault(sandbox, provider, "revoke_refresh_token")
    for refresh in (tokens["refresh_token"], rotated.get("refresh_token", tokens["refresh_token"])):
        response = await token_call(
            sandbox, provider, grant_type="refresh_token", refresh_token=refresh
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
    if provider == "outlook":
        assert response.json()["error_codes"] == [700082]
    else:
        assert response.json()["error_description"] == "Token has been expired or revoked."
    fresh = await connect(sandbox, provider)  # a new consent works again
    assert (
        await token_call(
            sandbox, provider, grant_type="refresh_token", refresh_token=fresh["refresh_token"]
        )
    ).status_code == 200


@pytest.mark.asyncio
async def test_gmail_expire_cursor_makes_old_history_ids_404(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    start = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    await seed(sandbox, "gmail", make_message())
    await add_fault(sandbox, "gmail", "expire_cursor")
    params = {"startHistoryId": start}
    assert (
        await sandbox.client.get(f"{GMAIL_API}/history", params=params, headers=headers)
    ).status_code == 404
    assert (
        await sandbox.client.get(f"{GMAIL_API}/history", params=params, headers=headers)
    ).status_code == 404
    fresh = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    resumed = await sandbox.client.get(
        f"{GMAIL_API}/history", params={"startHistoryId": fresh}, headers=headers
    )
    assert resumed.status_code == 200


@pytest.mark.asyncio
async def test_gmail_delete_before_get(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    await seed(sandbox, "gmail", make_message(subject="older"), received_at="2025-01-01T00:00:00Z")
    await seed(sandbox, "gmail", make_message(subject="newer"), received_at="2025-01-02T00:00:00Z")
    await add_fault(sandbox, "gmail", "delete_before_get")
    listed = (await sandbox.client.get(f"{GMAIL_API}/messages", headers=headers)).json()["messages"]
    assert len(listed) == 2
    first, second = (m["id"] for m in listed)
    assert (
        await sandbox.client.get(f"{GMAIL_API}/messages/{first}", headers=headers)
    ).status_code == 404
    assert (
        await sandbox.client.get(f"{GMAIL_API}/messages/{second}", headers=headers)
    ).status_code == 200


@pytest.mark.asyncio
async def test_gmail_duplicate_page_repeats_items(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    for day in range(1, 7):
        await seed(sandbox, "gmail", make_message(), received_at=f"2025-01-0{day}T00:00:00Z")
    first = (
        await sandbox.client.get(f"{GMAIL_API}/messages", params={"maxResults": 3}, headers=headers)
    ).json()
    await add_fault(sandbox, "gmail", "duplicate_page")
    second = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages",
            params={"maxResults": 3, "pageToken": first["nextPageToken"]},
            headers=headers,
        )
    ).json()
    first_ids = {m["id"] for m in first["messages"]}
    assert first_ids & {m["id"] for m in second["messages"]}


@pytest.mark.asyncio
async def test_slow_adds_latency(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    await add_fault(sandbox, "gmail", "slow", seconds=0.2)
    started = time.perf_counter()
    assert (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).status_code == 200
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)
    assert time.perf_counter() - started < 0.2


@pytest.mark.asyncio
async def test_faults_can_target_one_mailbox(sandbox: Sandbox) -> None:
    alice = bearer(await connect(sandbox, "gmail", "alice@example.com"))
    bob = bearer(await connect(sandbox, "gmail", "bob@example.com"))
    await add_fault(sandbox, "gmail", "server_error", mailbox="Bob@Example.com")
    assert (await sandbox.client.get(f"{GMAIL_API}/profile", headers=alice)).status_code == 200
    assert (await sandbox.client.get(f"{GMAIL_API}/profile", headers=bob)).status_code == 503
    assert (await sandbox.client.get(f"{GMAIL_API}/profile", headers=bob)).status_code == 200


@pytest.mark.asyncio
async def test_gmail_quota_units_per_minute(sandbox: Sandbox) -> None:
    sandbox.state.config = replace(sandbox.state.require_config(), gmail_units_per_minute=12)
    headers = bearer(await connect(sandbox, "gmail"))
    message_id = await seed(sandbox, "gmail", make_message())
    url = f"{GMAIL_API}/messages/{message_id}"
    assert [(await sandbox.client.get(url, headers=headers)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    counters = await stats(sandbox, "gmail", GMAIL_USER)
    assert counters["quota_units"] == 10
    assert counters["quota_violations"] == 1
    assert counters["calls"] == 3
    profile = await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)  # 1 unit still fits
    assert profile.status_code == 200
    sandbox.clock.advance(61)
    assert (await sandbox.client.get(url, headers=headers)).status_code == 200


# --------------------------------------------------------------------------- Graph


@pytest.mark.asyncio
async def test_graph_rate_limit_and_server_error_carry_retry_after(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    await add_fault(sandbox, "outlook", "rate_limit", retry_after=0.25)
    throttled = await sandbox.client.get(f"{GRAPH_API}/me/messages", headers=headers)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "0.25"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    await add_fault(sandbox, "outlook", "server_error")
    unavailable = await sandbox.client.get(f"{GRAPH_API}/me/messages", headers=headers)
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["code"] == "serviceNotAvailable"
    assert unavailable.headers["retry-after"] == "1"
    assert (
        await sandbox.client.get(f"{GRAPH_API}/me/messages", headers=headers)
    ).status_code == 200


@pytest.mark.asyncio
async def test_graph_delete_before_get_and_duplicate_delta_page(sandbox: Sandbox) -> None:
    headers = {**bearer(await connect(sandbox, "outlook")), "Prefer": "odata.maxpagesize=2"}
    for n in range(4):
        await seed(sandbox, "outlook", make_message(subject=f"m{n}"))
    first = (
        await sandbox.client.get(
            f"{GRAPH_API}/me/mailFolders/inbox/messages/delta", headers=headers
        )
    ).json()
    await add_fault(sandbox, "outlook", "duplicate_page")
    next_link = first["@odata.nextLink"].replace("http://127.0.0.1:8000", "")
    second = (await sandbox.client.get(next_link, headers=headers)).json()
    assert {m["id"] for m in first["value"]} & {m["id"] for m in second["value"]}

    await add_fault(sandbox, "outlook", "delete_before_get")
    listed = (await sandbox.client.get(f"{GRAPH_API}/me/messages", headers=headers)).json()["value"]
    gone = await sandbox.client.get(f"{GRAPH_API}/me/messages/{listed[0]['id']}", headers=headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "ErrorItemNotFound"


@pytest.mark.asyncio
async def test_graph_batch_inner_requests_are_throttled_individually(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    await add_fault(sandbox, "outlook", "rate_limit", retry_after=2.128)
    body = {
        "requests": [
            {"id": "a", "method": "GET", "url": "/me"},
            {"id": "b", "method": "GET", "url": "/me"},
        ]
    }
    answers = {
        r["id"]: r
        for r in (
            await sandbox.client.post(f"{GRAPH_API}/$batch", json=body, headers=headers)
        ).json()["responses"]
    }
    assert answers["a"]["status"] == 429
    assert answers["a"]["headers"]["Retry-After"] == "2.128"
    assert answers["b"]["status"] == 200


@pytest.mark.asyncio
async def test_graph_mailbox_concurrency_cap(sandbox: Sandbox) -> None:
    sandbox.state.config = replace(sandbox.state.require_config(), graph_max_concurrency=2)
    sandbox.state.latency_seconds = 0.05
    headers = bearer(await connect(sandbox, "outlook"))
    responses = await asyncio.gather(
        *(sandbox.client.get(f"{GRAPH_API}/me", headers=headers) for _ in range(6))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 2
    assert statuses.count(429) == 4
    throttled = next(r for r in responses if r.status_code == 429)
    assert (
        throttled.json()["error"]["message"] == "Application is over its MailboxConcurrency limit."
    )
    assert "retry-after" in throttled.headers
    counters = await stats(sandbox, "outlook", OUTLOOK_USER)
    assert counters["concurrency_violations"] == 4
    assert counters["max_concurrency"] >= 3
    assert counters["in_flight"] == 0

    sandbox.state.latency_seconds = 0
    sequential = [
        (await sandbox.client.get(f"{GRAPH_API}/me", headers=headers)).status_code for _ in range(5)
    ]
    assert sequential == [200] * 5


# ------------------------------------------------------------------- lost changes and pushes


async def _history_ids(sandbox: Sandbox, headers: dict[str, str], start: str) -> list[str]:
    history = await sandbox.client.get(
        f"{GMAIL_API}/history", params={"startHistoryId": start}, headers=headers
    )
    assert history.status_code == 200, history.text
    return [h["messagesAdded"][0]["message"]["id"] for h in history.json().get("history", [])]


async def _delta_ids(sandbox: Sandbox, headers: dict[str, str], url: str) -> tuple[list[str], str]:
    """One whole delta round: the ids it reports and the next round's link (a path)."""
    ids: list[str] = []
    while True:
        page = (await sandbox.client.get(url, headers=headers)).json()
        ids += [item["id"] for item in page["value"]]
        link = page.get("@odata.nextLink") or page["@odata.deltaLink"]
        url = link.removeprefix("http://127.0.0.1:8000")
        if "@odata.deltaLink" in page:
            return ids, url


@pytest.mark.asyncio
async def test_gmail_skip_changes_hides_additions_from_history_only(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    start = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    await add_fault(sandbox, "gmail", "skip_changes", count=2)
    lost = [await seed(sandbox, "gmail", make_message(subject=f"lost {n}")) for n in range(2)]
    kept = await seed(sandbox, "gmail", make_message(subject="announced"))

    assert await _history_ids(sandbox, headers, start) == [kept]
    listed = (await sandbox.client.get(f"{GMAIL_API}/messages", headers=headers)).json()
    assert {m["id"] for m in listed["messages"]} == {*lost, kept}
    for message_id in lost:
        got = await sandbox.client.get(f"{GMAIL_API}/messages/{message_id}", headers=headers)
        assert got.status_code == 200
    profile = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()
    assert int(profile["historyId"]) == int(start) + 3  # the cursor moved past them
    assert (await sandbox.client.get(f"{SANDBOX}/gmail/faults")).json()["faults"] == []


@pytest.mark.asyncio
async def test_graph_skip_changes_hides_additions_from_delta_only(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    first = await seed(sandbox, "outlook", make_message(subject="before"))
    delta = f"{GRAPH_API}/me/mailFolders/inbox/messages/delta"
    initial, next_round = await _delta_ids(sandbox, headers, delta)
    assert initial == [first]

    await add_fault(sandbox, "outlook", "skip_changes")
    lost = await seed(sandbox, "outlook", make_message(subject="lost"))
    kept = await seed(sandbox, "outlook", make_message(subject="announced"))
    changes, _ = await _delta_ids(sandbox, headers, next_round)
    assert changes == [kept]

    listed = (await sandbox.client.get(f"{GRAPH_API}/me/messages", headers=headers)).json()
    assert {m["id"] for m in listed["value"]} == {first, lost, kept}
    got = await sandbox.client.get(f"{GRAPH_API}/me/messages/{lost}", headers=headers)
    assert got.status_code == 200
    assert got.json()["subject"] == "lost"


@pytest.mark.asyncio
async def test_skip_changes_counts_sent_mail_but_not_drafts(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    delta = f"{GRAPH_API}/me/mailFolders/sentitems/messages/delta"
    _, next_round = await _delta_ids(sandbox, headers, delta)
    await add_fault(sandbox, "outlook", "skip_changes")
    draft = await sandbox.client.post(
        f"{GRAPH_API}/me/messages",
        json={
            "subject": "a draft",
            "toRecipients": [{"emailAddress": {"address": "pat@x.example"}}],
        },
        headers=headers,
    )
    assert draft.status_code == 201
    assert len((await sandbox.client.get(f"{SANDBOX}/outlook/faults")).json()["faults"]) == 1
    sent = await sandbox.client.post(
        f"{GRAPH_API}/me/messages/{draft.json()['id']}/send", headers=headers
    )
    assert sent.status_code == 202
    changes, _ = await _delta_ids(sandbox, headers, next_round)
    assert changes == []
    listed = await sandbox.client.get(
        f"{GRAPH_API}/me/mailFolders/sentitems/messages", headers=headers
    )
    assert [m["id"] for m in listed.json()["value"]] == [draft.json()["id"]]


@pytest.mark.asyncio
async def test_gmail_drop_push_swallows_the_next_pushes(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    await sandbox.client.post(
        f"{GMAIL_API}/watch", json={"topicName": "projects/p/topics/t"}, headers=headers
    )
    await add_fault(sandbox, "gmail", "drop_push", count=2)
    for n in range(3):
        await seed(sandbox, "gmail", make_message(subject=f"m{n}"))
    await sandbox.state.drain_pushes()
    (only,) = sandbox.receiver.gmail
    profile = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()
    data = json.loads(base64.b64decode(only[1]["message"]["data"]))
    assert data["historyId"] == int(profile["historyId"])  # the third change's push
    pushes = (await sandbox.client.get(f"{SANDBOX}/gmail/stats")).json()["pushes"]
    assert pushes == {"sent": 1, "failed": 0}
    listed = (await sandbox.client.get(f"{GMAIL_API}/messages", headers=headers)).json()
    assert len(listed["messages"]) == 3  # the changes happened; only their pushes were lost


@pytest.mark.asyncio
async def test_graph_drop_push_swallows_the_next_notifications(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    expires = (datetime.fromtimestamp(sandbox.clock(), UTC) + timedelta(days=1)).isoformat()
    created = await sandbox.client.post(
        f"{GRAPH_API}/subscriptions",
        json={
            "changeType": "created",
            "notificationUrl": f"{sandbox.settings.public_base_url}/v1/webhooks/graph",
            "resource": "me/mailFolders('inbox')/messages",
            "expirationDateTime": expires,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    await add_fault(sandbox, "outlook", "drop_push")
    dropped = await seed(sandbox, "outlook", make_message(subject="dropped"))
    delivered = await seed(sandbox, "outlook", make_message(subject="delivered"))
    await sandbox.state.drain_pushes()
    notified = [n["resourceData"]["id"] for post in sandbox.receiver.graph for n in post["value"]]
    assert notified == [delivered]
    delta = f"{GRAPH_API}/me/mailFolders/inbox/messages/delta"
    assert sorted((await _delta_ids(sandbox, headers, delta))[0]) == sorted([dropped, delivered])


@pytest.mark.asyncio
async def test_drop_push_can_target_one_mailbox(sandbox: Sandbox) -> None:
    await add_fault(sandbox, "gmail", "drop_push", mailbox="someone.else@example.com")
    headers = bearer(await connect(sandbox, "gmail"))
    await sandbox.client.post(
        f"{GMAIL_API}/watch", json={"topicName": "projects/p/topics/t"}, headers=headers
    )
    await seed(sandbox, "gmail", make_message())
    await sandbox.state.drain_pushes()
    assert len(sandbox.receiver.gmail) == 1
    (fault,) = (await sandbox.client.get(f"{SANDBOX}/gmail/faults")).json()["faults"]
    assert (fault["kind"], fault["count"]) == ("drop_push", 1)
