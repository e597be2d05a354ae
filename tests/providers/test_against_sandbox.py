"""Both drivers end to end through the provider sandbox over HTTP (ASGI transport):
the OAuth code flow via the sandbox consent redirect, profile, windowed listing, changes,
batch get, attachments, send, watch, and the sandbox's injected faults."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import pytest_asyncio

from app.config import Settings
from app.providers.base import ChangePage, Folder, MailProvider, MessageRef, OutgoingMessage
from app.providers.errors import AuthRevoked, CursorExpired
from app.providers.http import RetryPolicy, calls_by, message_fetches
from app.providers.oauth import OAuthTokenSource
from app.providers.registry import get_oauth_client, get_provider
from app.sandbox_mount import standalone_sandbox_app
from sandbox import SandboxState
from tests.fixtures import mailboxes
from tests.fixtures.providers import RecordingSleep

TOKEN_MARKER = "SANDBOXTOKEN"
MAILBOX = {"gmail": "alice.sandbox@example.com", "outlook": "bob.sandbox@contoso.example"}
PROVIDERS = ["gmail", "outlook"]


class PushReceiver:
    """Stands in for the service's webhooks: answers Graph's validation handshake and
    records every push."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("validationToken")
        if token is not None:
            return httpx.Response(200, text=token, headers={"Content-Type": "text/plain"})
        self.pushes.append((request.url.path, httpx.Response(200, content=request.content).json()))
        return httpx.Response(202)


