"""In-memory state of the provider sandbox: mailboxes, tokens, faults, subscriptions, counters.

Everything lives in one `SandboxState`, split per provider (`state.gmail`, `state.outlook`)
because a Gmail mailbox and an Outlook mailbox with the same address are different things.
All mutations are synchronous (no `await` in the middle), so on a single event loop they
are atomic without locks; only push delivery awaits, and it is serialised by one lock.

Large mailboxes (benchmarks seed 20,000 messages) stay cheap: raw bytes are stored once,
only the header block is parsed at seed time (for threading), full parses go through a
small LRU cache, listings walk sorted indexes with `bisect`, and every page token is a
position in an index or a log, never an offset into a freshly filtered copy.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any, Literal

import httpx

from sandbox import mime

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger("sandbox")

Provider = Literal["gmail", "outlook"]
PROVIDERS: tuple[Provider, ...] = ("gmail", "outlook")
Folder = Literal["inbox", "sent", "drafts"]
ChangeKind = Literal["added", "updated", "deleted"]

DEFAULT_MAILBOX: dict[Provider, str] = {
    "gmail": "sandbox.user@example.com",
    "outlook": "sandbox.user@example.onmicrosoft.com",
}
FAULT_KINDS = frozenset(
    {
        "rate_limit",
        "server_error",
        "expire_access_token",
        "revoke_refresh_token",
        "expire_cursor",
        "delete_before_get",
        "duplicate_page",
        "slow",
    }
)
TOKEN_MARKER = "SANDBOXTOKEN"
AUTH_CODE_LIFETIME_SECONDS = 600
_GMAIL_FIRST_ID = 0x18C1F0A000000000
_GMAIL_FIRST_HISTORY_ID = 100_000
_PARSE_CACHE_SIZE = 256

PushClientFactory = Callable[[], httpx.AsyncClient]
IndexEntry = tuple[int, int, str]
"""(received epoch ms, add sequence, message id): sorts oldest first, ties by arrival."""


def graph_user_id(address: str) -> str:
    """The stable Graph user id (a GUID) of a sandbox mailbox."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-user:{address}"))


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class StoredMessage:
    id: str
    raw: bytes
    folder: Folder
    received_ms: int
    seq: int
    """Change sequence of the last time it entered its current folder (index tie-break)."""
    thread_id: str
    message_id_header: str | None
    is_read: bool
    history_id: int
    change_key: int = 1
    draft: dict[str, Any] | None = None
    """Graph drafts: the JSON they are rendered from (the raw is re-rendered on change)."""
    sent_ms: int | None = None
    gmail_snippet: tuple[bytes, str] | None = field(default=None, repr=False)
    """(the raw it was made from, Gmail's snippet): computed when the message is stored,
    as Gmail does, so rendering `format=raw` never parses the message again."""

    @property
    def index_entry(self) -> IndexEntry:
        return (self.received_ms, self.seq, self.id)

    @property
    def gmail_labels(self) -> list[str]:
        labels = {"inbox": ["INBOX"], "sent": ["SENT"], "drafts": ["DRAFT"]}[self.folder]
        return [*labels, "UNREAD"] if not self.is_read else list(labels)


@dataclass(slots=True, frozen=True)
class ChangeRecord:
    seq: int
    kind: ChangeKind
    message_id: str
    thread_id: str
    folder: Folder
    labels: tuple[str, ...]


@dataclass(slots=True)
class MailboxStats:
    calls: int = 0
    quota_units: int = 0
    concurrency_violations: int = 0
    quota_violations: int = 0
    max_concurrency: int = 0
    in_flight: int = 0
    window: deque[tuple[float, int]] = field(default_factory=deque)
    window_units: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "quota_units": self.quota_units,
            "concurrency_violations": self.concurrency_violations,
            "quota_violations": self.quota_violations,
            "max_concurrency": self.max_concurrency,
            "in_flight": self.in_flight,
        }


@dataclass(slots=True)
class GmailWatch:
    topic_name: str
    label_ids: tuple[str, ...]
    include: bool
    expiration_ms: int

    def matches(self, labels: Iterable[str]) -> bool:
        if not self.label_ids:
            return True
        hit = any(label in self.label_ids for label in labels)
        return hit if self.include else not hit


