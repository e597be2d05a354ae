"""Fake Gmail API v1: profile, messages list/get, attachments, history, send (JSON and
upload), watch/stop, and the multipart batch endpoint. Shapes follow the discovery
document (`gmail.v1.json`); every resource is rendered from the stored raw message."""

from __future__ import annotations

import base64
import bisect
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

import sandbox.mime as mime
from sandbox.dispatch import inner_client, sandbox_base
from sandbox.errors import (
    SandboxError,
    google_bad_request,
    google_error,
    google_not_found,
    handle_sandbox_error,
)
from sandbox.gate import (
    ApiCall,
    admit_call,
    bearer_of,
    close_call,
    get_state,
    gmail_api,
    query_list,
)
from sandbox.model import ChangeRecord, Folder, GmailWatch, StoredMessage, Token
from sandbox.multipart import (
    boundary_of,
    parse_batch_part,
    render_batch_response,
    split_head,
    split_parts,
)
from sandbox.state import ProviderState, SandboxState

router = APIRouter()

USERS = "/gmail/gmail/v1/users/{userId}"
UPLOAD = "/gmail/upload/gmail/v1/users/{userId}/messages/send"
QUOTA = {"profile": 1, "list": 5, "get": 5, "attachment": 5, "history": 2, "send": 100}
WATCH_DAYS = 7
MAX_BATCH = 100
_LABEL_FOLDERS: dict[str, Folder] = {"INBOX": "inbox", "SENT": "sent", "DRAFT": "drafts"}
_IN_FOLDERS: dict[str, Folder] = {"inbox": "inbox", "sent": "sent", "drafts": "drafts"}
_HISTORY_TYPES = {"messageAdded", "messageDeleted", "labelAdded", "labelRemoved"}
_METADATA_SCOPE = "https://www.googleapis.com/auth/gmail.metadata"
_TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")


# --------------------------------------------------------------------------- rendering


def _attachment_id(message_id: str, part_id: str) -> str:
    return "ANGjdJ" + mime.b64url(f"{message_id}/{part_id}".encode(), pad=False)


def _part_of_attachment_id(message_id: str, attachment_id: str) -> str | None:
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


def _ref(message_id: str, thread_id: str, labels: list[str] | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"id": message_id, "threadId": thread_id}
    if labels is not None:
        ref["labelIds"] = labels
    return ref


