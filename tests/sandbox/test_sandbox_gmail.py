"""The fake Gmail API over HTTP: rendering, paging, history, send, watch/push, batch."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest

from tests.fixtures.standalone_sandbox import (
    GMAIL_API,
    GMAIL_USER,
    SANDBOX,
    Sandbox,
    bearer,
    connect,
    make_message,
    seed,
)

PDF = b"%PDF-1.4 fake report " + bytes(range(256))


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts_by_mime(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {payload["mimeType"]: payload}
    for part in payload.get("parts", []):
        found.update(parts_by_mime(part))
    return found


@pytest.mark.asyncio
async def test_seeded_message_renders_full_raw_metadata_and_minimal(sandbox: Sandbox) -> None:
    tokens = await connect(sandbox, "gmail")
    raw = make_message(
        html="<p>Hello,<br>the report is attached.</p>",
        attachments=[("report.pdf", "application/pdf", PDF)],
        cc="carol@partner.example",
    )
    message_id = await seed(sandbox, "gmail", raw, received_at="2025-02-28T10:00:00Z")
    headers = bearer(tokens)

    listed = (await sandbox.client.get(f"{GMAIL_API}/messages", headers=headers)).json()
    assert listed["messages"] == [{"id": message_id, "threadId": message_id}]
    assert listed["resultSizeEstimate"] == 1

    full = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages/{message_id}",
            params={"alt": "json", "prettyPrint": "false"},
            headers=headers,
        )
    ).json()
    assert full["labelIds"] == ["INBOX", "UNREAD"]
    assert full["internalDate"] == "1740736800000"
    assert full["sizeEstimate"] == len(raw)
    assert full["snippet"].startswith("Hello, the report is attached.")
    payload = full["payload"]
    assert payload["partId"] == ""
    assert payload["mimeType"] == "multipart/mixed"
    source = message_from_bytes(raw, policy=policy.compat32)
    assert [(h["name"], h["value"]) for h in payload["headers"]] == [
        (k, v.replace("\r\n", "").replace("\n", "")) for k, v in source.items()
    ]
    parts = parts_by_mime(payload)
    assert parts["multipart/alternative"]["partId"] == "0"
    assert parts["multipart/alternative"]["body"] == {"size": 0}
    text = parts["text/plain"]
    assert text["partId"] == "0.0"
    assert b64url_decode(text["body"]["data"]) == b"Hello,\r\nthe report is attached.\r\n"
    assert b64url_decode(parts["text/html"]["body"]["data"]).startswith(b"<p>Hello,")
    pdf = parts["application/pdf"]
    assert pdf["filename"] == "report.pdf"
    assert pdf["body"]["size"] == len(PDF)
    assert "data" not in pdf["body"]

    attachment = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages/{message_id}/attachments/{pdf['body']['attachmentId']}",
            headers=headers,
        )
    ).json()
    assert b64url_decode(attachment["data"]) == PDF
    assert attachment["size"] == len(PDF)

    raw_format = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages/{message_id}", params={"format": "raw"}, headers=headers
        )
    ).json()
    assert b64url_decode(raw_format["raw"]) == raw
    assert "payload" not in raw_format

    metadata = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages/{message_id}",
            params=[
                ("format", "metadata"),
                ("metadataHeaders", "Subject"),
                ("metadataHeaders", "cc"),
            ],
            headers=headers,
        )
    ).json()
    assert metadata["payload"]["headers"] == [
        {"name": "Cc", "value": "carol@partner.example"},
        {"name": "Subject", "value": "Quarterly report"},
    ]
    minimal = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages/{message_id}", params={"format": "minimal"}, headers=headers
        )
    ).json()
    assert "payload" not in minimal
    assert minimal["threadId"] == message_id


@pytest.mark.asyncio
async def test_list_pages_newest_first_and_filters(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    ids = []
    for day in range(1, 8):
        raw = make_message(subject=f"day {day}")
        ids.append(await seed(sandbox, "gmail", raw, received_at=f"2025-01-0{day}T08:00:00Z"))
    sent_id = await seed(
        sandbox,
        "gmail",
        make_message(subject="out"),
        folder="sent",
        received_at="2025-01-05T09:00:00Z",
    )

    seen: list[str] = []
    page_token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"maxResults": 3, "labelIds": "INBOX"}
        if page_token:
            params["pageToken"] = page_token
        page = (
            await sandbox.client.get(f"{GMAIL_API}/messages", params=params, headers=headers)
        ).json()
        seen += [m["id"] for m in page["messages"]]
        pages += 1
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    assert pages == 3
    assert seen == list(reversed(ids))

    after = 1735977600  # 2025-01-04T08:00:00Z, inclusive
    before = 1736064000  # 2025-01-05T08:00:00Z, exclusive
    window = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages", params={"q": f"after:{after} before:{before}"}, headers=headers
        )
    ).json()
    assert [m["id"] for m in window["messages"]] == [ids[3]]

    in_sent = (
        await sandbox.client.get(f"{GMAIL_API}/messages", params={"q": "in:sent"}, headers=headers)
    ).json()
    assert [m["id"] for m in in_sent["messages"]] == [sent_id]
    both = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages",
            params=[("labelIds", "INBOX"), ("labelIds", "SENT")],
            headers=headers,
        )
    ).json()
    assert both == {"resultSizeEstimate": 0}
    everything = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages", params={"maxResults": 500}, headers=headers
        )
    ).json()
    assert len(everything["messages"]) == 8
    unsupported = await sandbox.client.get(
        f"{GMAIL_API}/messages", params={"q": "has:attachment"}, headers=headers
    )
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["errors"][0]["reason"] == "invalidArgument"


@pytest.mark.asyncio
async def test_history_records_additions_and_deletions(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    start = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    first = await seed(sandbox, "gmail", make_message(subject="one"))
    second = await seed(sandbox, "gmail", make_message(subject="two"))
    deleted = await sandbox.client.delete(
        f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages/{first}"
    )
    assert deleted.status_code == 204

    history = (
        await sandbox.client.get(
            f"{GMAIL_API}/history", params={"startHistoryId": start}, headers=headers
        )
    ).json()
    kinds = [
        ("added" if "messagesAdded" in h else "deleted", h["messages"][0]["id"])
        for h in history["history"]
    ]
    assert kinds == [("added", first), ("added", second), ("deleted", first)]
    added = history["history"][0]["messagesAdded"][0]["message"]
    assert added["labelIds"] == ["INBOX", "UNREAD"]
    profile = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()
    assert history["historyId"] == profile["historyId"]
    assert profile["messagesTotal"] == 1

    only_deleted = (
        await sandbox.client.get(
            f"{GMAIL_API}/history",
            params={"startHistoryId": start, "historyTypes": "messageDeleted"},
            headers=headers,
        )
    ).json()
    assert [h["messagesDeleted"][0]["message"]["id"] for h in only_deleted["history"]] == [first]

    paged: list[str] = []
    token = None
    while True:
        params = {
            "startHistoryId": start,
            "maxResults": 1,
            **({"pageToken": token} if token else {}),
        }
        page = (
            await sandbox.client.get(f"{GMAIL_API}/history", params=params, headers=headers)
        ).json()
        paged += [h["id"] for h in page.get("history", [])]
        token = page.get("nextPageToken")
        if not token:
            break
    assert paged == [h["id"] for h in history["history"]]

    current = (
        await sandbox.client.get(
            f"{GMAIL_API}/history", params={"startHistoryId": profile["historyId"]}, headers=headers
        )
    ).json()
    assert "history" not in current
    assert current["historyId"] == profile["historyId"]


@pytest.mark.asyncio
@pytest.mark.parametrize("start", ["1", "999999999999", "not-a-number"])
async def test_bogus_history_id_is_404(sandbox: Sandbox, start: str) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    response = await sandbox.client.get(
        f"{GMAIL_API}/history", params={"startHistoryId": start}, headers=headers
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "errors": [
                {
                    "message": "Requested entity was not found.",
                    "domain": "global",
                    "reason": "notFound",
                }
            ],
            "status": "NOT_FOUND",
        }
    }


@pytest.mark.asyncio
async def test_history_older_than_the_retained_window_is_404(sandbox: Sandbox) -> None:
    sandbox.state.max_log_records = 4
    headers = bearer(await connect(sandbox, "gmail"))
    start = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    for n in range(6):
        await seed(sandbox, "gmail", make_message(subject=f"m{n}"))
    old = await sandbox.client.get(
        f"{GMAIL_API}/history", params={"startHistoryId": start}, headers=headers
    )
    assert old.status_code == 404
    fresh = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    ok = await sandbox.client.get(
        f"{GMAIL_API}/history", params={"startHistoryId": fresh}, headers=headers
    )
    assert ok.status_code == 200


async def _sent_log(sandbox: Sandbox, mailbox: str = GMAIL_USER) -> list[dict[str, str]]:
    response = await sandbox.client.get(f"{SANDBOX}/gmail/mailboxes/{mailbox}/sent")
    items: list[dict[str, str]] = response.json()["items"]
    return items


@pytest.mark.asyncio
async def test_send_raw_lands_in_sent_label_history_and_sent_log(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    inbound_id = "<thread-root@partner.example>"
    root = await seed(sandbox, "gmail", make_message(message_id=inbound_id))
    start = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    reply = make_message(
        subject="Re: Quarterly report",
        sender=GMAIL_USER,
        to="alice@partner.example",
        text="Thanks!",
        in_reply_to=inbound_id,
        attachments=[("notes.txt", "text/plain", b"some notes")],
    )
    response = await sandbox.client.post(
        f"{GMAIL_API}/messages/send",
        json={"raw": base64.urlsafe_b64encode(reply).decode().rstrip("="), "threadId": root},
        headers=headers,
    )
    assert response.status_code == 200
    sent = response.json()
    assert sent["threadId"] == root
    assert sent["labelIds"] == ["SENT"]

    log = await _sent_log(sandbox)
    assert [item["id"] for item in log] == [sent["id"]]
    parsed = message_from_bytes(log[0]["raw"].encode(), policy=policy.default)
    assert parsed["To"] == "alice@partner.example"
    assert parsed["In-Reply-To"] == inbound_id
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "notes.txt"
    assert attachment.get_content() == "some notes"

    in_sent = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages", params={"labelIds": "SENT"}, headers=headers
        )
    ).json()
    assert [m["id"] for m in in_sent["messages"]] == [sent["id"]]
    history = (
        await sandbox.client.get(
            f"{GMAIL_API}/history", params={"startHistoryId": start}, headers=headers
        )
    ).json()
    assert history["history"][0]["messagesAdded"][0]["message"]["labelIds"] == ["SENT"]

    no_recipient = make_message(to="")
    refused = await sandbox.client.post(
        f"{GMAIL_API}/messages/send",
        json={"raw": base64.urlsafe_b64encode(no_recipient).decode()},
        headers=headers,
    )
    assert refused.status_code == 400


@pytest.mark.asyncio
async def test_upload_endpoints_send_media_and_multipart(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    upload = sandbox.settings.gmail_upload_base.replace("http://127.0.0.1:8000", "")
    url = f"{upload}/users/me/messages/send"
    media_raw = make_message(subject="media upload", to="dana@partner.example")
    media = await sandbox.client.post(
        url,
        params={"uploadType": "media"},
        content=media_raw,
        headers={**headers, "Content-Type": "message/rfc822"},
    )
    assert media.status_code == 200, media.text

    multipart_raw = make_message(subject="multipart upload", to="erin@partner.example")
    boundary = "upload_boundary_42"
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{{}}\r\n"
            f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
        ).encode()
        + multipart_raw
        + f"\r\n--{boundary}--\r\n".encode()
    )
    multipart = await sandbox.client.post(
        url,
        params={"uploadType": "multipart"},
        content=body,
        headers={**headers, "Content-Type": f"multipart/related; boundary={boundary}"},
    )
    assert multipart.status_code == 200, multipart.text

    log = await _sent_log(sandbox)
    assert [item["id"] for item in log] == [media.json()["id"], multipart.json()["id"]]
    assert log[0]["raw"].encode() == media_raw
    assert log[1]["raw"].encode() == multipart_raw

    wrong_type = await sandbox.client.post(
        url,
        params={"uploadType": "media"},
        content=media_raw,
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 400


@pytest.mark.asyncio
async def test_send_over_35_mb_is_refused(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    upload = sandbox.settings.gmail_upload_base.replace("http://127.0.0.1:8000", "")
    huge = make_message(to="x@partner.example") + b"x" * (36_700_160 + 1)
    response = await sandbox.client.post(
        f"{upload}/users/me/messages/send",
        params={"uploadType": "media"},
        content=huge,
        headers={**headers, "Content-Type": "message/rfc822"},
    )
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["error"]["message"]
    assert await _sent_log(sandbox) == []


def _batch_body(boundary: str, paths: list[str]) -> bytes:
    chunks = []
    for n, path in enumerate(paths, start=1):
        chunks.append(
            f"--{boundary}\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n"
            f"Content-ID: <batchbase+{n}>\n\nGET {path} HTTP/1.1\naccept: application/json\n\n"
        )
    chunks.append(f"--{boundary}--")
    return "\n".join(chunks).encode()


def _batch_parts(response_body: bytes, content_type: str) -> list[tuple[str, int, Any]]:
    envelope = message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + response_body, policy=policy.compat32
    )
    parts = []
    for part in envelope.get_payload():
        assert isinstance(part, Message)
        payload = part.get_payload()
        assert isinstance(payload, str)
        status_line, _, rest = payload.partition("\n")
        body = rest.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in rest else ""
        parts.append(
            (
                part["Content-ID"],
                int(status_line.split()[1]),
                json.loads(body) if body.strip() else None,
            )
        )
    return parts


@pytest.mark.asyncio
async def test_batch_answers_each_part_and_counts_quota(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    first = await seed(sandbox, "gmail", make_message(subject="a"))
    second = await seed(sandbox, "gmail", make_message(subject="b"))
    batch_url = sandbox.settings.gmail_batch_url.replace("http://127.0.0.1:8000", "")
    boundary = "===============7330845974216740156=="
    body = _batch_body(
        boundary,
        [
            f"/gmail/v1/users/me/messages/{first}?format=raw&alt=json",
            f"/gmail/v1/users/me/messages/{second}?format=metadata",
            "/gmail/v1/users/me/messages/ffffffffffffffff",
        ],
    )
    before = (await sandbox.client.get(f"{SANDBOX}/gmail/stats")).json()["mailboxes"][GMAIL_USER]
    response = await sandbox.client.post(
        batch_url,
        content=body,
        headers={**headers, "Content-Type": f'multipart/mixed; boundary="{boundary}"'},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/mixed; boundary=")
    parts = _batch_parts(response.content, response.headers["content-type"])
    assert [(cid, status) for cid, status, _ in parts] == [
        ("<response-batchbase+1>", 200),
        ("<response-batchbase+2>", 200),
        ("<response-batchbase+3>", 404),
    ]
    assert b64url_decode(parts[0][2]["raw"]).startswith(b"From: Alice Example")
    assert parts[1][2]["id"] == second
    assert parts[2][2]["error"]["errors"][0]["reason"] == "notFound"
    after = (await sandbox.client.get(f"{SANDBOX}/gmail/stats")).json()["mailboxes"][GMAIL_USER]
    assert after["quota_units"] - before["quota_units"] == 15
    assert after["calls"] - before["calls"] == 3

    too_many = _batch_body(boundary, [f"/gmail/v1/users/me/messages/{first}"] * 101)
    refused = await sandbox.client.post(
        batch_url,
        content=too_many,
        headers={**headers, "Content-Type": f'multipart/mixed; boundary="{boundary}"'},
    )
    assert refused.status_code == 400


@pytest.mark.asyncio
async def test_watch_pushes_a_pubsub_envelope_for_matching_changes(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    watch = await sandbox.client.post(
        f"{GMAIL_API}/watch",
        json={
            "topicName": sandbox.settings.gmail_pubsub_topic,
            "labelIds": ["INBOX"],
            "labelFilterBehavior": "INCLUDE",
        },
        headers=headers,
    )
    assert watch.status_code == 200
    expiration = int(watch.json()["expiration"])
    assert expiration == int(sandbox.clock() * 1000) + 7 * 86_400_000

    await seed(sandbox, "gmail", make_message())
    await sandbox.state.drain_pushes()
    assert len(sandbox.receiver.gmail) == 1
    query, envelope = sandbox.receiver.gmail[0]
    assert query == {"token": sandbox.settings.gmail_push_secret.get_secret_value()}
    message = envelope["message"]
    data = json.loads(base64.b64decode(message["data"]))
    profile = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()
    assert data == {"emailAddress": GMAIL_USER, "historyId": int(profile["historyId"])}
    assert message["messageId"] == message["message_id"]
    assert message["publishTime"] == message["publish_time"]
    assert message["attributes"] == {}
    assert envelope["subscription"].startswith("projects/ce-email-dev/subscriptions/")

    await sandbox.client.post(
        f"{GMAIL_API}/messages/send",
        json={"raw": base64.urlsafe_b64encode(make_message(to="z@partner.example")).decode()},
        headers=headers,
    )
    await sandbox.state.drain_pushes()
    assert len(sandbox.receiver.gmail) == 1  # SENT is filtered out by labelIds INBOX

    assert (await sandbox.client.post(f"{GMAIL_API}/stop", headers=headers)).status_code == 204
    await seed(sandbox, "gmail", make_message())
    await sandbox.state.drain_pushes()
    assert len(sandbox.receiver.gmail) == 1

    bad_topic = await sandbox.client.post(
        f"{GMAIL_API}/watch", json={"topicName": "gmail-push"}, headers=headers
    )
    assert bad_topic.status_code == 400


@pytest.mark.asyncio
async def test_deletion_pushes_too(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    message_id = await seed(sandbox, "gmail", make_message())
    await sandbox.client.post(
        f"{GMAIL_API}/watch", json={"topicName": "projects/p/topics/t"}, headers=headers
    )
    await sandbox.client.delete(f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages/{message_id}")
    await sandbox.state.drain_pushes()
    assert len(sandbox.receiver.gmail) == 1
    gone = await sandbox.client.get(f"{GMAIL_API}/messages/{message_id}", headers=headers)
    assert gone.status_code == 404


@pytest.mark.asyncio
async def test_push_failures_are_counted_and_ignored(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    await sandbox.client.post(
        f"{GMAIL_API}/watch", json={"topicName": "projects/p/topics/t"}, headers=headers
    )
    sandbox.state.config = replace(
        sandbox.state.require_config(), public_base_url="http://127.0.0.1:8000/nowhere"
    )
    response = await sandbox.client.post(
        f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages", content=make_message()
    )
    assert response.status_code == 201
    await sandbox.state.drain_pushes()
    stats = (await sandbox.client.get(f"{SANDBOX}/gmail/stats")).json()
    assert stats["pushes"] == {"sent": 0, "failed": 1}


DSN = (
    b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
    b"To: sandbox.user@example.com\r\nSubject: Delivery Status Notification (Failure)\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
    b"--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example\r\n\r\n"
    b"Final-Recipient: rfc822; gone@partner.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"--b1\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Message-ID: <sent-1@example.com>\r\nSubject: Hello\r\n\r\nbody\r\n"
    b"--b1--\r\n"
)


@pytest.mark.asyncio
async def test_bounce_parts_render_as_leaves(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "gmail"))
    message_id = await seed(sandbox, "gmail", DSN)
    payload = (
        await sandbox.client.get(f"{GMAIL_API}/messages/{message_id}", headers=headers)
    ).json()["payload"]
    text, status, original = payload["parts"]
    assert b64url_decode(text["body"]["data"]) == b"Delivery failed."
    assert status["mimeType"] == "message/delivery-status"
    assert "parts" not in status
    assert b"Status: 5.1.1" in b64url_decode(status["body"]["data"])
    assert original["mimeType"] == "message/rfc822"
    attachment = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages/{message_id}/attachments/{original['body']['attachmentId']}",
            headers=headers,
        )
    ).json()
    assert b64url_decode(attachment["data"]).startswith(b"Message-ID: <sent-1@example.com>\r\n")
    raw = (
        await sandbox.client.get(
            f"{GMAIL_API}/messages/{message_id}", params={"format": "raw"}, headers=headers
        )
    ).json()["raw"]
    assert b64url_decode(raw) == DSN
