"""The fake Microsoft Graph mail API over HTTP."""

from __future__ import annotations

import base64
import urllib.parse
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import httpx
import pytest

from app.sandbox_mount import sandbox_config
from sandbox import SandboxState, create_sandbox_app
from tests.fixtures.standalone_sandbox import (
    GRAPH_API,
    OUTLOOK_USER,
    SANDBOX,
    Sandbox,
    bearer,
    connect,
    make_message,
    seed,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def path_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://127.0.0.1:8000"
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def get(sandbox: Sandbox, url: str, headers: dict[str, str], **kwargs: Any) -> Any:
    response = await sandbox.client.get(url, headers=headers, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.asyncio
async def test_message_json_is_rendered_from_the_source(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    raw = make_message(
        to=f"Sandbox User <{OUTLOOK_USER}>",
        cc="Carol <carol@partner.example>",
        html="<p>Hello,<br>the report is <b>attached</b>.</p>",
        attachments=[("chart.png", "image/png", PNG)],
        message_id="<root-1@partner.example>",
    )
    message_id = await seed(sandbox, "outlook", raw, received_at="2025-02-28T10:00:00Z")
    message = await get(sandbox, f"{GRAPH_API}/me/messages/{message_id}", headers)
    assert message["id"] == message_id
    assert message["subject"] == "Quarterly report"
    assert message["internetMessageId"] == "<root-1@partner.example>"
    assert message["from"] == {
        "emailAddress": {"name": "Alice Example", "address": "alice@partner.example"}
    }
    assert message["sender"] == message["from"]
    assert message["toRecipients"] == [
        {"emailAddress": {"name": "Sandbox User", "address": OUTLOOK_USER}}
    ]
    assert message["ccRecipients"] == [
        {"emailAddress": {"name": "Carol", "address": "carol@partner.example"}}
    ]
    assert message["bccRecipients"] == []
    assert message["receivedDateTime"] == "2025-02-28T10:00:00Z"
    assert message["sentDateTime"] == "2025-02-28T09:30:00Z"
    assert message["body"]["contentType"] == "html"
    assert "<b>attached</b>" in message["body"]["content"]
    assert message["bodyPreview"] == "Hello, the report is attached."
    assert message["hasAttachments"] is True
    assert message["isRead"] is False
    assert message["isDraft"] is False
    assert message["@odata.etag"].startswith('W/"')
    assert "internetMessageHeaders" not in message

    as_text = await get(
        sandbox,
        f"{GRAPH_API}/me/messages/{message_id}",
        {**headers, "Prefer": 'outlook.body-content-type="text"'},
        params={"$select": "body,internetMessageHeaders"},
    )
    assert as_text["body"] == {
        "contentType": "text",
        "content": "Hello,\r\nthe report is attached.\r\n",
    }
    assert set(as_text) == {"@odata.context", "@odata.etag", "id", "body", "internetMessageHeaders"}
    header_names = [h["name"] for h in as_text["internetMessageHeaders"]]
    assert header_names[:3] == ["From", "To", "Cc"]

    expanded = await get(
        sandbox, f"{GRAPH_API}/me/messages/{message_id}", headers, params={"$expand": "attachments"}
    )
    (attachment,) = expanded["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert attachment["name"] == "chart.png"
    assert attachment["contentType"] == "image/png"
    assert base64.b64decode(attachment["contentBytes"]) == PNG

    listed = await get(sandbox, f"{GRAPH_API}/me/messages/{message_id}/attachments", headers)
    assert [a["id"] for a in listed["value"]] == [attachment["id"]]
    single = await get(
        sandbox, f"{GRAPH_API}/me/messages/{message_id}/attachments/{attachment['id']}", headers
    )
    assert single["size"] == len(PNG)
    value = await sandbox.client.get(
        f"{GRAPH_API}/me/messages/{message_id}/attachments/{attachment['id']}/$value",
        headers=headers,
    )
    assert value.content == PNG
    mime = await sandbox.client.get(f"{GRAPH_API}/me/messages/{message_id}/$value", headers=headers)
    assert mime.content == raw

    missing = await sandbox.client.get(f"{GRAPH_API}/me/messages/AAMkADnope=", headers=headers)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "ErrorItemNotFound"
    assert {"request-id", "date"} <= error["innerError"].keys()

    bad_select = await sandbox.client.get(
        f"{GRAPH_API}/me/messages/{message_id}", params={"$select": "subjekt"}, headers=headers
    )
    assert bad_select.status_code == 400


@pytest.mark.asyncio
async def test_replies_share_the_conversation(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    first = await seed(sandbox, "outlook", make_message(message_id="<conv@partner.example>"))
    reply = await seed(
        sandbox,
        "outlook",
        make_message(subject="Re: Quarterly report", in_reply_to="<conv@partner.example>"),
    )
    other = await seed(sandbox, "outlook", make_message(subject="unrelated"))
    conversations = {
        m: (
            await get(
                sandbox,
                f"{GRAPH_API}/me/messages/{m}",
                headers,
                params={"$select": "conversationId"},
            )
        )["conversationId"]
        for m in (first, reply, other)
    }
    assert conversations[first] == conversations[reply] != conversations[other]


@pytest.mark.asyncio
async def test_list_pages_with_skip_top_select_and_filter(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    ids = [
        await seed(
            sandbox,
            "outlook",
            make_message(subject=f"day {d}"),
            received_at=f"2025-01-0{d}T08:00:00Z",
        )
        for d in range(1, 6)
    ]
    await seed(sandbox, "outlook", make_message(subject="sent one"), folder="sent")

    seen: list[str] = []
    url: str | None = (
        f"{GRAPH_API}/me/mailFolders/inbox/messages?$top=2&$select=subject,receivedDateTime"
    )
    while url:
        page = await get(sandbox, url, headers)
        assert all(
            set(m) == {"@odata.etag", "id", "subject", "receivedDateTime"} for m in page["value"]
        )
        seen += [m["id"] for m in page["value"]]
        next_link = page.get("@odata.nextLink")
        url = path_of(next_link) if next_link else None
    assert seen == list(reversed(ids))

    filtered = await get(
        sandbox,
        f"{GRAPH_API}/me/mailFolders/inbox/messages",
        headers,
        params={"$filter": "receivedDateTime ge 2025-01-04T08:00:00Z"},
    )
    assert [m["id"] for m in filtered["value"]] == [ids[4], ids[3]]
    everything = await get(sandbox, f"{GRAPH_API}/me/messages", headers, params={"$top": 50})
    assert len(everything["value"]) == 6
    sent = await get(sandbox, f"{GRAPH_API}/me/mailFolders/sentitems/messages", headers)
    assert [m["subject"] for m in sent["value"]] == ["sent one"]
    folder = await get(sandbox, f"{GRAPH_API}/me/mailFolders/inbox", headers)
    assert folder["totalItemCount"] == 5
    assert folder["displayName"] == "Inbox"
    by_id = await get(
        sandbox, f"{GRAPH_API}/me/mailFolders/{folder['id']}/messages", headers, params={"$top": 1}
    )
    assert [m["id"] for m in by_id["value"]] == [ids[4]]


async def _delta_round(
    sandbox: Sandbox, url: str, headers: dict[str, str]
) -> tuple[list[dict[str, Any]], str, int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = await get(sandbox, url, headers)
        pages += 1
        items += page["value"]
        if "@odata.deltaLink" in page:
            assert "@odata.nextLink" not in page
            return items, page["@odata.deltaLink"], pages
        url = path_of(page["@odata.nextLink"])
        assert "$skiptoken=" in url


@pytest.mark.asyncio
async def test_delta_rounds_report_additions_and_removals(sandbox: Sandbox) -> None:
    headers = {**bearer(await connect(sandbox, "outlook")), "Prefer": "odata.maxpagesize=2"}
    ids = [await seed(sandbox, "outlook", make_message(subject=f"m{n}")) for n in range(5)]
    await seed(sandbox, "outlook", make_message(subject="elsewhere"), folder="sent")

    items, delta_link, pages = await _delta_round(
        sandbox, f"{GRAPH_API}/me/mailFolders/inbox/messages/delta?$select=subject,isRead", headers
    )
    assert pages == 3
    assert sorted(i["id"] for i in items) == sorted(ids)
    assert all(set(i) == {"@odata.type", "@odata.etag", "id", "subject", "isRead"} for i in items)
    assert "$deltatoken=" in delta_link
    assert delta_link.startswith(
        f"http://127.0.0.1:8000{GRAPH_API}/me/mailFolders/inbox/messages/delta?"
    )

    quiet, delta_link, _ = await _delta_round(sandbox, path_of(delta_link), headers)
    assert quiet == []

    new = await seed(sandbox, "outlook", make_message(subject="new"))
    await sandbox.client.delete(f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}/messages/{ids[0]}")
    changes, delta_link, _ = await _delta_round(sandbox, path_of(delta_link), headers)
    assert changes[0]["id"] == new
    assert changes[0]["subject"] == "new"
    assert set(changes[0]) == {"@odata.type", "@odata.etag", "id", "subject", "isRead"}
    assert changes[1] == {
        "@odata.type": "#microsoft.graph.message",
        "id": ids[0],
        "@removed": {"reason": "deleted"},
    }


@pytest.mark.asyncio
async def test_parenthesised_delta_and_received_filter(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    await seed(sandbox, "outlook", make_message(subject="old"), received_at="2024-12-01T00:00:00Z")
    recent = await seed(
        sandbox, "outlook", make_message(subject="recent"), received_at="2025-02-01T00:00:00Z"
    )
    url = (
        f"{GRAPH_API}/me/mailFolders('inbox')/messages/delta()"
        "?$filter=receivedDateTime+ge+2025-01-01T00:00:00Z&$select=subject"
    )
    items, delta_link, _ = await _delta_round(sandbox, url, headers)
    assert [i["id"] for i in items] == [recent]
    later = await seed(sandbox, "outlook", make_message(subject="later"))
    changes, _, _ = await _delta_round(sandbox, path_of(delta_link), headers)
    assert [i["id"] for i in changes] == [later]


@pytest.mark.asyncio
async def test_expired_or_unknown_delta_token_is_410_with_location(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    await seed(sandbox, "outlook", make_message())
    _, delta_link, _ = await _delta_round(
        sandbox, f"{GRAPH_API}/me/mailFolders/inbox/messages/delta", headers
    )

    unknown = await sandbox.client.get(
        f"{GRAPH_API}/me/mailFolders/inbox/messages/delta?$deltatoken=garbage", headers=headers
    )
    assert unknown.status_code == 410
    assert unknown.headers["location"].endswith("/me/mailFolders/inbox/messages/delta?$deltatoken=")
    assert unknown.json()["error"]["code"] == "syncStateNotFound"

    await sandbox.client.post(
        f"{SANDBOX}/outlook/faults", json={"kind": "expire_cursor", "count": 1}
    )
    expired = await sandbox.client.get(path_of(delta_link), headers=headers)
    assert expired.status_code == 410
    still_expired = await sandbox.client.get(path_of(delta_link), headers=headers)
    assert still_expired.status_code == 410
    restart = await sandbox.client.get(path_of(expired.headers["location"]), headers=headers)
    assert restart.status_code == 200
    assert len(restart.json()["value"]) == 1


@pytest.mark.asyncio
async def test_send_mail_json_and_mime_reach_the_sent_log(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    message = {
        "subject": "Your appointment",
        "body": {"contentType": "html", "content": "<p>See you <b>Tuesday</b></p>"},
        "toRecipients": [{"emailAddress": {"name": "Pat", "address": "pat@patient.example"}}],
        "bccRecipients": [{"emailAddress": {"address": "audit@clinic.example"}}],
        "attachments": [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "map.png",
                "contentType": "image/png",
                "contentBytes": base64.b64encode(PNG).decode(),
            }
        ],
        "internetMessageHeaders": [{"name": "X-CE-Message", "value": "abc123"}],
    }
    response = await sandbox.client.post(
        f"{GRAPH_API}/me/sendMail",
        json={"message": message, "saveToSentItems": True},
        headers=headers,
    )
    assert response.status_code == 202
    assert response.content == b""

    mime_raw = make_message(sender=OUTLOOK_USER, to="quinn@partner.example", subject="raw mime")
    as_mime = await sandbox.client.post(
        f"{GRAPH_API}/me/sendMail",
        content=base64.b64encode(mime_raw),
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert as_mime.status_code == 202
    broken = await sandbox.client.post(
        f"{GRAPH_API}/me/sendMail",
        content=b"not base64 !!",
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "ErrorMimeContentInvalidBase64String"
    bad_header = await sandbox.client.post(
        f"{GRAPH_API}/me/sendMail",
        json={
            "message": {**message, "internetMessageHeaders": [{"name": "Subject", "value": "x"}]}
        },
        headers=headers,
    )
    assert bad_header.status_code == 400

    log = (await sandbox.client.get(f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}/sent")).json()[
        "items"
    ]
    assert len(log) == 2
    sent = message_from_bytes(log[0]["raw"].encode(), policy=policy.default)
    assert sent["Subject"] == "Your appointment"
    assert sent["From"] == f"Sandbox User <{OUTLOOK_USER}>"
    assert sent["To"] == "Pat <pat@patient.example>"
    assert sent["Bcc"] == "audit@clinic.example"
    assert sent["X-CE-Message"] == "abc123"
    assert sent["Message-ID"].endswith(".prod.outlook.com>")
    html_body = sent.get_body(preferencelist=("html",))
    assert html_body is not None
    assert "<b>Tuesday</b>" in html_body.get_content()
    (png,) = list(sent.iter_attachments())
    assert png.get_content() == PNG
    assert log[1]["raw"].encode().endswith(mime_raw)

    sent_items = await get(sandbox, f"{GRAPH_API}/me/mailFolders/sentitems/messages", headers)
    assert {m["subject"] for m in sent_items["value"]} == {"Your appointment", "raw mime"}


@pytest.mark.asyncio
async def test_property_names_in_any_case_as_microsoft_sdks_send_them(sandbox: Sandbox) -> None:
    """Graph reads JSON property names case-insensitively; Microsoft's SDKs write action
    parameters in PascalCase (`Message`, `SaveToSentItems`, `Comment`)."""
    headers = bearer(await connect(sandbox, "outlook"))
    sdk_send = await sandbox.client.post(
        f"{GRAPH_API}/me/sendMail",
        json={
            "Message": {
                "Subject": "From the SDK",
                "Body": {"ContentType": "html", "Content": "<p>Hello</p>"},
                "ToRecipients": [{"EmailAddress": {"Name": "Pat", "Address": "pat@x.example"}}],
                "InternetMessageHeaders": [{"Name": "X-CE-Message", "Value": "sdk1"}],
            },
            "SaveToSentItems": False,
        },
        headers=headers,
    )
    assert sdk_send.status_code == 202, sdk_send.text
    (item,) = (await sandbox.client.get(f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}/sent")).json()[
        "items"
    ]
    sent = message_from_bytes(item["raw"].encode(), policy=policy.default)
    assert sent["Subject"] == "From the SDK"
    assert sent["To"] == "Pat <pat@x.example>"
    assert sent["X-CE-Message"] == "sdk1"
    html_body = sent.get_body(preferencelist=("html",))
    assert html_body is not None
    assert "<p>Hello</p>" in html_body.get_content()
    sent_items = await get(sandbox, f"{GRAPH_API}/me/mailFolders/sentitems/messages", headers)
    assert sent_items["value"] == []  # SaveToSentItems: false was read

    original = await seed(sandbox, "outlook", make_message())
    reply = await sandbox.client.post(
        f"{GRAPH_API}/me/messages/{original}/createReply",
        json={"Comment": "Thanks, received."},
        headers=headers,
    )
    assert reply.status_code == 201, reply.text
    assert "Thanks, received." in reply.json()["body"]["content"]
    read = await sandbox.client.patch(
        f"{GRAPH_API}/me/messages/{original}", json={"IsRead": True}, headers=headers
    )
    assert read.status_code == 200, read.text
    assert read.json()["isRead"] is True
    upload = await sandbox.client.post(
        f"{GRAPH_API}/me/messages/{reply.json()['id']}/attachments/createUploadSession",
        json={"attachmentItem": {"attachmentType": "file", "name": "a.bin", "size": 10}},
        headers=headers,
    )
    assert upload.status_code == 201, upload.text


@pytest.mark.asyncio
async def test_draft_with_attachment_upload_session_and_send(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    draft = (
        await sandbox.client.post(
            f"{GRAPH_API}/me/messages",
            json={
                "subject": "Lab results",
                "body": {"contentType": "text", "content": "Attached."},
                "toRecipients": [{"emailAddress": {"address": "lab@partner.example"}}],
            },
            headers={**headers, "Prefer": 'IdType="ImmutableId"'},
        )
    ).json()
    assert draft["isDraft"] is True
    draft_id = draft["id"]
    drafts_folder = (await get(sandbox, f"{GRAPH_API}/me/mailFolders/drafts", headers))["id"]
    assert draft["parentFolderId"] == drafts_folder

    small = await sandbox.client.post(
        f"{GRAPH_API}/me/messages/{draft_id}/attachments",
        json={
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "small.txt",
            "contentType": "text/plain",
            "contentBytes": base64.b64encode(b"small file").decode(),
        },
        headers=headers,
    )
    assert small.status_code == 201
    assert small.json()["name"] == "small.txt"

    big = bytes(range(256)) * 40  # 10,240 bytes in 3 chunks
    session = await sandbox.client.post(
        f"{GRAPH_API}/me/messages/{draft_id}/attachments/createUploadSession",
        json={"AttachmentItem": {"attachmentType": "file", "name": "scan.bin", "size": len(big)}},
        headers=headers,
    )
    assert session.status_code == 201
    assert session.json()["nextExpectedRanges"] == ["0-"]
    upload_url = path_of(session.json()["uploadUrl"])

    with_auth = await sandbox.client.put(
        upload_url,
        content=big[:4096],
        headers={**headers, "Content-Range": f"bytes 0-4095/{len(big)}"},
    )
    assert with_auth.status_code == 401
    statuses = []
    for start in range(0, len(big), 4096):
        chunk = big[start : start + 4096]
        answer = await sandbox.client.put(
            upload_url,
            content=chunk,
            headers={"Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(big)}"},
        )
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            assert answer.json()["nextExpectedRanges"] == [f"{start + len(chunk)}-"]
    assert statuses == [200, 200, 201]
    assert "/attachments/" in answer.headers["location"]

    attachments = await get(sandbox, f"{GRAPH_API}/me/messages/{draft_id}/attachments", headers)
    assert [a["name"] for a in attachments["value"]] == ["small.txt", "scan.bin"]

    sent = await sandbox.client.post(f"{GRAPH_API}/me/messages/{draft_id}/send", headers=headers)
    assert sent.status_code == 202
    after = await get(sandbox, f"{GRAPH_API}/me/messages/{draft_id}", headers)
    sent_folder = (await get(sandbox, f"{GRAPH_API}/me/mailFolders/sentitems", headers))["id"]
    assert after["parentFolderId"] == sent_folder
    assert after["isDraft"] is False
    again = await sandbox.client.post(f"{GRAPH_API}/me/messages/{draft_id}/send", headers=headers)
    assert again.status_code == 400

    (item,) = (await sandbox.client.get(f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}/sent")).json()[
        "items"
    ]
    assert item["id"] == draft_id
    parsed = message_from_bytes(item["raw"].encode(), policy=policy.default)
    assert parsed["To"] == "lab@partner.example"
    files = {a.get_filename(): a.get_content() for a in parsed.iter_attachments()}
    assert files == {"small.txt": "small file", "scan.bin": big}


@pytest.mark.asyncio
async def test_create_reply_threads_with_the_original(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    original = await seed(sandbox, "outlook", make_message(message_id="<orig@partner.example>"))
    reply = await sandbox.client.post(
        f"{GRAPH_API}/me/messages/{original}/createReply",
        json={"comment": "Thanks!"},
        headers=headers,
    )
    assert reply.status_code == 201
    draft = reply.json()
    assert draft["subject"] == "RE: Quarterly report"
    assert draft["toRecipients"][0]["emailAddress"]["address"] == "alice@partner.example"
    source = await get(sandbox, f"{GRAPH_API}/me/messages/{original}", headers)
    assert draft["conversationId"] == source["conversationId"]
    await sandbox.client.post(f"{GRAPH_API}/me/messages/{draft['id']}/send", headers=headers)
    (item,) = (await sandbox.client.get(f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}/sent")).json()[
        "items"
    ]
    parsed = message_from_bytes(item["raw"].encode(), policy=policy.default)
    assert parsed["In-Reply-To"] == "<orig@partner.example>"


@pytest.mark.asyncio
async def test_json_batch_runs_each_request_with_dependencies(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    message_id = await seed(sandbox, "outlook", make_message())
    body = {
        "requests": [
            {"id": "1", "method": "GET", "url": f"/me/messages/{message_id}?$select=subject"},
            {"id": "2", "method": "GET", "url": "/me/messages/AAMkADmissing="},
            {"id": "3", "method": "GET", "url": "/me", "dependsOn": ["2"]},
            {"id": "4", "method": "GET", "url": f"/me/messages/{message_id}/$value"},
            {
                "id": "5",
                "method": "PATCH",
                "url": f"/me/messages/{message_id}",
                "headers": {"Content-Type": "application/json"},
                "body": {"isRead": True},
            },
        ]
    }
    response = await sandbox.client.post(f"{GRAPH_API}/$batch", json=body, headers=headers)
    assert response.status_code == 200
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert answers["1"]["status"] == 200
    assert answers["1"]["body"]["subject"] == "Quarterly report"
    assert answers["2"]["status"] == 404
    assert answers["2"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert answers["3"]["status"] == 424
    assert base64.b64decode(answers["4"]["body"]).startswith(b"From: Alice Example")
    assert answers["5"]["body"]["isRead"] is True

    too_many = {"requests": [{"id": str(n), "method": "GET", "url": "/me"} for n in range(21)]}
    refused = await sandbox.client.post(f"{GRAPH_API}/$batch", json=too_many, headers=headers)
    assert refused.status_code == 400
    duplicate = {"requests": [{"id": "1", "method": "GET", "url": "/me"}] * 2}
    assert (
        await sandbox.client.post(f"{GRAPH_API}/$batch", json=duplicate, headers=headers)
    ).status_code == 400


@pytest.mark.asyncio
async def test_subscriptions_validate_notify_renew_and_delete(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    url = f"{sandbox.settings.public_base_url}/v1/webhooks/graph"
    expires = (datetime.fromtimestamp(sandbox.clock(), UTC) + timedelta(days=2)).isoformat()
    created = await sandbox.client.post(
        f"{GRAPH_API}/subscriptions",
        json={
            "changeType": "created,deleted",
            "notificationUrl": url,
            "resource": "/me/mailfolders('inbox')/messages",
            "expirationDateTime": expires,
            "clientState": "client-state-secret",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    subscription = created.json()
    (token,) = sandbox.receiver.validations
    assert token.startswith("Validation: Testing client application reachability")

    message_id = await seed(sandbox, "outlook", make_message())
    await seed(sandbox, "outlook", make_message(), folder="sent")  # another folder: no notification
    await sandbox.client.delete(f"{SANDBOX}/outlook/mailboxes/{OUTLOOK_USER}/messages/{message_id}")
    await sandbox.state.drain_pushes()
    notifications = [n for post in sandbox.receiver.graph for n in post["value"]]
    assert [(n["changeType"], n["resourceData"]["id"]) for n in notifications] == [
        ("created", message_id),
        ("deleted", message_id),
    ]
    assert all(n["clientState"] == "client-state-secret" for n in notifications)
    assert all(n["subscriptionId"] == subscription["id"] for n in notifications)

    renewed = await sandbox.client.patch(
        f"{GRAPH_API}/subscriptions/{subscription['id']}",
        json={
            "expirationDateTime": (
                datetime.fromtimestamp(sandbox.clock(), UTC) + timedelta(days=6)
            ).isoformat()
        },
        headers=headers,
    )
    assert renewed.status_code == 200
    too_long = await sandbox.client.patch(
        f"{GRAPH_API}/subscriptions/{subscription['id']}",
        json={
            "expirationDateTime": (
                datetime.fromtimestamp(sandbox.clock(), UTC) + timedelta(days=8)
            ).isoformat()
        },
        headers=headers,
    )
    assert too_long.status_code == 400
    assert "10080 minutes" in too_long.json()["error"]["message"]

    deleted = await sandbox.client.delete(
        f"{GRAPH_API}/subscriptions/{subscription['id']}", headers=headers
    )
    assert deleted.status_code == 204
    await seed(sandbox, "outlook", make_message())
    await sandbox.state.drain_pushes()
    assert len([n for post in sandbox.receiver.graph for n in post["value"]]) == 2


@pytest.mark.asyncio
async def test_subscription_creation_fails_without_a_valid_handshake(sandbox: Sandbox) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    expires = (datetime.fromtimestamp(sandbox.clock(), UTC) + timedelta(hours=1)).isoformat()
    response = await sandbox.client.post(
        f"{GRAPH_API}/subscriptions",
        json={
            "changeType": "created",
            "notificationUrl": f"{sandbox.settings.public_base_url}/v1/webhooks/graph-broken",
            "resource": "me/mailFolders('inbox')/messages",
            "expirationDateTime": expires,
        },
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ValidationError"
    assert sandbox.state.outlook.subscriptions == {}


@pytest.mark.asyncio
async def test_users_path_and_unmounted_links(sandbox: Sandbox, settings: Any) -> None:
    headers = bearer(await connect(sandbox, "outlook"))
    own = await sandbox.client.get(f"{GRAPH_API}/users/{OUTLOOK_USER}/messages", headers=headers)
    assert own.status_code == 200
    other = await sandbox.client.get(
        f"{GRAPH_API}/users/someone@else.example/messages", headers=headers
    )
    assert other.status_code == 403

    # The bare sandbox app (no /_sandbox mount) builds links on its own base.
    state = SandboxState()
    bare = create_sandbox_app(sandbox_config(settings), state)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bare), base_url="http://sandbox.test"
    ) as client:
        verifier_tokens = await _bare_connect(client, settings)
        await client.post(f"/outlook/mailboxes/{OUTLOOK_USER}/messages", content=make_message())
        page = (
            await client.get(
                "/outlook/v1.0/me/mailFolders/inbox/messages/delta", headers=bearer(verifier_tokens)
            )
        ).json()
    assert page["@odata.deltaLink"].startswith(
        "http://sandbox.test/outlook/v1.0/me/mailFolders/inbox/"
    )


async def _bare_connect(client: httpx.AsyncClient, settings: Any) -> dict[str, Any]:
    from tests.fixtures.standalone_sandbox import (
        authorize_params,
        client_form,
        pkce_pair,
        redirect_query,
    )

    verifier, challenge = pkce_pair()
    params = authorize_params(settings, "outlook", challenge)
    code = redirect_query(await client.get("/outlook/oauth/authorize", params=params))["code"]
    form = {
        **client_form(settings, "outlook"),
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": params["redirect_uri"],
        "code_verifier": verifier,
        "scope": params["scope"],
    }
    tokens: dict[str, Any] = (await client.post("/outlook/oauth/token", data=form)).json()
    return tokens