def history_item(record: ChangeRecord) -> dict[str, Any]:
    ref = _ref(record.message_id, record.thread_id)
    key = "messagesAdded" if record.kind == "added" else "messagesDeleted"
    return {
        "id": str(record.seq),
        "messages": [ref],
        key: [{"message": _ref(record.message_id, record.thread_id, list(record.labels))}],
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


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
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


def _page_token(entry: tuple[int, int, str]) -> str:
    return mime.b64url(f"{entry[0]}:{entry[1]}".encode(), pad=False)


def _page_key(token: str) -> tuple[int, int, str]:
    try:
        ms, seq = mime.b64url_decode(token).decode().split(":")
        return (int(ms), int(seq), "")
    except (ValueError, UnicodeDecodeError) as exc:
        raise google_bad_request("Invalid pageToken") from exc


def _duplicate_page_size(page_size: int) -> int:
    return max(1, min(5, page_size // 2))


# --------------------------------------------------------------------------- endpoints


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, media_type="application/json; charset=UTF-8")


@router.get(USERS + "/profile")
async def get_profile(call: ApiCall = Depends(gmail_api(QUOTA["profile"]))) -> Response:
    box = call.mailbox
    return _json(
        {
            "emailAddress": box.address,
            "messagesTotal": len(box.messages),
            "threadsTotal": box.thread_count,
            "historyId": str(box.seq),
        }
    )


@router.get(USERS + "/messages")
async def list_messages(
    request: Request, call: ApiCall = Depends(gmail_api(QUOTA["list"]))
) -> Response:
    box = call.mailbox
    q = request.query_params.get("q", "")
    if q and _metadata_only(call):
        raise google_error(403, "Metadata scope does not support 'q' parameter", "forbidden")
    flt = parse_query(q, query_list(request, "labelIds"))
    page_size = _int_param(request, "maxResults", 100, 500)
    token = request.query_params.get("pageToken")
    if flt.impossible:
        return _json({"resultSizeEstimate": 0})

    index = box.index_for(flt.folder)
    lo = 0 if flt.after_ms is None else bisect.bisect_left(index, (flt.after_ms, -1, ""))
    hi = len(index) if flt.before_ms is None else bisect.bisect_left(index, (flt.before_ms, -1, ""))
    start = hi if token is None else min(hi, bisect.bisect_left(index, _page_key(token)))

    def matching(i: int) -> bool:
        return flt.matches(box.messages[index[i][2]])

    if token is not None and call.take_fault("duplicate_page"):
        rewind = _duplicate_page_size(page_size)
        while start < hi and rewind:
            rewind -= matching(start)
            start += 1

    found: list[StoredMessage] = []
    i = start - 1
    while i >= lo and len(found) < page_size:
        if matching(i):
            found.append(box.messages[index[i][2]])
        i -= 1
    more = any(matching(j) for j in range(i, lo - 1, -1))
    body: dict[str, Any] = {}
    if found:
        body["messages"] = [_ref(m.id, m.thread_id) for m in found]
    if more and found:
        body["nextPageToken"] = _page_token(found[-1].index_entry)
    body["resultSizeEstimate"] = max(hi - lo, len(found)) if found else 0
    _delete_one_listed(call, [m.id for m in found])
    return _json(body)


def _metadata_only(call: ApiCall) -> bool:
    scopes = call.token.grant.scope.split()
    return _METADATA_SCOPE in scopes and not any(
        s.endswith(("gmail.readonly", "gmail.modify")) or s == "https://mail.google.com/"
        for s in scopes
    )


_JSON_UTF8 = "application/json; charset=UTF-8"


@router.get(USERS + "/messages/{message_id}")
async def get_message(
    request: Request, message_id: str, call: ApiCall = Depends(gmail_api(QUOTA["get"]))
) -> Response:
    body = _render_message(
        call,
        message_id,
        request.query_params.get("format", "full"),
        query_list(request, "metadataHeaders"),
    )
    return Response(body, 200, media_type=_JSON_UTF8)


def _render_message(call: ApiCall, message_id: str, fmt: str, metadata_headers: list[str]) -> bytes:
    fmt = fmt.lower()
    if fmt not in ("full", "raw", "metadata", "minimal"):
        raise google_bad_request(f"Invalid value at 'format' ({fmt})")
    if fmt in ("full", "raw") and _metadata_only(call):
        raise google_error(403, f"Metadata scope doesn't allow format {fmt.upper()}", "forbidden")
    message = call.mailbox.get(message_id)
    if message is None:
        raise google_not_found()
    return message_json(call.pstate, message, fmt, metadata_headers)


@router.get(USERS + "/messages/{message_id}/attachments/{attachment_id}")
async def get_attachment(
    message_id: str,
    attachment_id: str,
    call: ApiCall = Depends(gmail_api(QUOTA["attachment"])),
) -> Response:
    message = call.mailbox.get(message_id)
    if message is None:
        raise google_not_found()
    part_id = _part_of_attachment_id(message_id, attachment_id)
    part = call.pstate.parsed(message).find(part_id) if part_id is not None else None
    if part is None or part.is_container:
        raise google_bad_request("Invalid attachment token")
    data = part.content()
    return _json({"attachmentId": attachment_id, "size": len(data), "data": mime.b64url(data)})


@router.get(USERS + "/history")
async def list_history(
    request: Request, call: ApiCall = Depends(gmail_api(QUOTA["history"]))
) -> Response:
    box = call.mailbox
    raw_start = request.query_params.get("startHistoryId")
    if not raw_start:
        raise google_bad_request("Required parameter: startHistoryId")
    if call.take_fault("expire_cursor"):
        box.expire_cursors()
        raise google_not_found()
    try:
        start = int(raw_start)
    except ValueError as exc:
        raise google_not_found() from exc
    if start < box.log_floor or start > box.seq:
        raise google_not_found()
    types = set(query_list(request, "historyTypes")) or {"messageAdded", "messageDeleted"}
    if not types <= _HISTORY_TYPES:
        raise google_bad_request(f"Invalid value at 'history_types': {sorted(types)}")
    label = request.query_params.get("labelId")
    page_size = _int_param(request, "maxResults", 100, 500)
    token = request.query_params.get("pageToken")
    position = start
    if token is not None:
        try:
            position = int(token)
        except ValueError as exc:
            raise google_bad_request("Invalid pageToken") from exc
        if position < box.log_floor:
            raise google_not_found()

    log = box.log
    i = bisect.bisect_right(log, position, key=lambda r: r.seq)
    if call.take_fault("duplicate_page"):
        i = max(0, i - _duplicate_page_size(page_size))
    items: list[dict[str, Any]] = []
    last_seq = position
    while i < len(log) and len(items) < page_size:
        record = log[i]
        i += 1
        last_seq = record.seq
        kind = {"added": "messageAdded", "deleted": "messageDeleted"}.get(record.kind)
        if kind not in types or (label and label not in record.labels):
            continue
        items.append(history_item(record))
    body: dict[str, Any] = {}
    if items:
        body["history"] = items
    if i < len(log):
        body["nextPageToken"] = str(last_seq)
    body["historyId"] = str(box.seq)
    _delete_one_listed(
        call, [h["messagesAdded"][0]["message"]["id"] for h in items if "messagesAdded" in h]
    )
    return _json(body)


def _delete_one_listed(call: ApiCall, message_ids: list[str]) -> None:
    """`delete_before_get`: the first listed message that still exists disappears now."""
    box = call.mailbox
    target = next((m for m in message_ids if m in box.messages), None)
    if target and call.take_fault("delete_before_get"):
        call.state.delete_message(call.provider, box.address, target)


# --------------------------------------------------------------------------- send


def _send(call: ApiCall, raw: bytes, thread_id: str | None) -> Response:
    state, box = call.state, call.mailbox
    if len(raw) > state.gmail_max_upload_bytes:
        raise google_error(
            413,
            f"Request payload size exceeds the limit: {state.gmail_max_upload_bytes} bytes.",
            "uploadTooLarge",
        )
    if not mime.has_recipients(raw):
        raise google_bad_request("Invalid To header")
    if thread_id is not None and not any(m.thread_id == thread_id for m in box.messages.values()):
        raise google_not_found()
    raw = mime.ensure_message_id_and_date(raw, domain="mail.gmail.com", now=datetime.now(UTC))
    message = state.record_sent("gmail", box, raw, thread_id=thread_id)
    assert message is not None
    return _json({"id": message.id, "threadId": message.thread_id, "labelIds": ["SENT"]})


def _decode_raw(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise google_bad_request(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
        )
    try:
        return mime.b64url_decode(value)
    except ValueError as exc:
        raise google_bad_request("Invalid value for ByteString: " + value[:20]) from exc


async def _json_body(request: Request) -> dict[str, Any]:
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


@router.post(USERS + "/messages/send")
async def send_message(
    request: Request, call: ApiCall = Depends(gmail_api(QUOTA["send"]))
) -> Response:
    body = await _json_body(request)
    return _send(call, _decode_raw(body.get("raw")), body.get("threadId"))


@dataclass(slots=True)
class ResumableUpload:
    token: Token
    thread_id: str | None
    total: int | None
    data: bytearray = field(default_factory=bytearray)


@router.post(UPLOAD)
async def upload_send(
    request: Request, call: ApiCall = Depends(gmail_api(QUOTA["send"]))
) -> Response:
    upload_type = request.query_params.get("uploadType", "")
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if upload_type == "media":
        _require_message_media(content_type)
        return _send(call, body, None)
    if upload_type == "multipart":
        boundary = boundary_of(content_type)
        parts = split_parts(body, boundary) if boundary else []
        if len(parts) != 2:
            raise google_bad_request("Multipart upload needs metadata and media parts.")
        _, meta = split_head(parts[0])
        media_headers, media = split_head(parts[1])
        _require_message_media(media_headers.get("content-type", ""))
        metadata = json.loads(meta) if meta.strip() else {}
        if media_headers.get("content-transfer-encoding", "").lower() == "base64":
            media = mime.b64_decode_strict(media)
        return _send(call, media, metadata.get("threadId"))
    if upload_type == "resumable":
        metadata = json.loads(body) if body.strip() else {}
        declared = request.headers.get("x-upload-content-length")
        upload_id = secrets.token_urlsafe(24)
        call.pstate.resumable_uploads[upload_id] = ResumableUpload(
            call.token, metadata.get("threadId"), int(declared) if declared else None
        )
        location = (
            f"{sandbox_base(request)}/gmail/upload/gmail/v1/users/me/messages/send"
            f"?uploadType=resumable&upload_id={upload_id}"
        )
        return Response(status_code=200, headers={"Location": location})
    raise google_bad_request(f"Invalid uploadType '{upload_type}'")


def _require_message_media(content_type: str) -> None:
    if not content_type.lower().startswith("message/"):
        raise google_bad_request(
            f"Media type '{content_type}' is not supported. Valid media types: [message/*]",
            reason="badContent",
        )


@router.put(UPLOAD)
async def resumable_chunk(request: Request) -> Response:
    """A chunk of a resumable upload (the upload id in the URL is the credential)."""
    uploads = get_state(request).gmail.resumable_uploads
    upload = uploads.get(request.query_params.get("upload_id", ""))
    if upload is None:
        raise google_not_found()
    chunk = await request.body()
    content_range = request.headers.get("content-range", "")
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range.strip())
    if match:
        first, total = int(match.group(1)), match.group(3)
        if first != len(upload.data):
            raise google_bad_request("Invalid Content-Range")
        upload.total = int(total) if total != "*" else upload.total
    elif upload.total is None:
        upload.total = len(upload.data) + len(chunk)
    upload.data.extend(chunk)
    if upload.total is None or len(upload.data) < upload.total:
        last = len(upload.data) - 1
        return Response(status_code=308, headers={"Range": f"bytes=0-{last}"})
    del uploads[request.query_params["upload_id"]]
    state = get_state(request)
    box = state.gmail.require_mailbox(upload.token.grant.mailbox)
    return _send(ApiCall(state, "gmail", box, upload.token), bytes(upload.data), upload.thread_id)


# --------------------------------------------------------------------------- watch


@router.post(USERS + "/watch")
async def watch(request: Request, call: ApiCall = Depends(gmail_api(100))) -> Response:
    body = await _json_body(request)
    topic = str(body.get("topicName", ""))
    if not _TOPIC.fullmatch(topic):
        raise google_bad_request(
            f"Invalid topicName does not match projects/SOME-PROJECT/topics/*: {topic}"
        )
    behaviour = str(
        body.get("labelFilterBehavior") or body.get("labelFilterAction") or "include"
    ).lower()
    if behaviour not in ("include", "exclude"):
        raise google_bad_request(f"Invalid labelFilterBehavior: {behaviour}")
    labels = body.get("labelIds") or []
    expiration = call.state.now_ms() + WATCH_DAYS * 86_400_000
    call.mailbox.watch = GmailWatch(
        topic_name=topic,
        label_ids=tuple(str(label).upper() for label in labels),
        include=behaviour == "include",
        expiration_ms=expiration,
    )
    return _json({"historyId": str(call.mailbox.seq), "expiration": str(expiration)})


@router.post(USERS + "/stop")
async def stop(call: ApiCall = Depends(gmail_api(50))) -> Response:
    call.mailbox.watch = None
    return Response(status_code=204)


# --------------------------------------------------------------------------- batch


@router.post("/gmail/batch/gmail/v1")
@router.post("/gmail/batch")
async def batch(request: Request) -> Response:
    boundary = boundary_of(request.headers.get("content-type", ""))
    if not request.headers.get("content-type", "").lower().startswith("multipart/") or not boundary:
        raise google_bad_request("Batch requests must be multipart/mixed.")
    parts = split_parts(await request.body(), boundary)
    if not parts:
        raise google_bad_request("The batch request contains no parts.")
    if len(parts) > MAX_BATCH:
        raise google_bad_request(f"Too many requests in batch ({len(parts)} > {MAX_BATCH}).")
    authorization = request.headers.get("authorization")
    answers: list[tuple[str, int, dict[str, str], bytes]] = []
    async with inner_client(request) as client:
        for number, part in enumerate(parts, start=1):
            try:
                inner = parse_batch_part(part)
            except ValueError:
                answers.append(_batch_error(f"<response-{number}>", google_bad_request("Bad part")))
                continue
            cid = inner.content_id or f"<{number}>"
            response_id = f"<response-{cid.strip('<>')}>"
            path = _sandbox_path(inner.target)
            if path is None:
                answers.append(_batch_error(response_id, google_not_found()))
                continue
            headers = {
                k: v for k, v in inner.headers.items() if k not in ("host", "content-length")
            }
            if authorization and "authorization" not in headers:
                headers["authorization"] = authorization
            get = _GET_MESSAGE.fullmatch(path) if inner.method == "GET" else None
            if get is not None:
                # messages.get is what a sync batches by the thousand: answered here, through
                # the same gate and renderer as the route, without a trip through the app.
                status, kept, content = await _get_message_part(
                    get_state(request), headers.get("authorization", ""), get
                )
                answers.append((response_id, status, kept, content))
                continue
            response = await client.request(inner.method, path, headers=headers, content=inner.body)
            kept = {"Content-Type": response.headers.get("content-type", "application/json")}
            if "www-authenticate" in response.headers:
                kept["WWW-Authenticate"] = response.headers["www-authenticate"]
            answers.append((response_id, response.status_code, kept, response.content))
    body, content_type = render_batch_response(answers)
    return Response(body, 200, media_type=content_type)


_GET_MESSAGE = re.compile(r"/gmail/gmail/v1/users/([^/?#]+)/messages/([^/?#]+)(?:\?([^#]*))?")


async def _get_message_part(
    state: SandboxState, authorization: str, match: re.Match[str]
) -> tuple[int, dict[str, str], bytes]:
    """One inner `GET .../messages/{id}`: what the route would answer (status, the headers
    a batch part keeps, body)."""
    query = parse_qsl(match.group(3) or "", keep_blank_values=True)
    params = dict(query)  # the last value wins, as with request.query_params.get
    try:
        call = await admit_call(
            state,
            "gmail",
            bearer_of(authorization),
            QUOTA["get"],
            user_id=unquote(match.group(1)),
        )
        try:
            body = _render_message(
                call,
                unquote(match.group(2)),
                params.get("format", "full"),
                [v for k, v in query if k == "metadataHeaders" and v],
            )
        finally:
            close_call(call)
    except SandboxError as exc:
        error = await handle_sandbox_error(None, exc)  # type: ignore[arg-type]
        kept = {"Content-Type": error.headers.get("content-type", "application/json")}
        if "www-authenticate" in error.headers:
            kept["WWW-Authenticate"] = error.headers["www-authenticate"]
        return error.status_code, kept, bytes(error.body)
    return 200, {"Content-Type": _JSON_UTF8}, body


def _sandbox_path(target: str) -> str | None:
    """`/gmail/v1/users/...` (or any prefix before it) → the sandbox path."""
    index = target.find("/gmail/v1/")
    if index < 0 or "/upload/" in target[: index + 1]:
        return None
    return "/gmail" + target[index:]


def _batch_error(response_id: str, error: SandboxError) -> tuple[str, int, dict[str, str], bytes]:
    return (
        response_id,
        error.status,
        {"Content-Type": "application/json; charset=UTF-8"},
        json.dumps(error.body).encode(),
    )
