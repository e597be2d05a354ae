"""The state of the provider sandbox: per provider mailboxes, tokens, faults and
subscriptions, and the one `SandboxState` that holds both providers and the push outbox.

Everything is split per provider (`state.gmail`, `state.outlook`) because a Gmail mailbox
and an Outlook mailbox with the same address are different things. All mutations are
synchronous (no `await` in the middle), so on a single event loop they are atomic without
locks; only push delivery awaits, and the outbox serialises it. Only the header block of a
seeded message is parsed at seed time (for threading); full parses go through a small LRU
cache.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from email.message import Message
from typing import Literal

import sandbox.mime as mime
from sandbox.config import SandboxConfig
from sandbox.model import (
    TOKEN_MARKER,
    AuthCode,
    ChangeRecord,
    Fault,
    Folder,
    Grant,
    Mailbox,
    Provider,
    ResumableUpload,
    StoredMessage,
    Subscription,
    Token,
    UploadSession,
)
from sandbox.push import PushClientFactory, PushOutbox, gmail_push, graph_pushes

_GMAIL_FIRST_ID = 0x18C1F0A000000000
_PARSE_CACHE_SIZE = 256


# --------------------------------------------------------------------------- per provider


class ProviderState:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.mailboxes: dict[str, Mailbox] = {}
        self.tokens: dict[str, Token] = {}
        self.codes: dict[str, AuthCode] = {}
        self.faults: list[Fault] = []
        self.subscriptions: dict[str, Subscription] = {}
        self.upload_sessions: dict[str, UploadSession] = {}
        self.resumable_uploads: dict[str, ResumableUpload] = {}
        self._next_id = 0
        self._parsed: OrderedDict[tuple[str, int], mime.Parsed] = OrderedDict()

    def mailbox(self, address: str, *, create: bool = True) -> Mailbox | None:
        key = address.strip().lower()
        box = self.mailboxes.get(key)
        if box is None and create:
            box = self.mailboxes[key] = Mailbox(self.provider, key)
        return box

    def require_mailbox(self, address: str) -> Mailbox:
        box = self.mailbox(address)
        assert box is not None
        return box

    def new_message_id(self) -> str:
        self._next_id += 1
        if self.provider == "gmail":
            return f"{_GMAIL_FIRST_ID + self._next_id:016x}"
        return mime.graph_id("AAMkAD", self._next_id)

    def new_thread_id(self, message_id: str) -> str:
        if self.provider == "gmail":
            return message_id
        return mime.graph_id("AAQkAD", self._next_id)

    def parsed(self, message: StoredMessage) -> mime.Parsed:
        """The full parse of a stored message, through a small LRU cache."""
        key = (message.id, message.change_key)
        cached = self._parsed.get(key)
        if cached is not None:
            self._parsed.move_to_end(key)
            return cached
        parsed = mime.Parsed(message.raw)
        self._parsed[key] = parsed
        if len(self._parsed) > _PARSE_CACHE_SIZE:
            self._parsed.popitem(last=False)
        return parsed

    def is_parsed(self, message: StoredMessage) -> bool:
        return (message.id, message.change_key) in self._parsed

    def headers(self, message: StoredMessage) -> Message:
        """Top-level headers: from the cached full parse if there is one, else cheaply."""
        cached = self._parsed.get((message.id, message.change_key))
        return cached.msg if cached is not None else mime.parse_headers(message.raw)

    def take_fault(self, kind: str, mailbox: str | None) -> Fault | None:
        """Consume one occurrence of a matching fault, if any is pending."""
        for fault in self.faults:
            if fault.kind == kind and (fault.mailbox is None or fault.mailbox == mailbox):
                fault.remaining -= 1
                fault.fired += 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None


# --------------------------------------------------------------------------- the sandbox


class SandboxState:
    """Everything the sandbox knows. Knobs are plain attributes and may be changed live.

    - `config`: the host's configuration (`create_sandbox_app` sets it); without one no
      push is sent, since there is nowhere to send it.
    - `push_client_factory`: returns the `httpx.AsyncClient` used for one push delivery or
      validation handshake (it is closed afterwards); default a real client. It and
      `validation_timeout_seconds` belong to the outbox, `state.pushes`.
    - `clock`: epoch seconds; tests pass a fake to age codes, tokens and subscriptions.
    - `access_token_lifetime`: seconds (3599 like both providers).
    - `outlook_old_refresh_tokens_valid`: Microsoft keeps rotated-out refresh tokens working.
    - `max_log_records`: history / delta changes kept per mailbox; older cursors expire.
    - `latency_seconds`: added to every API call (makes concurrency observable).
    - `gmail_max_concurrency`: per-user concurrent requests for Gmail (None = unlimited).
    - `gmail_max_upload_bytes`, `graph_max_request_bytes`, `graph_max_upload_session_bytes`.
    """

    def __init__(
        self,
        *,
        push_client_factory: PushClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        access_token_lifetime: int = 3599,
        outlook_old_refresh_tokens_valid: bool = True,
        max_log_records: int = 100_000,
        latency_seconds: float = 0.0,
        gmail_max_concurrency: int | None = None,
        gmail_max_upload_bytes: int = 36_700_160,
        graph_max_request_bytes: int = 4 * 1024 * 1024,
        graph_max_upload_session_bytes: int = 150 * 1024 * 1024,
        validation_timeout_seconds: float = 10.0,
    ) -> None:
        self.config: SandboxConfig | None = None
        self.pushes = PushOutbox(
            push_client_factory, validation_timeout_seconds=validation_timeout_seconds
        )
        self.clock = clock
        self.access_token_lifetime = access_token_lifetime
        self.outlook_old_refresh_tokens_valid = outlook_old_refresh_tokens_valid
        self.max_log_records = max_log_records
        self.latency_seconds = latency_seconds
        self.gmail_max_concurrency = gmail_max_concurrency
        self.gmail_max_upload_bytes = gmail_max_upload_bytes
        self.graph_max_request_bytes = graph_max_request_bytes
        self.graph_max_upload_session_bytes = graph_max_upload_session_bytes
        self.gmail = ProviderState("gmail")
        self.outlook = ProviderState("outlook")
        self.tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, "sandbox.tenant"))
        self.application_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, "sandbox.application"))

    def require_config(self) -> SandboxConfig:
        """The configuration; every request has one (`create_sandbox_app` sets it)."""
        if self.config is None:
            raise RuntimeError("the sandbox has no configuration: build it with create_sandbox_app")
        return self.config

    def provider(self, name: Provider) -> ProviderState:
        return self.gmail if name == "gmail" else self.outlook

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def reset(self) -> None:
        """Forget every mailbox, token, fault and subscription (knobs stay)."""
        self.gmail = ProviderState("gmail")
        self.outlook = ProviderState("outlook")

    def stats(self, provider: Provider) -> dict[str, dict[str, int]]:
        return {
            address: box.stats.as_dict()
            for address, box in self.provider(provider).mailboxes.items()
        }

    # -- tokens

    def issue_token(self, grant: Grant, kind: Literal["access", "refresh"]) -> Token:
        prefix = {
            ("gmail", "access"): "ya29.",
            ("gmail", "refresh"): "1//",
            ("outlook", "access"): "EwB4A8l6.",
            ("outlook", "refresh"): "M.C5.",
        }[(grant.provider, kind)]
        value = f"{prefix}{TOKEN_MARKER}.{secrets.token_urlsafe(32)}"
        expires_at = self.clock() + self.access_token_lifetime if kind == "access" else None
        token = Token(value=value, kind=kind, grant=grant, expires_at=expires_at)
        self.provider(grant.provider).tokens[value] = token
        return token

    def access_token(self, provider: Provider, value: str) -> Token | None:
        """The live access token with this value, or None (unknown, expired, revoked)."""
        token = self.provider(provider).tokens.get(value)
        if token is None or token.kind != "access" or token.dead or token.grant.revoked:
            return None
        if token.expires_at is not None and token.expires_at <= self.clock():
            return None
        return token

    # -- mailbox changes (every mutation goes through here so pushes fire)

    def seed_message(
        self,
        provider: Provider,
        address: str,
        raw: bytes,
        *,
        folder: Folder = "inbox",
        received_ms: int | None = None,
        is_read: bool | None = None,
        thread_id: str | None = None,
        notify: bool = True,
    ) -> tuple[StoredMessage, ChangeRecord]:
        pstate = self.provider(provider)
        box = pstate.require_mailbox(address)
        threading = mime.thread_headers(raw)
        new_id = pstate.new_message_id()
        if thread_id is None:
            thread_id = self.thread_for(box, threading) or pstate.new_thread_id(new_id)
        message = StoredMessage(
            id=new_id,
            raw=raw,
            folder=folder,
            received_ms=self.now_ms() if received_ms is None else received_ms,
            seq=0,
            thread_id=thread_id,
            message_id_header=threading.message_id,
            is_read=(folder != "inbox") if is_read is None else is_read,
            history_id=0,
        )
        if provider == "gmail":
            message.gmail_snippet = (raw, mime.gmail_snippet(mime.Parsed(raw)))
        record = box.add(message, in_change_feed=not self.loses_change(provider, box, folder))
        box.trim_log(self.max_log_records)
        if notify:
            self.notify(provider, box, [record])
        return message, record

    def loses_change(self, provider: Provider, box: Mailbox, folder: Folder) -> bool:
        """Whether a message arriving in `folder` now is one a `skip_changes` fault takes
        out of the change feed (drafts do not count: they are not mail arriving)."""
        if folder == "drafts":
            return False
        return self.provider(provider).take_fault("skip_changes", box.address) is not None

    def delete_message(self, provider: Provider, address: str, message_id: str) -> bool:
        box = self.provider(provider).mailbox(address, create=False)
        record = box.remove(message_id) if box else None
        if box is None or record is None:
            return False
        self.notify(provider, box, [record])
        return True

    def record_sent(
        self,
        provider: Provider,
        box: Mailbox,
        raw: bytes,
        *,
        thread_id: str | None = None,
        keep_in_sent_folder: bool = True,
    ) -> StoredMessage | None:
        """What the service sent: the `/sent` log, and (usually) the SENT folder."""
        message: StoredMessage | None = None
        if keep_in_sent_folder:
            message, _ = self.seed_message(
                provider, box.address, raw, folder="sent", thread_id=thread_id, is_read=True
            )
            message.sent_ms = message.received_ms
        sent_id = message.id if message else self.provider(provider).new_message_id()
        box.sent_log.append((sent_id, raw))
        return message

    @staticmethod
    def thread_for(box: Mailbox, threading: mime.ThreadHeaders) -> str | None:
        for reference in threading.references:
            thread = box.thread_by_message_id.get(reference)
            if thread:
                return thread
        return None

    # -- push delivery

    def notify(self, provider: Provider, box: Mailbox, records: list[ChangeRecord]) -> None:
        """Fire the pushes a real provider would send for these changes (in the background),
        less those a `drop_push` fault swallows."""
        if not records or self.config is None:
            return
        pstate = self.provider(provider)
        if provider == "gmail":
            push = gmail_push(self.config, box, records, self.clock())
            pushes = [] if push is None else [push]
        else:
            subscriptions = pstate.subscriptions.values()
            pushes = graph_pushes(self.tenant_id, subscriptions, box, records, self.clock())
        for push in pushes:
            if pstate.take_fault("drop_push", box.address) is None:
                self.pushes.send(push)

    async def drain_pushes(self) -> None:
        """Wait until every scheduled push has been delivered (or has failed)."""
        await self.pushes.drain()
