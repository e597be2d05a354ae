"""The provider protocol and the neutral types domain code sees.

Only `providers/gmail` and `providers/graph` know the wire formats; the sync engine, the send
service and the OAuth callback use these types and the typed errors in `errors.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

ProviderName = Literal["gmail", "outlook"]
Folder = Literal["inbox", "sent"]


@dataclass(frozen=True)
class TokenSet:
    """An OAuth token pair. Its repr never shows the tokens."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scope: str | None = None

    def __repr__(self) -> str:
        has_refresh = self.refresh_token is not None
        return (
            f"TokenSet(expires_at={self.expires_at.isoformat()}, scope={self.scope!r}, "
            f"has_refresh_token={has_refresh})"
        )

    __str__ = __repr__

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.expires_at - now <= timedelta(seconds=seconds)


@runtime_checkable
class TokenSource(Protocol):
    """Where a driver gets its access token.

    The driver calls `access_token()` before each request. On a 401 it calls `refresh()`
    once (which must force a refresh and return the new access token) and retries the
    request once; a second 401 becomes `AuthRevoked`. Implementations should coalesce
    concurrent refreshes (several requests may see the same 401).
    """

    async def access_token(self) -> str: ...

    async def refresh(self) -> str: ...


@dataclass(frozen=True)
class MailboxProfile:
    email_address: str
    display_name: str | None
    cursor_hint: str | None
    """Gmail: the mailbox historyId now (a starting cursor). Graph: None (delta per folder)."""


@dataclass(frozen=True)
class MessageRef:
    """A message seen in a listing. The optional hints let `get_messages` fill in what the
    raw MIME alone cannot tell (Graph `$value` carries no folder or received time)."""

    id: str
    thread_id: str | None
    folder: Folder | None = None
    received_at: datetime | None = None


def index_refs(
    ids: Sequence[str | MessageRef],
) -> tuple[list[str], dict[str, MessageRef | None]]:
    """The ids in the order asked, and each distinct id's ref (None when given as a str)."""
    refs: dict[str, MessageRef | None] = {}
    order: list[str] = []
    for item in ids:
        if isinstance(item, MessageRef):
            refs[item.id] = item
            order.append(item.id)
        else:
            refs.setdefault(item, None)
            order.append(item)
    return order, refs


@dataclass(frozen=True)
class ChangePage:
    """One page of a listing.

    `next_page_token` is passed back as `page_token` to get the next page; `new_cursor` is set
    on the last page only (Gmail: a historyId for `history.list`; Graph: the folder's
    deltaLink). Items may repeat across pages and rounds: consumers upsert by id.
    """

    added: list[MessageRef]
    deleted: list[str]
    next_page_token: str | None
    new_cursor: str | None


@dataclass(frozen=True)
class RemoteMessage:
    id: str
    thread_id: str | None
    internet_message_id: str | None
    folder: Folder
    received_at: datetime
    raw: bytes = field(repr=False)
    """The RFC 822 bytes as the provider stores them (Gmail format=raw, Graph `$value`)."""
    size: int
    label_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutgoingMessage:
    mime: bytes = field(repr=False)
    """A complete RFC 822 message (To/Cc/Bcc headers decide the recipients)."""
    thread_id: str | None = None
    reply_to_provider_id: str | None = None
    size: int = 0

    def __post_init__(self) -> None:
        if not self.size:
            object.__setattr__(self, "size", len(self.mime))


@dataclass(frozen=True)
class SentMessage:
    provider_message_id: str
    thread_id: str | None
    internet_message_id: str | None


@dataclass(frozen=True)
class PushChannel:
    """A push registration: Graph subscription id, or the Pub/Sub topic for a Gmail watch."""

    channel_id: str
    expires_at: datetime
    resource_cursor: str | None = None
    """Gmail: the historyId returned by `watch`. Graph: None."""


@dataclass(frozen=True)
class SyncScope:
    """A part of a mailbox that one cursor position covers.

    `folder` None: the whole mailbox (a Gmail historyId spans every label); a folder: that
    folder only (a Graph deltaLink belongs to one folder). `key` names the position in the
    stored `SyncCursor`; the drivers choose it and nothing else reads it.
    """

    key: str
    folder: Folder | None


@dataclass(frozen=True)
class SyncCursor:
    """Where the last sync of a mailbox stopped: one opaque position per `SyncScope`.

    Stored as the JSON object `{scope.key: position}` (the account's `sync_cursor`), so
    domain code saves and loads it without knowing what a position looks like.
    """

    positions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any] | None) -> SyncCursor:
        return cls({str(k): str(v) for k, v in (stored or {}).items() if v})

    def to_stored(self) -> dict[str, str]:
        return dict(self.positions)

    def position(self, scope: SyncScope) -> str | None:
        return self.positions.get(scope.key)

    def moved(self, scope: SyncScope, position: str | None) -> SyncCursor:
        """This cursor with `scope` at `position` (None: the scope starts afresh)."""
        positions = {k: v for k, v in self.positions.items() if k != scope.key}
        if position:
            positions[scope.key] = position
        return SyncCursor(positions)


