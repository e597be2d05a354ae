"""The Gmail driver: the Gmail API (users/me) behind the MailProvider protocol."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from app.config import Settings
from app.providers.base import (
    ChangePage,
    Folder,
    MailboxProfile,
    MessageRef,
    OutgoingMessage,
    ProviderName,
    PushChannel,
    RemoteMessage,
    SentMessage,
    SyncScope,
    TokenSource,
    index_refs,
)
from app.providers.errors import (
    AuthRevoked,
    CursorExpired,
    MessageTooLarge,
    NotFound,
    ProviderRequestError,
    ProviderUnavailable,
    RateLimited,
)
from app.providers.gmail.batch import (
    BatchPart,
    build_batch_body,
    message_resource,
    new_boundary,
    parse_batch_response,
)
from app.providers.gmail.headers import message_id_header
from app.providers.gmail.quota import UNITS, UNITS_STOP, UNITS_WATCH, UserQuota
from app.providers.http import (
    CALLS,
    ProviderHttp,
    RetryPolicy,
    error_for,
    error_info_from_json,
    retry_after_of,
    retry_kind,
)
from app.providers.oauth import GoogleOAuthClient
from app.providers.rfc822 import b64url_decode, b64url_encode, date_of, message_id_of

T = TypeVar("T")

PROVIDER: ProviderName = "gmail"
LIST_PAGE_SIZE = 500
# messages.send: the JSON {raw} form is fine up to a few MB; above, the media upload.
SIMPLE_SEND_MAX_BYTES = 5 * 1024 * 1024
# The upload endpoint's maxSize (36700160 bytes).
MAX_SEND_BYTES = 35 * 1024 * 1024
_LABEL_FOLDERS: dict[str, Folder] = {"SENT": "sent", "INBOX": "inbox"}
# history.list answers 404 for a startHistoryId that is too old and 400 with these codes for
# one it cannot use: both mean "sync the window afresh".
_INVALID_START_CODES = frozenset(
    {"failedPrecondition", "invalidArgument", "FAILED_PRECONDITION", "INVALID_ARGUMENT"}
)
# A historyId spans the whole mailbox: one cursor position covers Inbox and Sent.
MAILBOX_SCOPE = SyncScope(key="history_id", folder=None)


def _folder_of(labels: Sequence[str] | None) -> Folder | None:
    """Sent wins over Inbox (a message to oneself); None for drafts, spam, archive only."""
    if not labels:
        return None
    for label, folder in _LABEL_FOLDERS.items():
        if label in labels:
            return folder
    return None


def _from_epoch_ms(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


class GmailProvider:
    name: ClassVar[ProviderName] = PROVIDER
    sync_scopes: ClassVar[tuple[SyncScope, ...]] = (MAILBOX_SCOPE,)
    max_send_bytes: ClassVar[int] = MAX_SEND_BYTES
    needs_reply_references: ClassVar[bool] = True

    def __init__(
        self,
        settings: Settings,
        token_source: TokenSource,
        http_client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.http = ProviderHttp.create(PROVIDER, settings, token_source, http_client, policy)
        self.token_source = token_source
        self._users = f"{settings.gmail_api_base.rstrip('/')}/users/me"
        # Inner batch requests name the path from the host, as Google's clients do.
        self._batch_prefix = urlsplit(settings.gmail_api_base).path.rstrip("/")
        self._batch_size = max(1, min(100, settings.gmail_batch_size))
        self._oauth = GoogleOAuthClient(settings, http_client=self.http.client, policy=policy)
        self.quota = UserQuota(settings.gmail_user_units_per_minute)

    def __repr__(self) -> str:
        return "GmailProvider()"

    async def aclose(self) -> None:
        await self.http.aclose()

    # ------------------------------------------------------------------ reading

    async def get_profile(self) -> MailboxProfile:
        await self.quota.spend(UNITS["profile"])
        data = await self.http.json("GET", f"{self._users}/profile", template="GET /profile")
        history_id = data.get("historyId")
        return MailboxProfile(
            email_address=str(data.get("emailAddress") or ""),
            display_name=None,
            cursor_hint=str(history_id) if history_id is not None else None,
        )

    async def list_messages(
        self, folder: Folder, since: datetime, page_token: str | None = None
    ) -> ChangePage:
        # The cursor is the profile historyId read *before* the first page, carried inside
        # our page token, so changes made while listing are replayed by history.list.
        if page_token:
            start_history, _, gmail_token = page_token.partition("|")
        else:
            start_history = (await self.get_profile()).cursor_hint or ""
            gmail_token = ""
        refs, next_token = await self._list_page(folder, since, gmail_token or None)
        return ChangePage(
            added=refs,
            deleted=[],
            next_page_token=f"{start_history}|{next_token}" if next_token else None,
            new_cursor=None if next_token else (start_history or None),
        )

    async def list_message_ids(
        self, folder: Folder, since: datetime
    ) -> AsyncIterator[list[MessageRef]]:
        """`messages.list` pages (ids and thread ids only, 5 units a page of 500)."""
        token: str | None = None
        while True:
            refs, token = await self._list_page(folder, since, token)
            yield refs
            if not token:
                return

    async def still_in_mailbox(self, ids: Sequence[str]) -> set[str]:
        """Archiving only takes the INBOX label off, and history (messageAdded/Deleted)
        never removes archived mail from our store: so a message still exists here unless
        it 404s or sits in TRASH or SPAM. `messages.get` (minimal, 5 units each), batched
        like the sync's fetches."""
        unique = list(dict.fromkeys(ids))
        kept: set[str] = set()
        for start in range(0, len(unique), self._batch_size):
            found = await self._batch_get(
                unique[start : start + self._batch_size], "minimal", lambda _id, part: part.json()
            )
            for message_id, data in found.items():
                labels = set(data.get("labelIds") or []) if isinstance(data, dict) else None
                if labels is not None and not {"TRASH", "SPAM"} & labels:
                    kept.add(message_id)
        return kept

    async def _list_page(
        self, folder: Folder, since: datetime, gmail_token: str | None
    ) -> tuple[list[MessageRef], str | None]:
        """One `messages.list` page of the folder in the window, and the next page token."""
        label = "sent" if folder == "sent" else "inbox"
        params: dict[str, str | int] = {
            "q": f"after:{int(since.timestamp())} in:{label}",
            "maxResults": LIST_PAGE_SIZE,
        }
        if gmail_token:
            params["pageToken"] = gmail_token
        await self.quota.spend(UNITS["list"])
        data = await self.http.json(
            "GET", f"{self._users}/messages", template="GET /messages", params=params
        )
        refs: dict[str, MessageRef] = {}
        for item in data.get("messages") or []:
            if isinstance(item, dict) and item.get("id"):
                refs[item["id"]] = MessageRef(
                    id=str(item["id"]), thread_id=item.get("threadId"), folder=folder
                )
        next_token = data.get("nextPageToken")
        return list(refs.values()), str(next_token) if next_token else None

    async def list_changes(
        self, cursor: str, page_token: str | None = None, folder: Folder | None = None
    ) -> ChangePage:
        params: list[tuple[str, str]] = [
            ("startHistoryId", cursor),
            ("historyTypes", "messageAdded"),
            ("historyTypes", "messageDeleted"),
            ("maxResults", str(LIST_PAGE_SIZE)),
        ]
        if page_token:
            params.append(("pageToken", page_token))
        await self.quota.spend(UNITS["history"])
        try:
            data = await self.http.json(
                "GET", f"{self._users}/history", template="GET /history", params=params
            )
        except NotFound:
            raise CursorExpired(
                "history cursor expired", provider=PROVIDER, status=404, code="notFound"
            ) from None
        except ProviderRequestError as exc:
            if exc.status != 400 or exc.code not in _INVALID_START_CODES:
                raise
            raise CursorExpired(
                "history cursor invalid", provider=PROVIDER, status=400, code=exc.code
            ) from None
        added: dict[str, MessageRef] = {}
        deleted: dict[str, None] = {}
        for record in data.get("history") or []:
            for item in record.get("messagesAdded") or []:
                message = item.get("message") or {}
                message_id = message.get("id")
                if not message_id:
                    continue
                labels = message.get("labelIds")
                message_folder = _folder_of(labels) if labels else folder or "inbox"
                if message_folder is None or (folder and message_folder != folder):
                    continue
                deleted.pop(message_id, None)
                added[message_id] = MessageRef(
                    id=message_id, thread_id=message.get("threadId"), folder=message_folder
                )
            for item in record.get("messagesDeleted") or []:
                message_id = (item.get("message") or {}).get("id")
                if message_id:
                    added.pop(message_id, None)
                    deleted[message_id] = None
        next_token = data.get("nextPageToken")
        history_id = data.get("historyId")
        return ChangePage(
            added=list(added.values()),
            deleted=list(deleted),
            next_page_token=next_token or None,
            new_cursor=None if next_token or history_id is None else str(history_id),
        )

    async def get_messages(
        self, ids: Sequence[str | MessageRef], folder: Folder | None = None
    ) -> list[RemoteMessage | None]:
        order, refs = index_refs(ids)
        unique = list(refs)
        results: dict[str, RemoteMessage | None] = {}
        for start in range(0, len(unique), self._batch_size):
            chunk = unique[start : start + self._batch_size]
            results.update(await self._fetch_batch(chunk, refs, folder))
        return [results.get(message_id) for message_id in order]

    async def _fetch_batch(
        self,
        ids: list[str],
        refs: dict[str, MessageRef | None],
        folder: Folder | None,
    ) -> dict[str, RemoteMessage | None]:
        """One batch of messages.get(format=raw), as RemoteMessages; 404 → None."""

        def read(message_id: str, part: BatchPart) -> RemoteMessage:
            data, raw = message_resource(part)
            return self._remote_message(data, refs.get(message_id), folder, raw)

        return await self._batch_get(ids, "raw", read)

    async def _batch_get(
        self, ids: list[str], fmt: str, read: Callable[[str, BatchPart], T]
    ) -> dict[str, T | None]:
        """One batch of messages.get(format=`fmt`), each answer through `read`; retries only
        the parts that failed with 429, a rate-limit 403 or 5xx (and 401 parts once after a
        refresh); 404 → None."""
        policy = self.http.policy
        results: dict[str, T | None] = {}
        pending = ids
        attempt = 0
        refreshed = False
        while pending:
            attempt += 1
            by_content_id = {f"item-{i}": message_id for i, message_id in enumerate(pending)}
            boundary = new_boundary()
            body = build_batch_body(
                [
                    (content_id, f"GET {self._message_path(message_id)}?format={fmt}")
                    for content_id, message_id in by_content_id.items()
                ],
                boundary,
            )
            await self.quota.spend(UNITS["get"] * len(pending))
            response = await self.http.request(
                "POST",
                self.settings.gmail_batch_url,
                template=f"POST /batch (messages.get {fmt})",
                content=body,
                headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
                idempotent=True,
            )
            try:
                parts = parse_batch_response(
                    response.headers.get("content-type", ""), response.content
                )
            except ValueError:
                parts = []
            by_part = {part.content_id: part for part in parts}
            if not set(by_content_id) & set(by_part) and len(parts) == len(pending):
                by_part = dict(zip(by_content_id, parts, strict=True))  # ids not echoed

            retry: list[str] = []
            unauthorized: list[str] = []
            rate_limited = False
            retry_after: float | None = None
            for content_id, message_id in by_content_id.items():
                part = by_part.get(content_id)
                if part is None:
                    CALLS.record(PROVIDER, "missing", kind="message_fetch")
                    retry.append(message_id)
                    continue
                CALLS.record(PROVIDER, part.status, kind="message_fetch")
                if part.status == 200:
                    results[message_id] = read(message_id, part)
                elif part.status == 404:
                    results[message_id] = None
                elif part.status == 401:
                    unauthorized.append(message_id)
                else:
                    info = error_info_from_json(part.json())
                    kind = retry_kind(part.status, info)
                    if kind is None:
                        raise error_for(PROVIDER, part.status, info)
                    retry.append(message_id)
                    rate_limited = rate_limited or kind == "rate_limited"
                    part_retry_after = retry_after_of(part.headers, info)
                    if part_retry_after is not None:
                        retry_after = max(retry_after or 0.0, part_retry_after)

            if unauthorized:
                if refreshed:
                    raise AuthRevoked(
                        "access token rejected after refresh", provider=PROVIDER, status=401
                    )
                refreshed = True
                await self.token_source.refresh()
                if not retry:
                    attempt -= 1  # only auth failed: not a throttling attempt
            if retry:
                wait = policy.delay(attempt, retry_after)
                if wait is None:
                    if rate_limited:
                        raise RateLimited(
                            "batch parts still throttled",
                            retry_after=retry_after,
                            provider=PROVIDER,
                            status=429,
                        )
                    raise ProviderUnavailable(
                        "batch parts still failing", retry_after=retry_after, provider=PROVIDER
                    )
                await policy.sleep(wait)
            pending = retry + unauthorized
        return results

    def _message_path(self, message_id: str) -> str:
        return f"{self._batch_prefix}/users/me/messages/{quote(message_id, safe='')}"

    def _remote_message(
        self, data: Any, ref: MessageRef | None, folder: Folder | None, raw: bytes | None = None
    ) -> RemoteMessage:
        """`raw`: the message when `message_resource` already decoded it."""
        if not isinstance(data, dict) or not isinstance(data.get("raw"), str):
            raise ProviderRequestError("message without raw content", provider=PROVIDER, status=200)
        if raw is None:
            raw = b64url_decode(data["raw"])
        labels = [str(label) for label in data.get("labelIds") or []]
        resolved_folder = _folder_of(labels) or (ref.folder if ref else None) or folder or "inbox"
        received_at = (
            _from_epoch_ms(data.get("internalDate"))
            or (ref.received_at if ref else None)
            or date_of(raw)
            or datetime.now(UTC)
        )
        return RemoteMessage(
            id=str(data.get("id") or (ref.id if ref else "")),
            thread_id=data.get("threadId") or (ref.thread_id if ref else None),
            internet_message_id=message_id_header(raw),
            folder=resolved_folder,
            received_at=received_at,
            raw=raw,
            size=len(raw),
            label_ids=labels,
        )

    async def get_attachment(self, message_id: str, attachment_id: str) -> bytes:
        await self.quota.spend(UNITS["attachment"])
        data = await self.http.json(
            "GET",
            f"{self._users}/messages/{quote(message_id, safe='')}"
            f"/attachments/{quote(attachment_id, safe='')}",
            template="GET /messages/{id}/attachments/{id}",
        )
        if not isinstance(data.get("data"), str):
            raise ProviderRequestError("attachment without data", provider=PROVIDER, status=200)
        return b64url_decode(data["data"])

    # ------------------------------------------------------------------ sending

    async def send(self, message: OutgoingMessage) -> SentMessage:
        mime = message.mime
        size = len(mime)
        if size > MAX_SEND_BYTES:
            raise MessageTooLarge(
                f"message of {size} bytes exceeds {MAX_SEND_BYTES}",
                provider=PROVIDER,
                code="local_size_limit",
            )
        await self.quota.spend(UNITS["send"])
        if size <= SIMPLE_SEND_MAX_BYTES:
            body: dict[str, str] = {"raw": b64url_encode(mime)}
            if message.thread_id:
                body["threadId"] = message.thread_id
            data = await self.http.json(
                "POST",
                f"{self._users}/messages/send",
                template="POST /messages/send",
                json_body=body,
                idempotent=False,
            )
        else:
            data = await self._upload_send(mime, message.thread_id)
        if not isinstance(data, dict) or not data.get("id"):
            raise ProviderRequestError("send answered without an id", provider=PROVIDER)
        return SentMessage(
            provider_message_id=str(data["id"]),
            thread_id=data.get("threadId") or message.thread_id,
            internet_message_id=message_id_of(mime),
        )

    async def _upload_send(self, mime: bytes, thread_id: str | None) -> Any:
        url = f"{self.settings.gmail_upload_base.rstrip('/')}/users/me/messages/send"
        if not thread_id:
            return await self.http.json(
                "POST",
                url,
                template="POST /upload/messages/send (media)",
                params={"uploadType": "media"},
                content=mime,
                headers={"Content-Type": "message/rfc822"},
                idempotent=False,
            )
        # A media upload cannot carry threadId; the multipart upload carries it as metadata.
        boundary = f"upload_{secrets.token_hex(12)}"
        metadata = json.dumps({"threadId": thread_id}).encode()
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                metadata,
                f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n".encode(),
                mime,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        return await self.http.json(
            "POST",
            url,
            template="POST /upload/messages/send (multipart)",
            params={"uploadType": "multipart"},
            content=body,
            headers={"Content-Type": f"multipart/related; boundary={boundary}"},
            idempotent=False,
        )

    # ------------------------------------------------------------------ push

    async def watch(self, callback_url: str, client_state: str) -> PushChannel:
        """Gmail pushes through Pub/Sub: `callback_url` and `client_state` belong to the
        push subscription configured on the topic, not to this call."""
        await self.quota.spend(UNITS_WATCH)
        data = await self.http.json(
            "POST",
            f"{self._users}/watch",
            template="POST /watch",
            json_body={"topicName": self.settings.gmail_pubsub_topic, "labelIds": ["INBOX"]},
            idempotent=True,
        )
        expires_at = _from_epoch_ms(data.get("expiration"))
        if expires_at is None:
            raise ProviderRequestError("watch answered without expiration", provider=PROVIDER)
        history_id = data.get("historyId")
        return PushChannel(
            channel_id=self.settings.gmail_pubsub_topic,
            expires_at=expires_at,
            resource_cursor=str(history_id) if history_id is not None else None,
        )

    async def renew(self, channel: PushChannel) -> PushChannel:
        """Re-calling watch extends it (Google: at least every 7 days, ideally daily)."""
        return await self.watch("", "")

    async def stop(self, channel: PushChannel) -> None:
        await self.quota.spend(UNITS_STOP)
        await self.http.request("POST", f"{self._users}/stop", template="POST /stop")

    async def revoke(self, refresh_token: str) -> None:
        await self._oauth.revoke(refresh_token)
