"""The Graph driver against MockTransport: delta paging, cursor expiry, $value fetches,
send via MIME draft (+ upload session), subscriptions."""

from __future__ import annotations

import asyncio
import base64
import email
import json
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.message import EmailMessage

import httpx
import pytest

from app.providers.base import MessageRef, OutgoingMessage, PushChannel
from app.providers.errors import (
    AuthRevoked,
    CursorExpired,
    MessageTooLarge,
    ProviderRequestError,
)
from app.providers.graph import GraphProvider
from app.providers.graph.driver import UPLOAD_CHUNK_BYTES
from app.providers.http import message_fetches
from tests.fixtures.providers import graph_error, json_response, mock_client

BASE = "https://graph.microsoft.com/v1.0"


@pytest.fixture
def provider_for(settings, tokens, policy):
    def make(handler):
        client, recorder = mock_client(handler)
        return GraphProvider(settings, tokens, client, policy), recorder

    return make


def mime_message(message_id: str = "out@example.com", attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "me@contoso.com"
    msg["To"] = "dana@contoso.com"
    msg["Subject"] = "Report"
    msg["Message-ID"] = f"<{message_id}>"
    msg["In-Reply-To"] = "<earlier@contoso.com>"
    msg["X-CE-Email-Id"] = "e-1"
    msg.set_content("see attached")
    msg.add_alternative("<p>see attached</p>", subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="report.pdf")
    return msg.as_bytes()


@pytest.mark.asyncio
async def test_profile(provider_for) -> None:
    provider, recorder = provider_for(
        lambda r: json_response(
            200, {"id": "u1", "displayName": "Dana", "mail": None, "userPrincipalName": "d@c.com"}
        )
    )
    profile = await provider.get_profile()
    assert (profile.email_address, profile.display_name, profile.cursor_hint) == (
        "d@c.com",
        "Dana",
        None,
    )
    assert "$select=" in str(recorder.requests[0].url)


@pytest.mark.asyncio
async def test_list_messages_delta_pages_to_delta_link(provider_for) -> None:
    next_1 = f"{BASE}/me/mailFolders('AQMk')/messages/delta?$skiptoken=one"
    next_2 = f"{BASE}/me/mailFolders('AQMk')/messages/delta?$skiptoken=two"
    delta = f"{BASE}/me/mailFolders('AQMk')/messages/delta?$deltatoken=final"

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if "skiptoken=one" in url:
            return json_response(200, {"value": [], "@odata.nextLink": next_2})  # empty page
        if "skiptoken=two" in url:
            return json_response(
                200,
                {
                    "value": [
                        {"id": "B", "conversationId": "c2"},
                        {"id": "Z", "@removed": {"reason": "deleted"}},
                    ],
                    "@odata.deltaLink": delta,
                },
            )
        return json_response(
            200,
            {
                "value": [
                    {"id": "A", "conversationId": "c1", "receivedDateTime": "2024-02-01T10:00:00Z"},
                    {"id": "A", "conversationId": "c1", "receivedDateTime": "2024-02-01T10:00:00Z"},
                ],
                "@odata.nextLink": next_1,
            },
        )

    provider, recorder = provider_for(handler)
    since = datetime(2024, 1, 1, tzinfo=UTC)
    page = await provider.list_messages("inbox", since)
    assert [r.id for r in page.added] == ["A"]
    assert page.added[0].thread_id == "c1"
    assert page.added[0].received_at == datetime(2024, 2, 1, 10, tzinfo=UTC)
    assert (page.next_page_token, page.new_cursor) == (next_1, None)
    page = await provider.list_messages("inbox", since, page.next_page_token)
    assert page.added == []
    assert page.next_page_token == next_2
    page = await provider.list_messages("inbox", since, page.next_page_token)
    assert [r.id for r in page.added] == ["B"]
    assert page.deleted == ["Z"]
    assert (page.next_page_token, page.new_cursor) == (None, delta)

    first = recorder.requests[0]
    assert first.url.path == "/v1.0/me/mailFolders/inbox/messages/delta"
    raw_query = first.url.query.decode()
    assert "$select=id" in raw_query
    assert "$filter=receivedDateTime%20ge%202024-01-01T00%3A00%3A00Z" in raw_query
    prefer = first.headers["Prefer"]
    assert "odata.maxpagesize=" in prefer
    assert 'IdType="ImmutableId"' in prefer
    assert all('IdType="ImmutableId"' in r.headers["Prefer"] for r in recorder.requests)


@pytest.mark.asyncio
async def test_sent_folder_uses_sentitems(provider_for) -> None:
    provider, recorder = provider_for(
        lambda r: json_response(200, {"value": [], "@odata.deltaLink": f"{BASE}/d?$deltatoken=x"})
    )
    page = await provider.list_messages("sent", datetime(2024, 1, 1, tzinfo=UTC))
    assert page.new_cursor == f"{BASE}/d?$deltatoken=x"
    assert recorder.requests[0].url.path == "/v1.0/me/mailFolders/sentitems/messages/delta"


@pytest.mark.asyncio
async def test_list_changes_follows_the_delta_link(provider_for) -> None:
    cursor = f"{BASE}/me/mailFolders('AQMk')/messages/delta?$deltatoken=abc"
    new = f"{BASE}/me/mailFolders('AQMk')/messages/delta?$deltatoken=def"
    provider, recorder = provider_for(
        lambda r: json_response(200, {"value": [{"id": "N"}], "@odata.deltaLink": new})
    )
    page = await provider.list_changes(cursor, folder="sent")
    assert str(recorder.requests[0].url) == cursor
    assert [(r.id, r.folder) for r in page.added] == [("N", "sent")]
    assert page.new_cursor == new


@pytest.mark.parametrize(
    "response",
    [
        graph_error(410, "syncStateNotFound"),
        graph_error(400, "SyncStateNotFound"),
        graph_error(404, "resyncRequired"),
        graph_error(410, "Gone"),
    ],
)
@pytest.mark.asyncio
async def test_expired_delta_is_cursor_expired(provider_for, response) -> None:
    provider, recorder = provider_for(lambda r: response)
    with pytest.raises(CursorExpired):
        await provider.list_changes(f"{BASE}/me/mailFolders/inbox/messages/delta?$deltatoken=old")
    assert len(recorder.requests) == 1


@pytest.mark.asyncio
async def test_links_to_other_hosts_are_refused(provider_for) -> None:
    provider, recorder = provider_for(lambda r: json_response(200, {}))
    with pytest.raises(ProviderRequestError):
        await provider.list_changes("https://evil.example/steal?$deltatoken=x")
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_get_messages_value_fetch_concurrency_and_404(provider_for) -> None:
    in_flight = 0
    peak = 0
    bodies = {f"m{n}": mime_message(f"m{n}@x") for n in range(10)}

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        message_id = request.url.path.split("/messages/")[1].split("/")[0]
        assert request.url.path.endswith("/$value")
        if message_id == "gone":
            return graph_error(404, "ErrorItemNotFound")
        return httpx.Response(
            200, content=bodies[message_id], headers={"Content-Type": "message/rfc822"}
        )

    provider, recorder = provider_for(handler)
    received = datetime(2024, 3, 1, 8, tzinfo=UTC)
    ids: list[str | MessageRef] = [f"m{n}" for n in range(10)]
    ids[0] = MessageRef("m0", "conv0", "sent", received)
    ids.insert(3, "gone")
    result = await provider.get_messages(ids)
    assert peak == 4
    assert len(recorder.requests) == 11
    assert message_fetches("outlook") == 11
    assert result[3] is None
    first = result[0]
    assert first is not None
    assert (first.id, first.thread_id, first.folder, first.received_at) == (
        "m0",
        "conv0",
        "sent",
        received,
    )
    assert first.internet_message_id == "<m0@x>"
    assert first.raw == bodies["m0"]
    assert first.size == len(bodies["m0"])
    other = result[1]
    assert other is not None
    assert other.folder == "inbox"
    assert other.thread_id is None


@pytest.mark.asyncio
async def test_send_creates_a_json_draft_from_the_mime_then_sends(provider_for) -> None:
    mime = mime_message(attachment=b"%PDF small")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/me/messages":
            return json_response(
                201,
                {"id": "DRAFT1", "conversationId": "conv", "internetMessageId": "<graph@x>"},
            )
        return httpx.Response(202)

    provider, recorder = provider_for(handler)
    sent = await provider.send(OutgoingMessage(mime=mime))
    assert (sent.provider_message_id, sent.thread_id, sent.internet_message_id) == (
        "DRAFT1",
        "conv",
        "<graph@x>",
    )
    create, send = recorder.requests
    assert 'IdType="ImmutableId"' in create.headers["Prefer"]
    draft = json.loads(create.content)
    assert draft["subject"] == "Report"
    assert draft["body"] == {"contentType": "html", "content": "<p>see attached</p>\n"}
    assert draft["toRecipients"] == [{"emailAddress": {"address": "dana@contoso.com"}}]
    assert draft["internetMessageHeaders"] == [{"name": "X-CE-Email-Id", "value": "e-1"}]
    [attachment] = draft["attachments"]
    assert attachment["name"] == "report.pdf"
    assert base64.b64decode(attachment["contentBytes"]) == b"%PDF small"
    assert attachment["isInline"] is False
    assert send.method == "POST"
    assert send.url.path == "/v1.0/me/messages/DRAFT1/send"


@pytest.mark.asyncio
async def test_reply_uses_create_reply_on_the_original(provider_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/createReply"):
            return json_response(201, {"id": "R1", "conversationId": "conv-orig"})
        return httpx.Response(202)

    provider, recorder = provider_for(handler)
    sent = await provider.send(OutgoingMessage(mime=mime_message(), reply_to_provider_id="ORIG"))
    assert (sent.provider_message_id, sent.thread_id) == ("R1", "conv-orig")
    create, send = recorder.requests
    assert create.url.path == "/v1.0/me/messages/ORIG/createReply"
    assert json.loads(create.content)["message"]["subject"] == "Report"
    assert send.url.path == "/v1.0/me/messages/R1/send"


@pytest.mark.asyncio
async def test_reply_to_a_deleted_original_is_sent_unthreaded(provider_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/createReply"):
            return graph_error(404, "ErrorItemNotFound")
        if request.url.path == "/v1.0/me/messages":
            return json_response(201, {"id": "D9"})
        return httpx.Response(202)

    provider, recorder = provider_for(handler)
    sent = await provider.send(OutgoingMessage(mime=mime_message(), reply_to_provider_id="GONE"))
    assert sent.provider_message_id == "D9"
    assert [r.url.path for r in recorder.requests] == [
        "/v1.0/me/messages/GONE/createReply",
        "/v1.0/me/messages",
        "/v1.0/me/messages/D9/send",
    ]


@pytest.mark.asyncio
async def test_send_large_attachment_goes_through_upload_session(provider_for) -> None:
    attachment = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB
    mime = mime_message(attachment=attachment)
    upload_url = "https://outlook.office.com/api/v2.0/Users('x')/UploadSession?authtoken=abc"
    puts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "PUT":
            puts.append(request)
            return json_response(200, {"nextExpectedRanges": ["..."]})
        if path == "/v1.0/me/messages":
            return json_response(201, {"id": "D2", "conversationId": "c"})
        if path.endswith("/createUploadSession"):
            return json_response(201, {"uploadUrl": upload_url})
        return httpx.Response(202)

    provider, recorder = provider_for(handler)
    sent = await provider.send(OutgoingMessage(mime=mime))
    assert sent.provider_message_id == "D2"

    draft = json.loads(recorder.requests[0].content)
    assert "attachments" not in draft
    assert len(recorder.requests[0].content) < 4 * 1024 * 1024

    session = json.loads(recorder.requests[1].content)["AttachmentItem"]
    assert session["name"] == "report.pdf"
    assert session["size"] == len(attachment)
    assert session["attachmentType"] == "file"

    assert all("Authorization" not in put.headers for put in puts)
    assert b"".join(put.content for put in puts) == attachment
    expected_chunks = -(-len(attachment) // UPLOAD_CHUNK_BYTES)
    assert len(puts) == expected_chunks
    assert puts[0].headers["Content-Range"] == (
        f"bytes 0-{UPLOAD_CHUNK_BYTES - 1}/{len(attachment)}"
    )
    assert puts[-1].headers["Content-Range"].endswith(f"-{len(attachment) - 1}/{len(attachment)}")
    assert recorder.requests[-1].url.path == "/v1.0/me/messages/D2/send"


@pytest.mark.asyncio
async def test_attachments_that_do_not_fit_the_draft_are_posted_after(provider_for) -> None:
    two_mb = b"a" * (2 * 1024 * 1024)
    msg = email.message_from_bytes(mime_message(attachment=two_mb), policy=email_policy.default)
    assert isinstance(msg, EmailMessage)
    msg.add_attachment(b"b" * (2 * 1024 * 1024), maintype="image", subtype="png", filename="b.png")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/me/messages":
            return json_response(201, {"id": "D3"})
        if request.url.path.endswith("/attachments"):
            return json_response(201, {"id": "att"})
        return httpx.Response(202)

    provider, recorder = provider_for(handler)
    await provider.send(OutgoingMessage(mime=msg.as_bytes()))
    create, attach, send = recorder.requests
    assert [a["name"] for a in json.loads(create.content)["attachments"]] == ["report.pdf"]
    assert json.loads(attach.content)["name"] == "b.png"
    assert attach.url.path == "/v1.0/me/messages/D3/attachments"
    assert send.url.path == "/v1.0/me/messages/D3/send"


@pytest.mark.asyncio
async def test_send_refuses_messages_over_the_exchange_ceiling(provider_for) -> None:
    provider, recorder = provider_for(lambda r: json_response(201, {}))
    with pytest.raises(MessageTooLarge):
        await provider.send(OutgoingMessage(mime=b"x" * (150 * 1024 * 1024 + 1)))
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_provider_size_error_is_message_too_large(provider_for) -> None:
    provider, _ = provider_for(lambda r: graph_error(400, "ErrorMessageSizeExceeded"))
    with pytest.raises(MessageTooLarge):
        await provider.send(OutgoingMessage(mime=mime_message()))


@pytest.mark.asyncio
async def test_subscription_watch_renew_stop(provider_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(request.content)
            return json_response(
                201, {"id": "sub-1", "expirationDateTime": body["expirationDateTime"]}
            )
        if request.method == "PATCH":
            return json_response(200, json.loads(request.content) | {"id": "sub-1"})
        return graph_error(404, "ResourceNotFound")  # DELETE of a gone subscription

    provider, recorder = provider_for(handler)
    before = datetime.now(UTC)
    channel = await provider.watch("https://svc.example/v1/webhooks/outlook", "client-state-1")
    body = json.loads(recorder.requests[0].content)
    assert body["changeType"] == "created,updated,deleted"
    assert body["resource"] == "me/mailFolders('inbox')/messages"
    assert body["clientState"] == "client-state-1"
    assert body["notificationUrl"] == "https://svc.example/v1/webhooks/outlook"
    assert 'IdType="ImmutableId"' in recorder.requests[0].headers["Prefer"]
    assert channel.channel_id == "sub-1"
    lifetime = channel.expires_at - before
    assert timedelta(days=2, hours=12) < lifetime < timedelta(minutes=4230)

    renewed = await provider.renew(PushChannel("sub-1", before))
    assert recorder.requests[1].method == "PATCH"
    assert recorder.requests[1].url.path == "/v1.0/subscriptions/sub-1"
    assert renewed.expires_at > before + timedelta(days=2)
    await provider.stop(channel)  # 404 is fine: already gone
    assert recorder.requests[2].method == "DELETE"


@pytest.mark.asyncio
async def test_revoke_is_a_no_op(provider_for) -> None:
    provider, recorder = provider_for(lambda r: json_response(200, {}))
    await provider.revoke("SECRETTOKEN-refresh")
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_get_attachment(provider_for) -> None:
    provider, recorder = provider_for(
        lambda r: json_response(200, {"contentBytes": base64.b64encode(b"\x00pdf").decode()})
    )
    assert await provider.get_attachment("m1", "att1") == b"\x00pdf"
    assert recorder.requests[0].url.path == "/v1.0/me/messages/m1/attachments/att1"


@pytest.mark.asyncio
async def test_a_failing_fetch_raises_the_typed_error_itself(provider_for, tokens) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/bad/" in request.url.path:
            return graph_error(401, "InvalidAuthenticationToken")
        return httpx.Response(200, content=mime_message())

    provider, _ = provider_for(handler)
    with pytest.raises(AuthRevoked):  # not an ExceptionGroup
        await provider.get_messages(["ok1", "bad", "ok2"])
    assert tokens.refreshes == 1
