"""The Gmail driver against MockTransport: wire format, paging, batch, send, watch."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.providers.base import MessageRef, OutgoingMessage
from app.providers.errors import CursorExpired, MessageTooLarge, ProviderRequestError, RateLimited
from app.providers.gmail import GmailProvider
from app.providers.gmail.batch import parse_batch_response
from app.providers.http import calls_by, message_fetches
from tests.fixtures.providers import gmail_error, json_response, mock_client

API = "https://gmail.googleapis.com/gmail/v1/users/me"


def raw_mime(message_id: str, subject: str = "Hello", size: int = 0) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "bob@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}@mail.example.com>"
    msg["Date"] = "Tue, 14 Nov 2023 22:13:20 +0000"
    msg.set_content("body " + "x" * size)
    return msg.as_bytes()


def gmail_raw(message_id: str, labels: list[str] | None = None) -> dict:
    return {
        "id": message_id,
        "threadId": f"t-{message_id}",
        "labelIds": labels or ["INBOX", "UNREAD"],
        "internalDate": "1700000000000",
        "sizeEstimate": 100,
        # base64url without padding, as Gmail may send it
        "raw": base64.urlsafe_b64encode(raw_mime(message_id)).decode().rstrip("="),
    }


def batch_response(parts: list[tuple[str, int, dict, dict[str, str]]]) -> httpx.Response:
    boundary = "batch_resp_abc"
    chunks = []
    for content_id, status, body, headers in parts:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/http\r\n"
            f"Content-ID: <response-{content_id}>\r\n\r\n"
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json; charset=UTF-8\r\n{extra}"
            f"\r\n{json.dumps(body)}\r\n"
        )
    chunks.append(f"--{boundary}--\r\n")
    return httpx.Response(
        200,
        content="".join(chunks).encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )


def batch_requests(request: httpx.Request) -> list[tuple[str, str]]:
    """(content_id, request line) of each part of a batch request."""
    body = request.content.decode()
    boundary = request.headers["content-type"].split("boundary=")[1]
    out = []
    for part in body.split(f"--{boundary}")[1:]:
        if part.startswith("--"):
            break
        head, _, http_part = part.strip().partition("\r\n\r\n")
        content_id = next(h for h in head.splitlines() if h.startswith("Content-ID"))
        out.append((content_id.split("<")[1].rstrip(">"), http_part.splitlines()[0]))
    return out


@pytest.fixture
def provider_for(settings, tokens, policy):
    created = []

    def make(handler):
        client, recorder = mock_client(handler)
        created.append(client)
        return GmailProvider(settings, tokens, client, policy), recorder

    return make


@pytest.mark.asyncio
async def test_profile(provider_for) -> None:
    provider, recorder = provider_for(
        lambda r: json_response(200, {"emailAddress": "bob@example.com", "historyId": 123789})
    )
    profile = await provider.get_profile()
    assert profile.email_address == "bob@example.com"
    assert profile.cursor_hint == "123789"
    assert recorder.requests[0].url.path == "/gmail/v1/users/me/profile"


@pytest.mark.asyncio
async def test_list_messages_pages_and_cursor_from_profile_before_listing(provider_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/profile"):
            return json_response(200, {"emailAddress": "bob@example.com", "historyId": "500"})
        if "pageToken" not in request.url.params:
            return json_response(
                200,
                {
                    "messages": [{"id": "m1", "threadId": "t1"}, {"id": "m2", "threadId": "t1"}],
                    "nextPageToken": "PAGE2",
                },
            )
        return json_response(200, {"messages": [{"id": "m3", "threadId": "t3"}]})

    provider, recorder = provider_for(handler)
    since = datetime(2024, 1, 1, tzinfo=UTC)
    first = await provider.list_messages("inbox", since)
    assert [r.id for r in first.added] == ["m1", "m2"]
    assert first.added[0].folder == "inbox"
    assert first.new_cursor is None
    assert first.next_page_token is not None
    second = await provider.list_messages("inbox", since, first.next_page_token)
    assert [r.id for r in second.added] == ["m3"]
    assert second.next_page_token is None
    assert second.new_cursor == "500"

    list_calls = [r for r in recorder.requests if r.url.path.endswith("/messages")]
    assert list_calls[0].url.params["q"] == f"after:{int(since.timestamp())} in:inbox"
    assert list_calls[0].url.params["maxResults"] == "500"
    assert list_calls[1].url.params["pageToken"] == "PAGE2"
    assert sum(r.url.path.endswith("/profile") for r in recorder.requests) == 1


@pytest.mark.asyncio
async def test_list_messages_sent_folder_query(provider_for) -> None:
    provider, recorder = provider_for(
        lambda r: (
            json_response(200, {"historyId": "9"})
            if r.url.path.endswith("/profile")
            else json_response(200, {"resultSizeEstimate": 0})
        )
    )
    page = await provider.list_messages("sent", datetime(2024, 1, 1, tzinfo=UTC))
    assert page.added == []
    assert page.new_cursor == "9"
    assert recorder.requests[1].url.params["q"].endswith("in:sent")


@pytest.mark.asyncio
async def test_list_changes_history(provider_for) -> None:
    history = {
        "history": [
            {
                "id": "601",
                "messagesAdded": [
                    {"message": {"id": "a", "threadId": "ta", "labelIds": ["INBOX", "UNREAD"]}},
                    {"message": {"id": "s", "threadId": "ts", "labelIds": ["SENT"]}},
                    {"message": {"id": "d", "threadId": "td", "labelIds": ["DRAFT"]}},
                    {"message": {"id": "gone", "threadId": "tg", "labelIds": ["INBOX"]}},
                ],
            },
            {"id": "602", "messagesAdded": [{"message": {"id": "a", "labelIds": ["INBOX"]}}]},
            {
                "id": "603",
                "messagesDeleted": [{"message": {"id": "gone"}}, {"message": {"id": "x"}}],
            },
        ],
        "historyId": "700",
    }
    provider, recorder = provider_for(lambda r: json_response(200, history))
    page = await provider.list_changes("600")
    assert {(r.id, r.folder) for r in page.added} == {("a", "inbox"), ("s", "sent")}
    assert page.deleted == ["gone", "x"]
    assert page.new_cursor == "700"
    assert page.next_page_token is None
    params = recorder.requests[0].url.params
    assert params["startHistoryId"] == "600"
    assert params.get_list("historyTypes") == ["messageAdded", "messageDeleted"]
    assert params["maxResults"] == "500"

    only_sent = await provider.list_changes("600", folder="sent")
    assert [r.id for r in only_sent.added] == ["s"]


@pytest.mark.asyncio
async def test_list_changes_pages_keep_cursor_for_last(provider_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "pageToken" in request.url.params:
            return json_response(200, {"history": [], "historyId": "900"})
        return json_response(200, {"history": [], "historyId": "800", "nextPageToken": "n2"})

    provider, _ = provider_for(handler)
    first = await provider.list_changes("10")
    assert first.next_page_token == "n2"
    assert first.new_cursor is None
    last = await provider.list_changes("10", first.next_page_token)
    assert last.new_cursor == "900"


@pytest.mark.asyncio
async def test_history_404_is_cursor_expired(provider_for) -> None:
    provider, recorder = provider_for(lambda r: gmail_error(404, "notFound"))
    with pytest.raises(CursorExpired):
        await provider.list_changes("1")
    assert len(recorder.requests) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", ["failedPrecondition", "invalidArgument"])
async def test_history_400_for_an_invalid_start_id_is_cursor_expired(provider_for, reason) -> None:
    """Gmail answers 400 for a startHistoryId it cannot use: a full sync, like a 404."""
    provider, recorder = provider_for(lambda r: gmail_error(400, reason))
    with pytest.raises(CursorExpired):
        await provider.list_changes("1")
    assert len(recorder.requests) == 1


def test_parse_batch_response_handles_lf_and_padding() -> None:
    body = (
        b"preamble\n--b1  \nContent-Type: application/http\nContent-ID: <response-item-0>\n\n"
        b'HTTP/1.1 404 Not Found\nContent-Type: application/json\n\n{"error": {"code": 404}}\n'
        b"--b1--\n"
    )
    parts = parse_batch_response('multipart/mixed; boundary="b1"', body)
    assert len(parts) == 1
    assert parts[0].content_id == "item-0"
    assert parts[0].status == 404
    assert parts[0].json() == {"error": {"code": 404}}


@pytest.mark.asyncio
async def test_batch_get_mixed_statuses_retries_only_failed_parts(provider_for, sleep) -> None:
    rounds: list[list[tuple[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/batch/gmail/v1"
        assert request.headers["Authorization"].startswith("Bearer ")
        parts = batch_requests(request)
        rounds.append(parts)
        answers = []
        for content_id, line in parts:
            message_id = line.split("/messages/")[1].split("?")[0]
            if message_id == "m2" and len(rounds) == 1:
                answers.append(
                    (
                        content_id,
                        429,
                        {"error": {"code": 429, "errors": [{"reason": "rateLimitExceeded"}]}},
                        {"Retry-After": "1"},
                    )
                )
            elif message_id == "m3":
                answers.append((content_id, 404, {"error": {"code": 404}}, {}))
            else:
                answers.append((content_id, 200, gmail_raw(message_id), {}))
        return batch_response(answers)

    provider, _ = provider_for(handler)
    result = await provider.get_messages([MessageRef("m1", "t-m1", "inbox"), "m2", "m3", "m1"])
    assert [m.id if m else None for m in result] == ["m1", "m2", None, "m1"]
    assert len(rounds) == 2
    assert len(rounds[0]) == 3  # the duplicate m1 is fetched once
    assert [line for _, line in rounds[1]] == [
        "GET /gmail/v1/users/me/messages/m2?format=raw HTTP/1.1"
    ]
    assert sleep.calls == [1.0]
    assert message_fetches("gmail") == 4
    assert calls_by("gmail") == 2

    first = result[0]
    assert first is not None
    assert first.raw == raw_mime("m1")
    assert first.size == len(first.raw)
    assert first.internet_message_id == "<m1@mail.example.com>"
    assert first.thread_id == "t-m1"
    assert first.folder == "inbox"
    assert first.received_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert first.label_ids == ["INBOX", "UNREAD"]


@pytest.mark.asyncio
async def test_batch_parts_still_throttled_raise_rate_limited(provider_for, settings) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return batch_response(
            [
                (
                    cid,
                    403,
                    {"error": {"code": 403, "errors": [{"reason": "userRateLimitExceeded"}]}},
                    {},
                )
                for cid, _ in batch_requests(request)
            ]
        )

    provider, _ = provider_for(handler)
    with pytest.raises(RateLimited):
        await provider.get_messages(["a", "b"])
    assert len(calls) == settings.provider_max_attempts


@pytest.mark.asyncio
async def test_batch_part_401_refreshes_once(provider_for, tokens) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        stale = request.headers["Authorization"].endswith("-1")
        return batch_response(
            [
                (cid, 401, {"error": {"code": 401}}, {})
                if stale
                else (cid, 200, gmail_raw("m1"), {})
                for cid, _ in batch_requests(request)
            ]
        )

    provider, recorder = provider_for(handler)
    result = await provider.get_messages(["m1"])
    assert result[0] is not None
    assert tokens.refreshes == 1
    assert len(recorder.requests) == 2


@pytest.mark.asyncio
async def test_batches_hold_at_most_50_parts(provider_for) -> None:
    sizes = []

    def handler(request: httpx.Request) -> httpx.Response:
        parts = batch_requests(request)
        sizes.append(len(parts))
        return batch_response(
            [
                (cid, 200, gmail_raw(line.split("/messages/")[1].split("?")[0]), {})
                for cid, line in parts
            ]
        )

    provider, _ = provider_for(handler)
    ids = [f"id{n}" for n in range(120)]
    result = await provider.get_messages(ids)
    assert [m.id for m in result if m] == ids
    assert sizes == [50, 50, 20]
    assert message_fetches("gmail") == 120


@pytest.mark.asyncio
async def test_send_small_uses_raw_json(provider_for) -> None:
    mime = raw_mime("out1")
    provider, recorder = provider_for(
        lambda r: json_response(200, {"id": "sent1", "threadId": "th1", "labelIds": ["SENT"]})
    )
    sent = await provider.send(OutgoingMessage(mime=mime, thread_id="th1"))
    assert sent.provider_message_id == "sent1"
    assert sent.thread_id == "th1"
    assert sent.internet_message_id == "<out1@mail.example.com>"
    request = recorder.requests[0]
    assert request.url.path == "/gmail/v1/users/me/messages/send"
    body = json.loads(request.content)
    assert base64.urlsafe_b64decode(body["raw"]) == mime
    assert body["threadId"] == "th1"


@pytest.mark.asyncio
async def test_send_large_uses_media_upload(provider_for) -> None:
    mime = raw_mime("big", size=6 * 1024 * 1024)
    provider, recorder = provider_for(lambda r: json_response(200, {"id": "s2", "threadId": "t2"}))
    sent = await provider.send(OutgoingMessage(mime=mime))
    assert sent.provider_message_id == "s2"
    request = recorder.requests[0]
    assert request.url.path == "/upload/gmail/v1/users/me/messages/send"
    assert request.url.params["uploadType"] == "media"
    assert request.headers["Content-Type"] == "message/rfc822"
    assert request.content == mime


@pytest.mark.asyncio
async def test_send_large_reply_uses_multipart_upload_with_thread(provider_for) -> None:
    mime = raw_mime("big", size=6 * 1024 * 1024)
    provider, recorder = provider_for(lambda r: json_response(200, {"id": "s3", "threadId": "t9"}))
    await provider.send(OutgoingMessage(mime=mime, thread_id="t9"))
    request = recorder.requests[0]
    assert request.url.params["uploadType"] == "multipart"
    assert request.headers["Content-Type"].startswith("multipart/related; boundary=")
    assert b'{"threadId": "t9"}' in request.content
    assert mime in request.content


@pytest.mark.asyncio
async def test_send_over_35mb_is_refused_before_calling(provider_for) -> None:
    provider, recorder = provider_for(lambda r: json_response(200, {}))
    mime = b"Subject: x\r\n\r\n" + b"x" * (35 * 1024 * 1024)
    with pytest.raises(MessageTooLarge):
        await provider.send(OutgoingMessage(mime=mime))
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_watch_renew_stop(provider_for, settings) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/watch"):
            return json_response(200, {"historyId": "1234", "expiration": "1700600000000"})
        return httpx.Response(204)

    provider, recorder = provider_for(handler)
    channel = await provider.watch("https://svc.example/v1/webhooks/gmail", "state")
    assert channel.resource_cursor == "1234"
    assert channel.expires_at == datetime.fromtimestamp(1_700_600_000, tz=UTC)
    assert channel.channel_id == settings.gmail_pubsub_topic
    body = json.loads(recorder.requests[0].content)
    assert body == {"topicName": settings.gmail_pubsub_topic, "labelIds": ["INBOX"]}
    renewed = await provider.renew(channel)
    assert renewed.expires_at == channel.expires_at
    await provider.stop(channel)
    assert [r.url.path.rsplit("/", 1)[1] for r in recorder.requests] == ["watch", "watch", "stop"]


@pytest.mark.asyncio
async def test_get_attachment(provider_for) -> None:
    content = b"%PDF-1.4 \xff\xfe binary"
    provider, recorder = provider_for(
        lambda r: json_response(
            200,
            {"size": len(content), "data": base64.urlsafe_b64encode(content).decode().rstrip("=")},
        )
    )
    assert await provider.get_attachment("m1", "ANGjdJ9xQ") == content
    assert recorder.requests[0].url.path == "/gmail/v1/users/me/messages/m1/attachments/ANGjdJ9xQ"


@pytest.mark.asyncio
async def test_non_retryable_batch_part_error_raises(provider_for) -> None:
    provider, _ = provider_for(
        lambda r: batch_response(
            [
                (cid, 400, {"error": {"code": 400, "errors": [{"reason": "badRequest"}]}}, {})
                for cid, _ in batch_requests(r)
            ]
        )
    )
    with pytest.raises(ProviderRequestError) as info:
        await provider.get_messages(["a"])
    assert info.value.code == "badRequest"


@pytest.mark.asyncio
async def test_revoke_sends_the_token_in_the_body(provider_for) -> None:
    provider, recorder = provider_for(lambda r: httpx.Response(200))
    await provider.revoke("SECRETTOKEN-refresh")
    request = recorder.requests[0]
    assert urlsplit(str(request.url)).query == ""
    assert parse_qs(request.content.decode()) == {"token": ["SECRETTOKEN-refresh"]}
    assert "Authorization" not in request.headers
