"""Microsoft Graph JSON rendering: messages, attachments, folders, the user, query options.

Messages are rendered from the stored raw MIME (drafts too: their JSON is rendered to MIME
first), property by property so `$select` only pays for what it asks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

import sandbox.mime as mime
from sandbox.errors import graph_bad_request, graph_error, graph_not_found
from sandbox.model import Folder, Mailbox, StoredMessage, graph_user_id
from sandbox.oauth import display_name
from sandbox.state import ProviderState

WELL_KNOWN_FOLDERS: dict[str, Folder] = {"inbox": "inbox", "sentitems": "sent", "drafts": "drafts"}
FOLDER_NAMES: dict[Folder, str] = {"inbox": "Inbox", "sent": "Sent Items", "drafts": "Drafts"}
DEFAULT_PAGE = 10
MAX_TOP = 1000
PREVIEW_LENGTH = 255

MESSAGE_PROPERTIES = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "internetMessageHeaders",
)
_NOT_DEFAULT = {"uniqueBody", "internetMessageHeaders"}
_CANONICAL = {p.lower(): p for p in MESSAGE_PROPERTIES}
_BODY_PROPERTIES = frozenset({"body", "uniqueBody", "bodyPreview", "hasAttachments"})


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_epoch(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().strip("'\"").replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- request options


@dataclass(slots=True)
class Prefer:
    max_page_size: int | None = None
    body_type: str = "html"
    immutable_ids: bool = False

    @classmethod
    def of(cls, request: Request) -> Prefer:
        prefer = cls()
        for header in request.headers.getlist("prefer"):
            for item in header.split(","):
                key, _, value = item.strip().partition("=")
                key, value = key.strip().lower(), value.strip().strip('"').lower()
                if key == "odata.maxpagesize" and value.isdigit() and int(value) > 0:
                    prefer.max_page_size = int(value)
                elif key == "outlook.body-content-type" and value in ("text", "html"):
                    prefer.body_type = value
                elif key == "idtype" and value == "immutableid":
                    prefer.immutable_ids = True
        return prefer

    def applied(self) -> dict[str, str]:
        applied = []
        if self.max_page_size:
            applied.append(f"odata.maxpagesize={self.max_page_size}")
        if self.immutable_ids:
            applied.append('IdType="ImmutableId"')
        applied.append(f'outlook.body-content-type="{self.body_type}"')
        return {"Preference-Applied": ", ".join(applied)}


def parse_select(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    selected: list[str] = []
    for name in raw.split(","):
        canonical = _CANONICAL.get(name.strip().lower())
        if canonical is None:
            raise graph_bad_request(
                f"Could not find a property named '{name.strip()}' on type "
                "'microsoft.graph.message'.",
                code="RequestBroker--ParseUri",
            )
        if canonical not in selected:
            selected.append(canonical)
    return selected


def check_query_options(request: Request, allowed: set[str]) -> None:
    for key in request.query_params:
        if key.startswith("$") and key.lower() not in allowed:
            raise graph_bad_request(f"The query parameter '{key}' is not supported by the sandbox.")


_CLAUSE = re.compile(r"\s*receivedDateTime\s+(ge|gt|le|lt)\s+(\S+)\s*", re.IGNORECASE)


def parse_received_filter(raw: str | None) -> tuple[int | None, int | None]:
    """`receivedDateTime ge|gt|le|lt <iso>` clauses joined by `and` → [low, high) in ms."""
    if not raw:
        return None, None
    low: int | None = None
    high: int | None = None
    for clause in re.split(r"\s+and\s+", raw.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.fullmatch(clause)
        if not match:
            raise graph_bad_request("Invalid filter clause", code="ErrorInvalidUrlQueryFilter")
        op, value = match.group(1).lower(), match.group(2)
        try:
            ms = int(parse_iso(value).timestamp() * 1000)
        except ValueError as exc:
            raise graph_bad_request(
                "Invalid filter clause", code="ErrorInvalidUrlQueryFilter"
            ) from exc
        if op in ("ge", "gt"):
            bound = ms if op == "ge" else ms + 1
            low = bound if low is None else max(low, bound)
        else:
            bound = ms if op == "lt" else ms + 1
            high = bound if high is None else min(high, bound)
    return low, high


def page_size(request: Request, prefer: Prefer, default: int = DEFAULT_PAGE) -> int:
    raw = request.query_params.get("$top")
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
            raise graph_bad_request(f"Invalid value '{raw}' for $top.")
        return int(raw)
    return min(prefer.max_page_size or default, MAX_TOP)


# --------------------------------------------------------------------------- request bodies

_REQUEST_PROPERTIES = (
    *MESSAGE_PROPERTIES,
    # actions: sendMail, createReply, createUploadSession
    "message",
    "saveToSentItems",
    "comment",
    "attachmentItem",
    "attachmentType",
    # inside messages: recipients, bodies, headers, attachments
    "emailAddress",
    "address",
    "name",
    "contentType",
    "content",
    "value",
    "attachments",
    "contentBytes",
    "contentId",
    "isInline",
    "size",
    # subscriptions
    "resource",
    "changeType",
    "notificationUrl",
    "lifecycleNotificationUrl",
    "clientState",
    "expirationDateTime",
)
_REQUEST_NAMES = {name.lower(): name for name in _REQUEST_PROPERTIES}


def canonical_names(value: Any) -> Any:
    """Graph reads JSON property names in any case, and Microsoft's SDKs send action
    parameters in PascalCase (`{"Message": ..., "SaveToSentItems": true}`): every property
    the sandbox reads gets the camelCase spelling it looks up, at any depth. Other names
    (annotations such as `@odata.type`, unknown properties) are left as they came."""
    if isinstance(value, dict):
        return {_REQUEST_NAMES.get(k.lower(), k): canonical_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical_names(item) for item in value]
    return value


# --------------------------------------------------------------------------- folders


def folder_id(box: Mailbox, folder: Folder) -> str:
    digest = hashlib.sha256(f"{box.address}/{folder}".encode()).digest()[:30]
    return "AQMkAD" + base64.urlsafe_b64encode(digest).decode()


def resolve_folder(box: Mailbox, name: str) -> Folder:
    known = WELL_KNOWN_FOLDERS.get(name.lower())
    if known:
        return known
    for folder in FOLDER_NAMES:
        if folder_id(box, folder) == name:
            return folder
    raise graph_not_found()


def folder_json(box: Mailbox, folder: Folder) -> dict[str, Any]:
    index = box.folder_index[folder]
    unread = sum(1 for _, _, mid in index if not box.messages[mid].is_read)
    return {
        "id": folder_id(box, folder),
        "displayName": FOLDER_NAMES[folder],
        "parentFolderId": "AQMkAD" + base64.urlsafe_b64encode(b"msgfolderroot" * 2).decode(),
        "childFolderCount": 0,
        "unreadItemCount": unread,
        "totalItemCount": len(index),
        "isHidden": False,
    }


def user_json(box: Mailbox) -> dict[str, Any]:
    name = display_name(box.address)
    given, _, surname = name.partition(" ")
    return {
        "businessPhones": [],
        "displayName": name,
        "givenName": given,
        "jobTitle": None,
        "mail": box.address,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-US",
        "surname": surname or None,
        "userPrincipalName": box.address,
        "id": graph_user_id(box.address),
    }


# --------------------------------------------------------------------------- messages


def _recipient(name: str, address: str) -> dict[str, Any]:
    return {"emailAddress": {"name": name or address, "address": address}}


def _recipients(parsed: Any, header: str) -> list[dict[str, Any]]:
    return [_recipient(n, a) for n, a in mime.addresses(parsed, header)]


def change_key(message: StoredMessage) -> str:
    digest = hashlib.sha256(f"{message.id}:{message.change_key}".encode()).digest()[:12]
    return "CQAAABYAAAA" + base64.b64encode(digest).decode()


def attachment_id(message_id: str, part_id: str) -> str:
    return "AAMkAtt" + mime.b64url(f"{message_id}|{part_id}".encode())


def _part_of(message: StoredMessage, att_id: str) -> str | None:
    if not att_id.startswith("AAMkAtt"):
        return None
    try:
        owner, _, part_id = mime.b64url_decode(att_id[7:]).decode().partition("|")
    except (ValueError, UnicodeDecodeError):
        return None
    return part_id if owner == message.id else None


def attachment_json(
    message: StoredMessage, part: mime.Part, *, with_content: bool = True
) -> dict[str, Any]:
    data = part.content()
    name = part.filename or ("message.eml" if part.mime_type == "message/rfc822" else "attachment")
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": part.mime_type,
        "id": attachment_id(message.id, part.part_id),
        "lastModifiedDateTime": iso(message.received_ms),
        "name": name,
        "contentType": part.mime_type,
        "size": len(data),
        "isInline": part.disposition == "inline",
        "contentId": part.content_id,
        "contentLocation": None,
    }
    if with_content:
        body["contentBytes"] = base64.b64encode(data).decode()
    return body


def attachments_of(pstate: ProviderState, message: StoredMessage) -> list[mime.Part]:
    return pstate.parsed(message).attachments


def find_attachment(pstate: ProviderState, message: StoredMessage, att_id: str) -> mime.Part | None:
    part_id = _part_of(message, att_id)
    if part_id is None:
        return None
    return next((p for p in attachments_of(pstate, message) if p.part_id == part_id), None)


def render_message(
    pstate: ProviderState,
    box: Mailbox,
    message: StoredMessage,
    *,
    select: list[str] | None = None,
    body_type: str = "html",
    expand_attachments: bool = False,
) -> dict[str, Any]:
    names = select or [p for p in MESSAGE_PROPERTIES if p not in _NOT_DEFAULT]
    needs_body = expand_attachments or not _BODY_PROPERTIES.isdisjoint(names)
    head_cache: list[Any] = []

    def head() -> Any:
        """Header fields need no body parse (cheap for `$select`ed listings)."""
        if not head_cache:
            full = needs_body or pstate.is_parsed(message)
            head_cache.append(pstate.parsed(message).msg if full else pstate.headers(message))
        return head_cache[0]

    def bodies() -> mime.Bodies:
        return pstate.parsed(message).bodies()

    def attachments() -> list[mime.Part]:
        return pstate.parsed(message).attachments

    def body() -> dict[str, str]:
        found = bodies()
        if body_type == "text":
            return {"contentType": "text", "content": found.as_text()}
        return {"contentType": "html", "content": found.as_html()}

    def sent() -> str:
        date = mime.date_of(head())
        if message.sent_ms is not None:
            return iso(message.sent_ms)
        return date.strftime("%Y-%m-%dT%H:%M:%SZ") if date else iso(message.received_ms)

    def sender() -> dict[str, Any] | None:
        found = mime.addresses(head(), "Sender") or mime.addresses(head(), "From")
        return _recipient(*found[0]) if found else None

    def from_() -> dict[str, Any] | None:
        found = mime.addresses(head(), "From")
        return _recipient(*found[0]) if found else None

    is_draft = message.folder == "drafts" and message.draft is not None
    properties: dict[str, Callable[[], Any]] = {
        "id": lambda: message.id,
        "createdDateTime": lambda: iso(message.received_ms),
        "lastModifiedDateTime": lambda: iso(message.received_ms),
        "changeKey": lambda: change_key(message),
        "categories": list,
        "receivedDateTime": lambda: iso(message.received_ms),
        "sentDateTime": lambda: None if is_draft else sent(),
        "hasAttachments": lambda: any(p.disposition != "inline" for p in attachments()),
        "internetMessageId": lambda: message.message_id_header,
        "subject": lambda: mime.decode_words(head().get("Subject", "")),
        "bodyPreview": lambda: " ".join(bodies().as_text().split())[:PREVIEW_LENGTH],
        "importance": lambda: "normal",
        "parentFolderId": lambda: folder_id(box, message.folder),
        "conversationId": lambda: message.thread_id,
        "isDeliveryReceiptRequested": lambda: False,
        "isReadReceiptRequested": lambda: False,
        "isRead": lambda: message.is_read,
        "isDraft": lambda: is_draft,
        "webLink": lambda: (
            "https://outlook.office365.com/owa/?ItemID="
            + urllib.parse.quote(message.id, safe="")
            + "&exvsurl=1&viewmodel=ReadMessageItem"
        ),
        "inferenceClassification": lambda: "focused",
        "body": body,
        "uniqueBody": body,
        "sender": sender,
        "from": from_,
        "toRecipients": lambda: _recipients(head(), "To"),
        "ccRecipients": lambda: _recipients(head(), "Cc"),
        "bccRecipients": lambda: _recipients(head(), "Bcc"),
        "replyTo": lambda: _recipients(head(), "Reply-To"),
        "flag": lambda: {"flagStatus": "notFlagged"},
        "internetMessageHeaders": lambda: [
            {"name": k, "value": mime.raw_header_value(v)} for k, v in head().raw_items()
        ],
    }
    rendered: dict[str, Any] = {"@odata.etag": f'W/"{change_key(message)}"', "id": message.id}
    for name in names:
        rendered[name] = properties[name]()
    if expand_attachments:
        rendered["attachments"] = [attachment_json(message, p) for p in attachments()]
    return rendered


# --------------------------------------------------------------------------- delta tokens


def encode_token(payload: dict[str, Any]) -> str:
    return mime.b64url(json.dumps(payload, separators=(",", ":")).encode(), pad=False)


def decode_token(token: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(mime.b64url_decode(token))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def sync_state_not_found(location: str) -> Exception:
    return graph_error(
        410,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be "
        "synchronized again.",
        headers={"Location": location},
    )