class Mailbox:
    """One provider mailbox: messages, sorted indexes, the change log and the sent log."""

    def __init__(self, provider: Provider, address: str) -> None:
        self.provider = provider
        self.address = address
        self.generation = secrets.token_hex(4)
        """Changes on reset, so cursors from an earlier life of the mailbox are refused."""
        self.messages: dict[str, StoredMessage] = {}
        self.folder_index: dict[Folder, list[IndexEntry]] = {"inbox": [], "sent": [], "drafts": []}
        self.all_index: list[IndexEntry] = []
        self.seq = _GMAIL_FIRST_HISTORY_ID if provider == "gmail" else 0
        self.log: list[ChangeRecord] = []
        self.folder_logs: dict[Folder, list[ChangeRecord]] = {"inbox": [], "sent": [], "drafts": []}
        self.log_floor = self.seq
        """Cursors (history ids, delta tokens) below this sequence have expired."""
        self.thread_by_message_id: dict[str, str] = {}
        self.sent_log: list[tuple[str, bytes]] = []
        self.watch: GmailWatch | None = None
        self.stats = MailboxStats()

    # -- reads

    def get(self, message_id: str) -> StoredMessage | None:
        return self.messages.get(message_id)

    def index_for(self, folder: Folder | None) -> list[IndexEntry]:
        return self.all_index if folder is None else self.folder_index[folder]

    @property
    def thread_count(self) -> int:
        return len({m.thread_id for m in self.messages.values()})

    # -- writes (each returns the change it recorded)

    def _record(self, kind: ChangeKind, message: StoredMessage) -> ChangeRecord:
        self.seq += 1
        labels = tuple(message.gmail_labels)
        record = ChangeRecord(self.seq, kind, message.id, message.thread_id, message.folder, labels)
        self.log.append(record)
        self.folder_logs[message.folder].append(record)
        return record

    def _index_add(self, message: StoredMessage) -> None:
        bisect.insort(self.folder_index[message.folder], message.index_entry)
        bisect.insort(self.all_index, message.index_entry)

    def _index_remove(self, message: StoredMessage) -> None:
        for index in (self.folder_index[message.folder], self.all_index):
            position = bisect.bisect_left(index, message.index_entry)
            if position < len(index) and index[position] == message.index_entry:
                del index[position]

    def add(self, message: StoredMessage) -> ChangeRecord:
        message.seq = self.seq + 1
        message.history_id = message.seq
        self.messages[message.id] = message
        self._index_add(message)
        if message.message_id_header:
            self.thread_by_message_id.setdefault(message.message_id_header, message.thread_id)
        return self._record("added", message)

    def remove(self, message_id: str) -> ChangeRecord | None:
        message = self.messages.pop(message_id, None)
        if message is None:
            return None
        self._index_remove(message)
        return self._record("deleted", message)

    def update(self, message: StoredMessage) -> ChangeRecord:
        """Record an in-place change (read flag, draft edit) of a message."""
        message.change_key += 1
        record = self._record("updated", message)
        message.history_id = record.seq
        return record

    def move(
        self, message: StoredMessage, folder: Folder, *, received_ms: int | None = None
    ) -> list[ChangeRecord]:
        """Move keeping the id (Graph immutable ids): a deletion here, an addition there."""
        self._index_remove(message)
        removed = self._record("deleted", message)
        message.folder = folder
        if received_ms is not None:
            message.received_ms = received_ms
        message.seq = self.seq + 1
        message.history_id = message.seq
        message.change_key += 1
        self._index_add(message)
        return [removed, self._record("added", message)]

    def trim_log(self, max_records: int) -> None:
        """Forget the oldest changes; cursors older than what is kept expire."""
        if len(self.log) <= max_records:
            return
        drop = len(self.log) - max_records * 3 // 4
        self.log_floor = self.log[drop - 1].seq
        del self.log[:drop]
        for folder_log in self.folder_logs.values():
            cut = bisect.bisect_right(folder_log, self.log_floor, key=lambda r: r.seq)
            del folder_log[:cut]

    def expire_cursors(self) -> None:
        """Every cursor handed out so far dies; the next one (profile, new delta) is fine."""
        self.seq += 1
        self.log_floor = self.seq