@dataclass
class Sandbox:
    settings: Settings
    state: SandboxState
    client: httpx.AsyncClient
    receiver: PushReceiver
    sleep: RecordingSleep
    policy: RetryPolicy
    _providers: list[MailProvider] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.settings.sandbox_base()

    async def connect(self, name: str) -> tuple[MailProvider, OAuthTokenSource]:
        """The whole consent flow, as the OAuth callback will run it."""
        oauth = get_oauth_client(name, self.settings, self.client, policy=self.policy)
        verifier = secrets.token_urlsafe(48)
        url = oauth.authorization_url("state-xyz", verifier, login_hint=MAILBOX[name])
        consent = await self.client.get(url)
        assert consent.status_code == 302, consent.text
        location = consent.headers["location"]
        assert location.startswith(oauth.redirect_uri + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == ["state-xyz"]
        tokens = await oauth.exchange_code(query["code"][0], verifier)
        assert TOKEN_MARKER in tokens.access_token
        assert tokens.refresh_token is not None
        assert TOKEN_MARKER in tokens.refresh_token
        assert tokens.expires_at > datetime.now(UTC) + timedelta(minutes=50)
        source = OAuthTokenSource(oauth, tokens)
        provider = get_provider(name, self.settings, source, self.client, policy=self.policy)
        return provider, source

    async def seed(
        self, name: str, raw: bytes, folder: Folder = "inbox", received_at: datetime | None = None
    ) -> str:
        return await mailboxes.seed(
            self.client, name, MAILBOX[name], raw, folder=folder, received_at=received_at
        )

    async def delete(self, name: str, message_id: str) -> None:
        response = await self.client.delete(
            f"{self.base}/{name}/mailboxes/{quote(MAILBOX[name])}/messages/{quote(message_id)}"
        )
        assert response.status_code == 204, response.text

    async def fault(self, name: str, kind: str, count: int = 1, **extra: Any) -> None:
        response = await self.client.post(
            f"{self.base}/{name}/faults", json={"kind": kind, "count": count, **extra}
        )
        assert response.status_code == 201, response.text

    async def sent(self, name: str) -> list[dict[str, Any]]:
        return await mailboxes.sent_log(self.client, name, MAILBOX[name])


def raw_mail(subject: str, *, sender: str = "carol@partner.example", to: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to or "someone@example.com"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="partner.example")
    msg.set_content(f"body of {subject}")
    return msg.as_bytes()


async def all_pages(first: ChangePage, next_page) -> tuple[list[MessageRef], list[str], str]:
    added, deleted, page = list(first.added), list(first.deleted), first
    while page.next_page_token:
        page = await next_page(page.next_page_token)
        added += page.added
        deleted += page.deleted
    assert page.new_cursor, "the last page carries the new cursor"
    return added, deleted, page.new_cursor


async def list_folder(
    provider: MailProvider, folder: Folder, since: datetime
) -> tuple[list[MessageRef], str]:
    first = await provider.list_messages(folder, since)
    added, _, cursor = await all_pages(
        first, lambda token: provider.list_messages(folder, since, token)
    )
    return added, cursor


async def changes(
    provider: MailProvider, cursor: str, folder: Folder
) -> tuple[list[MessageRef], list[str], str]:
    first = await provider.list_changes(cursor, None, folder)
    return await all_pages(first, lambda token: provider.list_changes(cursor, token, folder))


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    settings = Settings(_env_file=None, ce_sandbox=True).with_sandbox_urls()  # type: ignore[call-arg]
    receiver = PushReceiver()
    state = SandboxState(
        push_client_factory=lambda: httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    )
    app = standalone_sandbox_app(settings, state)
    sleep = RecordingSleep()
    policy = RetryPolicy.from_settings(settings, sleep=sleep)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.public_base_url
    ) as client:
        yield Sandbox(settings, state, client, receiver, sleep, policy)
        await state.drain_pushes()


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_connect_profile_list_and_get(sandbox: Sandbox, name: str) -> None:
    now = datetime.now(UTC)
    inbox_raws = [raw_mail(f"inbox {n}") for n in range(3)]
    inbox_ids = [await sandbox.seed(name, raw) for raw in inbox_raws]
    sent_id = await sandbox.seed(name, raw_mail("sent 1", sender=MAILBOX[name]), "sent")
    old_id = await sandbox.seed(name, raw_mail("too old"), received_at=now - timedelta(days=60))

    provider, _ = await sandbox.connect(name)
    profile = await provider.get_profile()
    assert profile.email_address.lower() == MAILBOX[name]
    assert (profile.cursor_hint is not None) == (name == "gmail")

    since = now - timedelta(days=30)
    inbox, inbox_cursor = await list_folder(provider, "inbox", since)
    assert sorted(ref.id for ref in inbox) == sorted(inbox_ids)
    assert old_id not in {ref.id for ref in inbox}
    sent, _ = await list_folder(provider, "sent", since)
    assert [ref.id for ref in sent] == [sent_id]
    assert inbox_cursor

    fetched = await provider.get_messages([*inbox, *sent])
    by_id = {m.id: m for m in fetched if m is not None}
    assert set(by_id) == {*inbox_ids, sent_id}
    for message_id, raw in zip(inbox_ids, inbox_raws, strict=True):
        message = by_id[message_id]
        assert message.folder == "inbox"
        assert message.raw.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
        assert message.internet_message_id is not None
        assert message.internet_message_id in raw.decode()
        assert abs(message.received_at - now) < timedelta(minutes=5)
        assert message.thread_id
    assert by_id[sent_id].folder == "sent"
    assert message_fetches(name) == 4
    await provider.aclose()


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_incremental_changes_and_deleted_between_list_and_get(
    sandbox: Sandbox, name: str
) -> None:
    keep = await sandbox.seed(name, raw_mail("keep"))
    doomed = await sandbox.seed(name, raw_mail("doomed"))
    provider, _ = await sandbox.connect(name)
    inbox, cursor = await list_folder(provider, "inbox", datetime.now(UTC) - timedelta(days=7))
    assert {ref.id for ref in inbox} == {keep, doomed}

    new = await sandbox.seed(name, raw_mail("new"))
    await sandbox.delete(name, doomed)
    added, deleted, new_cursor = await changes(provider, cursor, "inbox")
    assert new in {ref.id for ref in added}
    assert doomed in deleted
    assert doomed not in {ref.id for ref in added}
    assert new_cursor != cursor

    # Listed, then deleted before the get: None, and the others still arrive.
    result = await provider.get_messages([keep, doomed, new])
    assert result[1] is None
    assert [m.id for m in result if m] == [keep, new]

    quiet_added, quiet_deleted, _ = await changes(provider, new_cursor, "inbox")
    assert (quiet_added, quiet_deleted) == ([], [])


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_expired_cursor(sandbox: Sandbox, name: str) -> None:
    await sandbox.seed(name, raw_mail("one"))
    provider, _ = await sandbox.connect(name)
    _, cursor = await list_folder(provider, "inbox", datetime.now(UTC) - timedelta(days=7))
    await sandbox.seed(name, raw_mail("two"))
    await sandbox.fault(name, "expire_cursor")
    with pytest.raises(CursorExpired):
        await changes(provider, cursor, "inbox")


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_many_messages_one_fetch_each(sandbox: Sandbox, name: str) -> None:
    ids = [await sandbox.seed(name, raw_mail(f"bulk {n}")) for n in range(120)]
    provider, _ = await sandbox.connect(name)
    inbox, _ = await list_folder(provider, "inbox", datetime.now(UTC) - timedelta(days=1))
    assert sorted(ref.id for ref in inbox) == sorted(ids)
    before = calls_by(name)
    fetched = await provider.get_messages(inbox)
    assert all(m is not None for m in fetched)
    assert message_fetches(name) == 120
    expected_http = 3 if name == "gmail" else 120  # Gmail: batches of 50
    assert calls_by(name) - before == expected_http


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_faults_rate_limit_server_error_and_token_expiry(sandbox: Sandbox, name: str) -> None:
    await sandbox.seed(name, raw_mail("x"))
    provider, source = await sandbox.connect(name)
    await sandbox.fault(name, "rate_limit", 2, retry_after=1.5)
    await sandbox.fault(name, "server_error", 1)
    await sandbox.fault(name, "expire_access_token", 1)
    profile = await provider.get_profile()
    assert profile.email_address.lower() == MAILBOX[name]
    assert source.refresh_count == 1
    assert len(sandbox.sleep.calls) == 3
    if name == "outlook":
        assert sandbox.sleep.calls[:2] == [1.5, 1.5]


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_revoked_refresh_token_is_auth_revoked(
    sandbox: Sandbox, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider, _ = await sandbox.connect(name)
    await sandbox.fault(name, "revoke_refresh_token", 1)
    await sandbox.fault(name, "expire_access_token", 1)
    with pytest.raises(AuthRevoked) as info:
        await provider.get_profile()
    assert info.value.code == "invalid_grant"
    assert TOKEN_MARKER not in str(info.value)
    assert all(TOKEN_MARKER not in record.getMessage() for record in caplog.records)


@pytest.mark.asyncio
async def test_gmail_refresh_keeps_and_outlook_rotates(sandbox: Sandbox) -> None:
    _, gmail_source = await sandbox.connect("gmail")
    _, outlook_source = await sandbox.connect("outlook")
    gmail_refresh = gmail_source.tokens.refresh_token
    outlook_refresh = outlook_source.tokens.refresh_token
    await gmail_source.refresh()
    await outlook_source.refresh()
    assert gmail_source.tokens.refresh_token == gmail_refresh
    assert outlook_source.tokens.refresh_token != outlook_refresh
    assert TOKEN_MARKER in (outlook_source.tokens.refresh_token or "")


@pytest.mark.asyncio
async def test_gmail_revoke_ends_the_grant(sandbox: Sandbox) -> None:
    provider, source = await sandbox.connect("gmail")
    await provider.revoke(source.tokens.refresh_token or "")
    with pytest.raises(AuthRevoked):
        await source.refresh()


def attachment_mail(content: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@partner.example"
    msg["To"] = "x@example.com"
    msg["Subject"] = "with attachment"
    msg["Message-ID"] = make_msgid(domain="partner.example")
    msg.set_content("see file")
    msg.add_attachment(content, maintype="application", subtype="pdf", filename="lab.pdf")
    return msg.as_bytes()


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_attachment_download(sandbox: Sandbox, name: str) -> None:
    content = b"%PDF-1.7\n" + bytes(range(256)) * 40
    message_id = await sandbox.seed(name, attachment_mail(content))
    provider, source = await sandbox.connect(name)
    headers = {"Authorization": f"Bearer {await source.access_token()}"}
    # The attachment id comes from a metadata read the sync engine does on its own side.
    if name == "gmail":
        full = await sandbox.client.get(
            f"{sandbox.settings.gmail_api_base}/users/me/messages/{message_id}",
            params={"format": "full"},
            headers=headers,
        )
        parts = full.json()["payload"]["parts"]
        attachment_id = next(p["body"]["attachmentId"] for p in parts if p.get("filename"))
    else:
        listing = await sandbox.client.get(
            f"{sandbox.settings.graph_api_base}/me/messages/{message_id}/attachments",
            headers=headers,
        )
        attachment_id = listing.json()["value"][0]["id"]
    assert await provider.get_attachment(message_id, attachment_id) == content


def outgoing(subject: str, sender: str, to: str, *, attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="ce-email.example")
    msg["X-CE-Email-Id"] = "email-123"
    msg.set_content("plain body")
    msg.add_alternative("<p>html body</p>", subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="a.pdf")
    return msg.as_bytes()


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_send_and_reply(sandbox: Sandbox, name: str) -> None:
    original_raw = raw_mail("question", to=MAILBOX[name])
    original_id = await sandbox.seed(name, original_raw)
    provider, _ = await sandbox.connect(name)
    inbox, _ = await list_folder(provider, "inbox", datetime.now(UTC) - timedelta(days=1))
    [original] = await provider.get_messages(inbox)  # refs carry Graph's conversationId
    assert original is not None
    assert original.id == original_id
    assert original.thread_id

    sent = await provider.send(
        OutgoingMessage(mime=outgoing("hello there", MAILBOX[name], "dana@clinic.example"))
    )
    assert sent.provider_message_id
    items = await sandbox.sent(name)
    assert items[-1]["id"] == sent.provider_message_id
    assert "hello there" in items[-1]["raw"]
    assert "dana@clinic.example" in items[-1]["raw"]
    assert sent.internet_message_id
    assert sent.internet_message_id in items[-1]["raw"]

    reply_mime = outgoing("Re: question", MAILBOX[name], "carol@partner.example")
    reply = await provider.send(
        OutgoingMessage(
            mime=reply_mime, thread_id=original.thread_id, reply_to_provider_id=original_id
        )
    )
    assert reply.thread_id == original.thread_id
    items = await sandbox.sent(name)
    assert items[-1]["id"] == reply.provider_message_id

    # The sent copy is in the Sent folder under the id send() returned.
    sent_refs, _ = await list_folder(provider, "sent", datetime.now(UTC) - timedelta(days=1))
    assert {sent.provider_message_id, reply.provider_message_id} <= {r.id for r in sent_refs}


@pytest.mark.asyncio
async def test_gmail_large_send_uses_the_upload_endpoint(sandbox: Sandbox) -> None:
    provider, _ = await sandbox.connect("gmail")
    big = b"\x00" * (6 * 1024 * 1024)
    sent = await provider.send(
        OutgoingMessage(
            mime=outgoing("big one", MAILBOX["gmail"], "dana@clinic.example", attachment=big)
        )
    )
    items = await sandbox.sent("gmail")
    assert items[-1]["id"] == sent.provider_message_id
    assert len(items[-1]["raw"]) > 6 * 1024 * 1024


@pytest.mark.asyncio
async def test_outlook_large_attachment_uses_an_upload_session(sandbox: Sandbox) -> None:
    provider, _ = await sandbox.connect("outlook")
    big = bytes(range(256)) * (16 * 1024)  # 4 MiB
    sent = await provider.send(
        OutgoingMessage(
            mime=outgoing("big one", MAILBOX["outlook"], "dana@clinic.example", attachment=big)
        )
    )
    [message] = await provider.get_messages([MessageRef(sent.provider_message_id, None, "sent")])
    assert message is not None
    assert base64.b64encode(big[:3000]).decode()[:64] in message.raw.decode().replace("\r\n", "")


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_watch_push_renew_stop(sandbox: Sandbox, name: str) -> None:
    provider, _ = await sandbox.connect(name)
    callback = f"{sandbox.settings.public_base_url}/v1/webhooks/{name}"
    channel = await provider.watch(callback, "client-state-secret")
    assert channel.expires_at > datetime.now(UTC) + timedelta(days=2)
    if name == "gmail":
        assert channel.resource_cursor
    await sandbox.seed(name, raw_mail("push me"))
    await sandbox.state.drain_pushes()
    assert sandbox.receiver.pushes, "a push should have been delivered"
    path, body = sandbox.receiver.pushes[-1]
    assert path == f"/v1/webhooks/{name}"
    if name == "outlook":
        assert body["value"][0]["clientState"] == "client-state-secret"
        assert body["value"][0]["subscriptionId"] == channel.channel_id
    else:
        data = base64.b64decode(body["message"]["data"])
        assert MAILBOX["gmail"].encode() in data

    renewed = await provider.renew(channel)
    assert renewed.channel_id == channel.channel_id
    assert renewed.expires_at >= channel.expires_at - timedelta(minutes=1)
    await provider.stop(renewed)
    before = len(sandbox.receiver.pushes)
    await sandbox.seed(name, raw_mail("after stop"))
    await sandbox.state.drain_pushes()
    assert len(sandbox.receiver.pushes) == before


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.asyncio
async def test_client_logs_carry_no_token_address_or_url(
    sandbox: Sandbox, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await sandbox.seed(name, raw_mail("logged?"))
    provider, _ = await sandbox.connect(name)
    await sandbox.fault(name, "expire_access_token", 1)
    inbox, cursor = await list_folder(provider, "inbox", datetime.now(UTC) - timedelta(days=1))
    await provider.get_messages(inbox)
    await changes(provider, cursor, "inbox")
    await provider.send(OutgoingMessage(mime=outgoing("s", MAILBOX[name], "dana@clinic.example")))
    ours = [r for r in caplog.records if r.name.startswith(("app.providers", "httpx", "httpcore"))]
    assert any(r.name == "app.providers" for r in ours)
    for record in ours:
        text = record.getMessage() + repr(record.__dict__)
        for forbidden in (TOKEN_MARKER, MAILBOX[name], "dana@clinic.example", "?", "http://"):
            assert forbidden not in text, (forbidden, record.getMessage())
