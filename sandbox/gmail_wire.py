"""Gmail API v1 wire format: Message resources (full, raw, metadata, minimal) rendered from
the stored raw message, history records, the subset of search the service uses, page
tokens, and JSON in and out. Shapes follow the discovery document (`gmail.v1.json`)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

import sandbox.mime as mime
from sandbox.errors import google_bad_request
from sandbox.model import ChangeRecord, Folder, StoredMessage
from sandbox.state import ProviderState

USERS = "/gmail/gmail/v1/users/{userId}"
QUOTA = {"profile": 1, "list": 5, "get": 5, "attachment": 5, "history": 2, "send": 100}
"""Quota units per method, as Google charges them."""
_LABEL_FOLDERS: dict[str, Folder] = {"INBOX": "inbox", "SENT": "sent", "DRAFT": "drafts"}
_IN_FOLDERS: dict[str, Folder] = {"inbox": "inbox", "sent": "sent", "drafts": "drafts"}


# --------------------------------------------------------------------------- rendering


def _attachment_id(message_id: str, part_id: str) -> str:
    return "ANGjdJ" + mime.b64url(f"{message_id}/{part_id}".encode(), pad=False)


def part_of_attachment_id(message_id: str, attachment_id: str) -> str | None:
    if not attachment_id.startswith("ANGjdJ"):
        return None
    try:
        decoded = mime.b64url_decode(attachment_id[6:]).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    owner, _, part_id = decoded.partition("/")
    return part_id if owner == message_id else None


def _headers(part: Any) -> list[dict[str, str]]:
    return [{"name": k, "value": mime.raw_header_value(v)} for k, v in part.raw_items()]


def _payload(message_id: str, parsed: mime.Parsed) -> dict[str, Any]:
    """The MessagePart tree (format=full)."""
    nodes: dict[str, dict[str, Any]] = {}
    root: dict[str, Any] = {}
    for part in parsed.parts:
        node: dict[str, Any] = {
            "partId": part.part_id,
            "mimeType": part.mime_type,
            "filename": part.filename,
            "headers": _headers(part.part),
        }
        if part.is_container:
            node["body"] = {"size": 0}
            node["parts"] = []
        else:
            data = part.content()
            if part.is_attachment and data:
                body = {"attachmentId": _attachment_id(message_id, part.part_id), "size": len(data)}
            elif data:
                body = {"size": len(data), "data": mime.b64url(data)}
            else:
                body = {"size": 0}
            node["body"] = body
        nodes[part.part_id] = node
        if part.part_id == "":
            root = node
        else:
            parent = part.part_id.rpartition(".")[0] if "." in part.part_id else ""
            nodes[parent]["parts"].append(node)
    return root


def snippet_of(pstate: ProviderState, message: StoredMessage) -> str:
    """The snippet made when the message was stored (made now if its raw changed since)."""
    cached = message.gmail_snippet
    if cached is None or cached[0] is not message.raw:
        cached = (message.raw, mime.gmail_snippet(pstate.parsed(message)))
        message.gmail_snippet = cached
    return cached[1]


def _resource_head(pstate: ProviderState, message: StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "threadId": message.thread_id,
        "labelIds": message.gmail_labels,
        "snippet": snippet_of(pstate, message),
        "sizeEstimate": len(message.raw),
        "historyId": str(message.history_id),
        "internalDate": str(message.received_ms),
    }


def _dumps(body: Any) -> bytes:
    """JSON as the sandbox's JSONResponse renders it."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def message_json(
    pstate: ProviderState,
    message: StoredMessage,
    fmt: str = "full",
    metadata_headers: list[str] | None = None,
) -> bytes:
    """The rendered Message resource. `format=raw` (what a sync fetches) neither parses
    the message nor JSON-escapes the base64url: it is joined in as bytes."""
    if fmt != "raw":
        return _dumps(message_resource(pstate, message, fmt, metadata_headers))
    head = _dumps(_resource_head(pstate, message))
    return b"".join((head[:-1], b',"raw":"', base64.urlsafe_b64encode(message.raw), b'"}'))