# --------------------------------------------------------------------------- tokens and faults


@dataclass(slots=True)
class Grant:
    """One consent: the refresh tokens and access tokens it produced share its fate."""

    id: str
    provider: Provider
    mailbox: str
    client_id: str
    scope: str
    revoked: bool = False
    refresh_revoked: bool = False


@dataclass(slots=True)
class Token:
    value: str
    kind: Literal["access", "refresh"]
    grant: Grant
    expires_at: float | None = None
    dead: bool = False


@dataclass(slots=True)
class AuthCode:
    code: str
    mailbox: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    issued_at: float
    offline: bool
    used: bool = False


@dataclass(slots=True)
class Fault:
    kind: str
    remaining: int
    mailbox: str | None = None
    seconds: float = 0.5
    retry_after: float = 1.0
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.remaining,
            "mailbox": self.mailbox,
            "seconds": self.seconds,
            "retry_after": self.retry_after,
        }


@dataclass(slots=True)
class Subscription:
    id: str
    mailbox: str
    resource: str
    folder: Folder | None
    change_types: frozenset[str]
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration: float
    created_at: float


@dataclass(slots=True)
class UploadSession:
    id: str
    mailbox: str
    message_id: str
    name: str
    size: int
    content_type: str
    is_inline: bool
    content_id: str | None
    expires_at: float
    received: bytearray = field(default_factory=bytearray)


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
        self.resumable_uploads: dict[str, Any] = {}
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

    def has_fault(self, kind: str, mailbox: str | None) -> bool:
        return any(
            f.kind == kind and (f.mailbox is None or f.mailbox == mailbox) for f in self.faults
        )


# --------------------------------------------------------------------------- the sandbox


class SandboxState:
    """Everything the sandbox knows. Knobs are plain attributes and may be changed live.

    - `push_client_factory`: returns the `httpx.AsyncClient` used for one push delivery or
      validation handshake (it is closed afterwards); default a real client.
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
        self.push_client_factory: PushClientFactory = push_client_factory or httpx.AsyncClient
        self.clock = clock
        self.access_token_lifetime = access_token_lifetime
        self.outlook_old_refresh_tokens_valid = outlook_old_refresh_tokens_valid
        self.max_log_records = max_log_records
        self.latency_seconds = latency_seconds
        self.gmail_max_concurrency = gmail_max_concurrency
        self.gmail_max_upload_bytes = gmail_max_upload_bytes
        self.graph_max_request_bytes = graph_max_request_bytes
        self.graph_max_upload_session_bytes = graph_max_upload_session_bytes
        self.validation_timeout_seconds = validation_timeout_seconds
        self.settings: Settings | None = None
        self.gmail = ProviderState("gmail")
        self.outlook = ProviderState("outlook")
        self.tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, "sandbox.tenant"))
        self.application_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, "sandbox.application"))
        self.pushes_sent = 0
        self.pushes_failed = 0
        self._push_tasks: set[asyncio.Task[None]] = set()
        self._push_lock: asyncio.Lock | None = None

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
        record = box.add(message)
        box.trim_log(self.max_log_records)
        if notify:
            self.notify(provider, box, [record])
        return message, record

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
        """Fire the pushes a real provider would send for these changes (in the background)."""
        from sandbox import push  # the push module renders wire payloads

        if not records or self.settings is None:
            return
        if provider == "gmail":
            push.notify_gmail(self, box, records)
        else:
            push.notify_graph(self, box, records)

    def spawn_push(self, deliver: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # seeded from sync code: nobody can receive a push anyway
            return

        async def run() -> None:
            if self._push_lock is None:
                self._push_lock = asyncio.Lock()
            async with self._push_lock:  # FIFO: pushes leave in the order changes happened
                await deliver()

        task = loop.create_task(run())
        self._push_tasks.add(task)
        task.add_done_callback(self._push_tasks.discard)

    async def drain_pushes(self) -> None:
        """Wait until every scheduled push has been delivered (or has failed)."""
        while self._push_tasks:
            await asyncio.gather(*list(self._push_tasks), return_exceptions=True)
