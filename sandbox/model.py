"""The sandbox's data: mailboxes with their indexes and change logs, grants, tokens, codes,
faults, subscriptions and upload sessions. Plain types with no behaviour beyond keeping
themselves consistent; `state.SandboxState` owns them and the routes read them.

Large mailboxes (benchmarks seed 20,000 messages) stay cheap: raw bytes are stored once,
listings walk sorted indexes with `bisect`, and every page token is a position in an index
or a log, never an offset into a freshly filtered copy.
"""

from __future__ import annotations

import bisect
import secrets
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

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
        "skip_changes",
        "drop_push",
    }
)
TOKEN_MARKER = "SANDBOXTOKEN"
AUTH_CODE_LIFETIME_SECONDS = 600
_GMAIL_FIRST_HISTORY_ID = 100_000

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

    def _record(
        self, kind: ChangeKind, message: StoredMessage, *, in_change_feed: bool = True
    ) -> ChangeRecord:
        self.seq += 1
        labels = tuple(message.gmail_labels)
        record = ChangeRecord(self.seq, kind, message.id, message.thread_id, message.folder, labels)
        if in_change_feed:
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

    def add(self, message: StoredMessage, *, in_change_feed: bool = True) -> ChangeRecord:
        """`in_change_feed=False` (the `skip_changes` fault): the message is listed and
        fetched as usual, but its addition never shows in history / delta change rounds,
        while the cursor still moves past it, as when a provider's change feed loses one."""
        message.seq = self.seq + 1
        message.history_id = message.seq
        self.messages[message.id] = message
        self._index_add(message)
        if message.message_id_header:
            self.thread_by_message_id.setdefault(message.message_id_header, message.thread_id)
        return self._record("added", message, in_change_feed=in_change_feed)

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
        self,
        message: StoredMessage,
        folder: Folder,
        *,
        received_ms: int | None = None,
        in_change_feed: bool = True,
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
        return [removed, self._record("added", message, in_change_feed=in_change_feed)]

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


@dataclass(slots=True)
class ResumableUpload:
    """A Gmail resumable upload of a message to send: the upload id is its credential."""

    token: Token
    thread_id: str | None
    total: int | None
    data: bytearray = field(default_factory=bytearray)