def message_resource(
    pstate: ProviderState,
    message: StoredMessage,
    fmt: str = "full",
    metadata_headers: list[str] | None = None,
) -> dict[str, Any]:
    resource = _resource_head(pstate, message)
    if fmt == "raw":
        resource["raw"] = mime.b64url(message.raw)
    elif fmt == "metadata":
        parsed = pstate.parsed(message)
        wanted = {h.lower() for h in metadata_headers or []}
        headers = _headers(parsed.msg)
        if wanted:
            headers = [h for h in headers if h["name"].lower() in wanted]
        resource["payload"] = {
            "partId": "",
            "mimeType": parsed.msg.get_content_type(),
            "filename": "",
            "headers": headers,
            "body": {"size": 0},
        }
    elif fmt == "full":
        resource["payload"] = _payload(message.id, pstate.parsed(message))
    return resource


def message_ref(message_id: str, thread_id: str, labels: list[str] | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"id": message_id, "threadId": thread_id}
    if labels is not None:
        ref["labelIds"] = labels
    return ref


def history_item(record: ChangeRecord) -> dict[str, Any]:
    ref = message_ref(record.message_id, record.thread_id)
    key = "messagesAdded" if record.kind == "added" else "messagesDeleted"
    return {
        "id": str(record.seq),
        "messages": [ref],
        key: [{"message": message_ref(record.message_id, record.thread_id, list(record.labels))}],
    }


# --------------------------------------------------------------------------- query


@dataclass(slots=True)
class MessageFilter:
    after_ms: int | None = None
    before_ms: int | None = None
    folders: set[Folder] = field(default_factory=set)
    unread: bool | None = None
    impossible: bool = False

    def add_label(self, label: str) -> None:
        upper = label.upper()
        if upper in _LABEL_FOLDERS:
            self.folders.add(_LABEL_FOLDERS[upper])
        elif upper == "UNREAD":
            self.unread = True
        else:
            self.impossible = True  # a label no sandbox message carries

    @property
    def folder(self) -> Folder | None:
        return next(iter(self.folders)) if len(self.folders) == 1 else None

    def matches(self, message: StoredMessage) -> bool:
        if self.folders and message.folder not in self.folders:
            return False
        return self.unread is None or message.is_read != self.unread


def _date_ms(value: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    day = datetime.strptime(value.replace("-", "/"), "%Y/%m/%d").replace(tzinfo=UTC)
    return int(day.timestamp() * 1000)


def parse_query(q: str, label_ids: list[str]) -> MessageFilter:
    """The subset of Gmail search the service needs: after/before, in:, label:, is:."""
    flt = MessageFilter()
    for label in label_ids:
        flt.add_label(label)
    for term in q.split():
        name, sep, value = term.partition(":")
        name = name.lower()
        try:
            if sep and name == "after":
                flt.after_ms = max(flt.after_ms or 0, _date_ms(value))
            elif sep and name == "before":
                bound = _date_ms(value)
                flt.before_ms = bound if flt.before_ms is None else min(flt.before_ms, bound)
            elif sep and name == "in" and value.lower() in _IN_FOLDERS:
                flt.folders.add(_IN_FOLDERS[value.lower()])
            elif sep and name == "in" and value.lower() == "anywhere":
                pass
            elif sep and name == "label":
                flt.add_label(value)
            elif sep and name == "is" and value.lower() in ("unread", "read"):
                flt.unread = value.lower() == "unread"
            else:
                raise ValueError(term)
        except ValueError as exc:
            raise google_bad_request(
                f"Invalid query: the sandbox does not support the search term {term!r}."
            ) from exc
    if len(flt.folders) > 1:
        flt.impossible = True
    return flt


def int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise google_bad_request(f"Invalid value '{raw}' for {name}.") from exc
    if value < 1:
        raise google_bad_request(f"Invalid value '{raw}' for {name}.")
    return min(value, maximum)


def page_token(entry: tuple[int, int, str]) -> str:
    return mime.b64url(f"{entry[0]}:{entry[1]}".encode(), pad=False)


def page_key(token: str) -> tuple[int, int, str]:
    try:
        ms, seq = mime.b64url_decode(token).decode().split(":")
        return (int(ms), int(seq), "")
    except (ValueError, UnicodeDecodeError) as exc:
        raise google_bad_request("Invalid pageToken") from exc


def duplicate_page_size(page_size: int) -> int:
    return max(1, min(5, page_size // 2))


# --------------------------------------------------------------------------- JSON in and out


def answer(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, media_type="application/json; charset=UTF-8")


async def read_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise google_bad_request("Invalid JSON payload received.") from exc
    if not isinstance(parsed, dict):
        raise google_bad_request("Invalid JSON payload received.")
    return parsed