@dataclass(frozen=True)
class PushNotice:
    """One push notification, reduced to what sync needs.

    A notice names its mailbox by `address` (Gmail: every account connected with it) or by
    `channel_id` (the push channel we registered: a Graph subscription). `client_state`
    is the secret echoed back when the channel was registered with one; `position` where
    the change feed stood (a notice the stored cursor has passed announces nothing new).
    `sync`: mail may have changed; `renew_channel`: the channel needs registering again.
    """

    address: str | None = None
    channel_id: str | None = None
    client_state: str | None = None
    position: str | None = None
    sync: bool = True
    renew_channel: bool = False


class InvalidPush(ValueError):
    """A push body that is not the provider's notification format."""


class PushFormat(Protocol):
    """How one provider's push notifications read (the webhook endpoints use it)."""

    def parse_push(self, body: bytes) -> list[PushNotice]:
        """The notices in a push body; raises InvalidPush when it is not one."""
        ...

    def is_news(self, notice: PushNotice, cursor: SyncCursor) -> bool:
        """False when the stored cursor already covers what the notice announces."""
        ...


class MailProvider(Protocol):
    """One connected mailbox at one provider. Every method may raise the errors in
    `app.providers.errors`; nothing else escapes a driver."""

    @property
    def name(self) -> ProviderName: ...

    @property
    def sync_scopes(self) -> tuple[SyncScope, ...]:
        """The parts of the mailbox a sync walks, each with its own cursor position."""
        ...

    @property
    def max_send_bytes(self) -> int:
        """The largest RFC 822 message `send` accepts; larger raises MessageTooLarge."""
        ...

    @property
    def needs_reply_references(self) -> bool:
        """Whether a reply joins its thread only when it carries the original's References
        (Gmail threads by headers; Graph replies within the original's conversation)."""
        ...

    async def get_profile(self) -> MailboxProfile: ...

    async def list_messages(
        self, folder: Folder, since: datetime, page_token: str | None = None
    ) -> ChangePage:
        """Windowed listing of a folder (initial sync, or the fallback after CursorExpired).

        Gmail: the cursor is mailbox-wide; the `new_cursor` of the first folder listed is the
        one to keep. Graph: `new_cursor` is that folder's deltaLink.
        """
        ...

    def list_message_ids(self, folder: Folder, since: datetime) -> AsyncIterator[list[MessageRef]]:
        """Every message of `folder` received since `since`, page by page, by the
        provider's cheapest listing (ids, no content; Gmail `messages.list`, Graph
        `$select`): what reconciliation compares with the stored ids. Not a change feed:
        no cursor, and nothing the feed may have lost is missing from it."""
        ...

    async def still_in_mailbox(self, ids: Sequence[str]) -> set[str]:
        """Of stored messages that `list_message_ids` no longer names in the window, those
        that a sync would still keep (left Inbox/Sent without leaving the mailbox as the
        change feed sees it, e.g. archived in Gmail). Reconciliation removes the rest."""
        ...

    async def list_changes(
        self, cursor: str, page_token: str | None = None, folder: Folder | None = None
    ) -> ChangePage:
        """Changes since `cursor` (Gmail historyId, mailbox-wide; Graph deltaLink of
        `folder`). Raises CursorExpired when the provider no longer knows the cursor."""
        ...

    async def get_messages(
        self, ids: Sequence[str | MessageRef], folder: Folder | None = None
    ) -> list[RemoteMessage | None]:
        """Raw messages, in the order asked; None for one that no longer exists.
        Exactly one provider fetch per message (plus retries of throttled ones)."""
        ...

    async def get_attachment(self, message_id: str, attachment_id: str) -> bytes: ...

    async def send(self, message: OutgoingMessage) -> SentMessage: ...

    async def watch(self, callback_url: str, client_state: str) -> PushChannel: ...

    async def renew(self, channel: PushChannel) -> PushChannel: ...

    async def stop(self, channel: PushChannel) -> None: ...

    async def revoke(self, refresh_token: str) -> None: ...

    async def aclose(self) -> None:
        """Close the HTTP client if the driver created it (an injected one is left open)."""
        ...


class OAuthClient(Protocol):
    """Authorization-code + PKCE (S256) client for one provider."""

    @property
    def name(self) -> ProviderName: ...

    redirect_uri: str

    def authorization_url(
        self, state: str, code_verifier: str, login_hint: str | None = None
    ) -> str: ...

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet: ...

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Raises AuthRevoked on invalid_grant. Google keeps the old refresh token (it omits
        one on refresh); Microsoft rotates it: persist the returned TokenSet atomically."""
        ...

    async def revoke(self, token: str) -> None: ...

    async def aclose(self) -> None: ...
