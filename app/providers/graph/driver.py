"""The Microsoft Graph driver: Outlook mail behind the MailProvider protocol.

Every request asks for immutable ids (`Prefer: IdType="ImmutableId"`), so an id seen in a
delta page, a draft id and the id of the sent copy are the same string.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

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
    MessageTooLarge,
    NotFound,
    ProviderRequestError,
)
from app.providers.graph.mime import DraftAttachment, parse_for_graph
from app.providers.http import ProviderHttp, RetryPolicy
from app.providers.rfc822 import date_of, message_id_of

PROVIDER: ProviderName = "outlook"
IMMUTABLE_IDS = 'IdType="ImmutableId"'
DELTA_PAGE_SIZE = 1000
ID_LIST_PAGE_SIZE = 1000  # Graph's largest $top for messages
WELL_KNOWN_FOLDERS: dict[Folder, str] = {"inbox": "inbox", "sent": "sentitems"}
# Graph requests are at most 4 MB: the draft JSON (body and the small attachments that fit)
# stays under this; the rest are added afterwards.
DRAFT_REQUEST_MAX_BYTES = 3 * 1024 * 1024 + 512 * 1024
# Attachments of 3 MB or more go through an upload session, in chunks that are multiples
# of 320 KiB and under 4 MB.
UPLOAD_SESSION_MIN_BYTES = 3 * 1024 * 1024
UPLOAD_CHUNK_BYTES = 12 * 320 * 1024
# Exchange Online's ceiling for a message (tenants may set it lower; Graph then answers
# ErrorMessageSizeExceeded, mapped to MessageTooLarge too).
MAX_SEND_BYTES = 150 * 1024 * 1024
# Outlook message subscriptions live at most 4230 minutes (just under 3 days).
SUBSCRIPTION_MINUTES = 4200


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _query(params: dict[str, str]) -> str:
    # OData system options keep their literal `$` (some servers do not decode `%24`).
    return urlencode(params, quote_via=quote, safe="$,()'")


class GraphProvider:
    name: ClassVar[ProviderName] = PROVIDER
    # A deltaLink belongs to one folder: Inbox and Sent each keep their own position.
    sync_scopes: ClassVar[tuple[SyncScope, ...]] = (
        SyncScope(key="inbox", folder="inbox"),
        SyncScope(key="sent", folder="sent"),
    )
    max_send_bytes: ClassVar[int] = MAX_SEND_BYTES
    needs_reply_references: ClassVar[bool] = False

    def __init__(
        self,
        settings: Settings,
        token_source: TokenSource,
        http_client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.http = ProviderHttp.create(PROVIDER, settings, token_source, http_client, policy)
        self._base = settings.graph_api_base.rstrip("/")
        parts = urlsplit(self._base)
        self._origin = f"{parts.scheme}://{parts.netloc}".lower()
        # Outlook allows 4 concurrent requests per app and mailbox; one driver = one mailbox.
        self._fetch_slots = asyncio.Semaphore(max(1, settings.graph_fetch_concurrency))

    def __repr__(self) -> str:
        return "GraphProvider()"

    async def aclose(self) -> None:
        await self.http.aclose()

    def _link(self, url: str) -> str:
        """A nextLink/deltaLink is followed verbatim, but only to the Graph origin: the
        access token must not go anywhere else."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}".lower() != self._origin:
            raise ProviderRequestError("link outside the Graph API", provider=PROVIDER)
        return url

    # ------------------------------------------------------------------ reading

    async def get_profile(self) -> MailboxProfile:
        data = await self.http.json(
            "GET",
            f"{self._base}/me?{_query({'$select': 'id,displayName,mail,userPrincipalName'})}",
            template="GET /me",
        )
        address = data.get("mail") or data.get("userPrincipalName") or ""
        return MailboxProfile(
            email_address=str(address),
            display_name=data.get("displayName") or None,
            cursor_hint=None,
        )

    async def list_messages(
        self, folder: Folder, since: datetime, page_token: str | None = None
    ) -> ChangePage:
        if page_token:
            url = self._link(page_token)
        else:
            params = {
                "$select": "id,conversationId,receivedDateTime",
                "$filter": f"receivedDateTime ge {_iso(since)}",
            }
            url = (
                f"{self._base}/me/mailFolders/{WELL_KNOWN_FOLDERS[folder]}/messages/delta?"
                f"{_query(params)}"
            )
        return await self._delta_page(url, folder)

    async def list_message_ids(
        self, folder: Folder, since: datetime
    ) -> AsyncIterator[list[MessageRef]]:
        """The folder's plain message listing in the window, `$top` 1000 a page. Besides
        the id it selects the conversation and received time: the same request costs the
        same, and the `$value` fetch of a missing message cannot tell either."""
        params = {
            "$select": "id,conversationId,receivedDateTime",
            "$filter": f"receivedDateTime ge {_iso(since)}",
            "$top": str(ID_LIST_PAGE_SIZE),
        }
        template = f"GET /me/mailFolders/{WELL_KNOWN_FOLDERS[folder]}/messages"
        url: str | None = (
            f"{self._base}/me/mailFolders/{WELL_KNOWN_FOLDERS[folder]}/messages?{_query(params)}"
        )
        while url:
            data = await self.http.json(
                "GET", url, template=template, headers={"Prefer": IMMUTABLE_IDS}
            )
            refs: dict[str, MessageRef] = {}
            for item in data.get("value") or []:
                if isinstance(item, dict) and item.get("id"):
                    refs[str(item["id"])] = MessageRef(
                        id=str(item["id"]),
                        thread_id=item.get("conversationId"),
                        folder=folder,
                        received_at=_parse_iso(item.get("receivedDateTime")),
                    )
            yield list(refs.values())
            next_link = data.get("@odata.nextLink")
            url = self._link(str(next_link)) if next_link else None

    async def still_in_mailbox(self, ids: Sequence[str]) -> set[str]:
        """A message moved out of Inbox or Sent leaves the folder's delta (`@removed`), so
        a sync removes it: what the window listing no longer names is gone here too."""
        del ids
        return set()

    async def list_changes(
        self, cursor: str, page_token: str | None = None, folder: Folder | None = None
    ) -> ChangePage:
        """`cursor` is the folder's deltaLink; pass `folder` (a deltaLink names the folder
        by id, not by its well-known name)."""
        return await self._delta_page(self._link(page_token or cursor), folder or "inbox")

    async def _delta_page(self, url: str, folder: Folder) -> ChangePage:
        # 410, or 400/404 with syncStateNotFound/resyncRequired → CursorExpired (http.py).
        data = await self.http.json(
            "GET",
            url,
            template=f"GET /me/mailFolders/{WELL_KNOWN_FOLDERS[folder]}/messages/delta",
            headers={"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}, {IMMUTABLE_IDS}"},
        )
        added: dict[str, MessageRef] = {}
        deleted: dict[str, None] = {}
        for item in data.get("value") or []:
            if not isinstance(item, dict) or not item.get("id"):
                continue
            message_id = str(item["id"])
            if "@removed" in item:  # reason deleted or changed: gone from the folder
                added.pop(message_id, None)
                deleted[message_id] = None
                continue
            deleted.pop(message_id, None)
            added[message_id] = MessageRef(
                id=message_id,
                thread_id=item.get("conversationId"),
                folder=folder,
                received_at=_parse_iso(item.get("receivedDateTime")),
            )
        next_link = data.get("@odata.nextLink")
        delta_link = data.get("@odata.deltaLink")
        return ChangePage(
            added=list(added.values()),
            deleted=list(deleted),
            next_page_token=next_link or None,
            new_cursor=None if next_link else (delta_link or None),
        )

    async def get_messages(
        self, ids: Sequence[str | MessageRef], folder: Folder | None = None
    ) -> list[RemoteMessage | None]:
        """One `GET /me/messages/{id}/$value` per message, at most
        `graph_fetch_concurrency` at a time. The raw MIME has no folder or received time:
        they come from the refs of the listing (else `folder`, else the Date header)."""
        order, refs = index_refs(ids)
        results: dict[str, RemoteMessage | None] = {}

        async def fetch(message_id: str) -> None:
            async with self._fetch_slots:
                results[message_id] = await self._fetch_one(message_id, refs[message_id], folder)

        # gather, not a TaskGroup: the first typed error must escape as itself, not wrapped
        # in an ExceptionGroup; the remaining fetches are cancelled.
        tasks = [asyncio.ensure_future(fetch(message_id)) for message_id in refs]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [results.get(message_id) for message_id in order]

    async def _fetch_one(
        self, message_id: str, ref: MessageRef | None, folder: Folder | None
    ) -> RemoteMessage | None:
        try:
            response = await self.http.request(
                "GET",
                f"{self._base}/me/messages/{quote(message_id, safe='')}/$value",
                template="GET /me/messages/{id}/$value",
                headers={"Prefer": IMMUTABLE_IDS},
                count_as="message_fetch",
            )
        except NotFound:
            return None
        raw = response.content
        return RemoteMessage(
            id=message_id,
            thread_id=ref.thread_id if ref else None,
            internet_message_id=message_id_of(raw),
            folder=(ref.folder if ref else None) or folder or "inbox",
            received_at=(ref.received_at if ref else None) or date_of(raw) or datetime.now(UTC),
            raw=raw,
            size=len(raw),
            label_ids=[],
        )

    async def get_attachment(self, message_id: str, attachment_id: str) -> bytes:
        data = await self.http.json(
            "GET",
            f"{self._base}/me/messages/{quote(message_id, safe='')}"
            f"/attachments/{quote(attachment_id, safe='')}",
            template="GET /me/messages/{id}/attachments/{id}",
            headers={"Prefer": IMMUTABLE_IDS},
        )
        content = data.get("contentBytes")
        if not isinstance(content, str):
            raise ProviderRequestError(
                "attachment without contentBytes", provider=PROVIDER, status=200
            )
        return base64.b64decode(content)

    # ------------------------------------------------------------------ sending

    async def send(self, message: OutgoingMessage) -> SentMessage:
        """Create a draft (JSON built from the MIME; `createReply` on the original for a
        reply), add the attachments that did not fit in it, then send the draft. Unlike
        sendMail (202, no id) the draft's immutable id is the id of the sent copy, and its
        `internetMessageId` the Message-ID recipients see (Graph assigns its own)."""
        size = len(message.mime)
        if size > MAX_SEND_BYTES:
            raise MessageTooLarge(
                f"message of {size} bytes exceeds {MAX_SEND_BYTES}",
                provider=PROVIDER,
                code="local_size_limit",
            )
        spec = parse_for_graph(message.mime)
        body = dict(spec.message)
        budget = DRAFT_REQUEST_MAX_BYTES - len(json.dumps(body))
        if budget < 0:
            raise MessageTooLarge(
                "message body too large for Graph", provider=PROVIDER, code="body_too_large"
            )
        inline: list[DraftAttachment] = []
        later: list[DraftAttachment] = []
        for attachment in spec.attachments:
            encoded = 4 * -(-attachment.size // 3) + 512
            if attachment.size < UPLOAD_SESSION_MIN_BYTES and encoded <= budget:
                inline.append(attachment)
                budget -= encoded
            else:
                later.append(attachment)
        if inline:
            body["attachments"] = [attachment.file_attachment() for attachment in inline]

        draft = await self._create_draft(body, message.reply_to_provider_id)
        draft_id = draft.get("id")
        if not draft_id:
            raise ProviderRequestError("draft created without an id", provider=PROVIDER)
        for attachment in later:
            await self._attach(str(draft_id), attachment)
        await self.http.request(
            "POST",
            f"{self._base}/me/messages/{quote(str(draft_id), safe='')}/send",
            template="POST /me/messages/{id}/send",
            headers={"Prefer": IMMUTABLE_IDS},
            idempotent=False,
        )
        return SentMessage(
            provider_message_id=str(draft_id),
            thread_id=draft.get("conversationId") or message.thread_id,
            internet_message_id=draft.get("internetMessageId") or None,
        )

    async def _create_draft(self, body: dict[str, Any], reply_to: str | None) -> Any:
        if reply_to:
            try:
                return await self.http.json(
                    "POST",
                    f"{self._base}/me/messages/{quote(reply_to, safe='')}/createReply",
                    template="POST /me/messages/{id}/createReply",
                    json_body={"message": body},
                    headers={"Prefer": IMMUTABLE_IDS},
                    idempotent=False,
                )
            except NotFound:
                pass  # the original is gone: send unthreaded rather than not at all
        return await self.http.json(
            "POST",
            f"{self._base}/me/messages",
            template="POST /me/messages",
            json_body=body,
            headers={"Prefer": IMMUTABLE_IDS},
            idempotent=False,
        )

    async def _attach(self, draft_id: str, attachment: DraftAttachment) -> None:
        attachments_url = f"{self._base}/me/messages/{quote(draft_id, safe='')}/attachments"
        if attachment.size < UPLOAD_SESSION_MIN_BYTES:
            await self.http.request(
                "POST",
                attachments_url,
                template="POST /me/messages/{id}/attachments",
                json_body=attachment.file_attachment(),
                headers={"Prefer": IMMUTABLE_IDS},
                idempotent=False,
            )
            return
        session = await self.http.json(
            "POST",
            f"{attachments_url}/createUploadSession",
            template="POST /me/messages/{id}/attachments/createUploadSession",
            json_body={"AttachmentItem": attachment.upload_item()},
            idempotent=False,
        )
        upload_url = session.get("uploadUrl")
        if not isinstance(upload_url, str):
            raise ProviderRequestError("upload session without uploadUrl", provider=PROVIDER)
        total = attachment.size
        for start in range(0, total, UPLOAD_CHUNK_BYTES):
            chunk = attachment.content[start : start + UPLOAD_CHUNK_BYTES]
            end = start + len(chunk) - 1
            # The upload URL is pre-authorised: sending the Authorization header is an error.
            await self.http.request(
                "PUT",
                upload_url,
                template="PUT uploadSession",
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {start}-{end}/{total}",
                },
                authenticated=False,
            )

    # ------------------------------------------------------------------ push

    async def watch(self, callback_url: str, client_state: str) -> PushChannel:
        expires = datetime.now(UTC) + timedelta(minutes=SUBSCRIPTION_MINUTES)
        data = await self.http.json(
            "POST",
            f"{self._base}/subscriptions",
            template="POST /subscriptions",
            json_body={
                "changeType": "created,updated,deleted",
                "notificationUrl": callback_url,
                "resource": "me/mailFolders('inbox')/messages",
                "expirationDateTime": _iso(expires),
                "clientState": client_state,
            },
            headers={"Prefer": IMMUTABLE_IDS},
            idempotent=False,
        )
        subscription_id = data.get("id")
        if not subscription_id:
            raise ProviderRequestError("subscription without an id", provider=PROVIDER)
        return PushChannel(
            channel_id=str(subscription_id),
            expires_at=_parse_iso(data.get("expirationDateTime")) or expires,
            resource_cursor=None,
        )

    async def renew(self, channel: PushChannel) -> PushChannel:
        """PATCH the expiry; a NotFound means the subscription is gone: watch again."""
        expires = datetime.now(UTC) + timedelta(minutes=SUBSCRIPTION_MINUTES)
        data = await self.http.json(
            "PATCH",
            f"{self._base}/subscriptions/{quote(channel.channel_id, safe='')}",
            template="PATCH /subscriptions/{id}",
            json_body={"expirationDateTime": _iso(expires)},
        )
        return PushChannel(
            channel_id=channel.channel_id,
            expires_at=_parse_iso(data.get("expirationDateTime")) or expires,
            resource_cursor=channel.resource_cursor,
        )

    async def stop(self, channel: PushChannel) -> None:
        try:
            await self.http.request(
                "DELETE",
                f"{self._base}/subscriptions/{quote(channel.channel_id, safe='')}",
                template="DELETE /subscriptions/{id}",
            )
        except NotFound:
            return  # already gone

    async def revoke(self, refresh_token: str) -> None:
        """No-op: Microsoft has no per-grant revocation; `revokeSignInSessions` would sign
        the user out of every application. Disconnecting deletes our tokens instead."""
        return None
