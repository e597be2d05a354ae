"""Fake Microsoft Graph v1.0 mail: /me, folders, messages, delta, attachments, `$value`,
sendMail, drafts (+ attachments, upload sessions, send, createReply), subscriptions and
`$batch`. Links (`@odata.nextLink`, `@odata.deltaLink`, upload URLs) are absolute on the
URL the request came in on, so they work mounted under `/_sandbox` and standalone."""

from __future__ import annotations

import base64
import bisect
import json
import re
import secrets
import urllib.parse
import uuid
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

import sandbox.graph_wire as wire
import sandbox.mime as mime
from sandbox.dispatch import inner_client, sandbox_base
from sandbox.errors import (
    SandboxError,
    graph_bad_request,
    graph_error,
    graph_not_found,
    graph_unauthenticated,
)
from sandbox.gate import ApiCall, bearer, get_state, graph_api
from sandbox.model import (
    Folder,
    Mailbox,
    StoredMessage,
    Subscription,
    UploadSession,
    graph_user_id,
)
from sandbox.oauth import display_name

router = APIRouter()

API = "/outlook/v1.0"
MAX_BATCH = 20
MAX_CHUNK = 4 * 1024 * 1024
_MESSAGE_ID_DOMAIN = "sandbox.prod.outlook.com"
_LIST_OPTIONS = {"$select", "$top", "$skip", "$filter", "$orderby"}
_DELTA_OPTIONS = {"$select", "$top", "$filter", "$skiptoken", "$deltatoken"}
_GET_OPTIONS = {"$select", "$expand"}
_DRAFT_FIELDS = {
    "subject",
    "body",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "attachments",
    "internetMessageHeaders",
    "importance",
    "from",
}
_RESOURCE = re.compile(
    r"/?(?:me|users/[^/]+)/(?:mailfolders(?:\('([^']+)'\)|/([^/]+))/)?messages/?", re.IGNORECASE
)


def _api(request: Request) -> str:
    return sandbox_base(request) + API


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, headers=headers)


async def _body_json(request: Request, call: ApiCall) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > call.state.graph_max_request_bytes:
        raise graph_error(
            413, "RequestBodyTooLarge", "The maximum request length supported is 4MB."
        )
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise graph_bad_request("Unable to read JSON request payload.") from exc
    if not isinstance(body, dict):
        raise graph_bad_request("Unable to read JSON request payload.")
    named: dict[str, Any] = wire.canonical_names(body)
    return named


def _message(call: ApiCall, message_id: str) -> StoredMessage:
    message = call.mailbox.get(message_id)
    if message is None:
        raise graph_not_found()
    return message


def _render(
    call: ApiCall, message: StoredMessage, request: Request, **kwargs: Any
) -> dict[str, Any]:
    prefer = wire.Prefer.of(request)
    return wire.render_message(
        call.pstate, call.mailbox, message, body_type=prefer.body_type, **kwargs
    )


# --------------------------------------------------------------------------- user and folders


@router.get(API + "/me")
async def me(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    return _json(
        {
            "@odata.context": _api(request) + "/$metadata#users/$entity",
            **wire.user_json(call.mailbox),
        }
    )


@router.get(API + "/me/mailFolders")
async def list_folders(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    folders = [wire.folder_json(call.mailbox, f) for f in wire.FOLDER_NAMES]
    return _json(
        {"@odata.context": _api(request) + "/$metadata#users('me')/mailFolders", "value": folders}
    )


@router.get(API + "/me/mailFolders/{folder}")
async def get_folder(folder: str, call: ApiCall = Depends(graph_api)) -> Response:
    return _json(wire.folder_json(call.mailbox, wire.resolve_folder(call.mailbox, folder)))


# --------------------------------------------------------------------------- listing


@router.get(API + "/me/messages")
async def list_all_messages(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    return _list(request, call, None)


@router.get(API + "/me/mailFolders/{folder}/messages")
async def list_folder_messages(
    request: Request, folder: str, call: ApiCall = Depends(graph_api)
) -> Response:
    return _list(request, call, wire.resolve_folder(call.mailbox, folder))


def _list(request: Request, call: ApiCall, folder: Folder | None) -> Response:
    wire.check_query_options(request, _LIST_OPTIONS)
    box, params, prefer = call.mailbox, request.query_params, wire.Prefer.of(request)
    select = wire.parse_select(params.get("$select"))
    top = wire.page_size(request, prefer)
    skip_raw = params.get("$skip", "0")
    if not skip_raw.isdigit():
        raise graph_bad_request(f"Invalid value '{skip_raw}' for $skip.")
    skip = int(skip_raw)
    order = (params.get("$orderby") or "receivedDateTime desc").strip().lower().split()
    if order[0] != "receiveddatetime" or order[1:] not in ([], ["asc"], ["desc"]):
        raise graph_bad_request("The sandbox can only order by receivedDateTime.")
    descending = order[1:] == ["desc"]
    low, high = wire.parse_received_filter(params.get("$filter"))

    index = box.index_for(folder)
    lo = 0 if low is None else bisect.bisect_left(index, (low, -1, ""))
    hi = len(index) if high is None else bisect.bisect_left(index, (high, -1, ""))
    if skip and call.take_fault("duplicate_page"):
        skip = max(0, skip - max(1, min(5, top // 2)))
    count = max(0, hi - lo)
    chosen = (
        range(hi - 1 - skip, max(hi - 1 - skip - top, lo - 1), -1)
        if descending
        else range(lo + skip, min(lo + skip + top, hi))
    )
    messages = [box.messages[index[i][2]] for i in chosen]
    body: dict[str, Any] = {
        "@odata.context": _api(request) + f"/$metadata#users('{box.address}')/messages",
        "value": [_render(call, m, request, select=select) for m in messages],
    }
    if skip + top < count:
        query = dict(params)
        query["$skip"] = str(skip + top)
        query.setdefault("$top", str(top))
        url = str(request.url.replace(query=""))
        body["@odata.nextLink"] = url + "?" + urllib.parse.urlencode(query, safe="$,'():")
    _delete_one_listed(call, [m.id for m in messages])
    return _json(body, headers=prefer.applied())


def _delete_one_listed(call: ApiCall, message_ids: list[str]) -> None:
    target = next((m for m in message_ids if m in call.mailbox.messages), None)
    if target and call.take_fault("delete_before_get"):
        call.state.delete_message("outlook", call.mailbox.address, target)


# --------------------------------------------------------------------------- delta


@router.get(API + "/me/mailFolders/{folder}/messages/delta")
async def delta(request: Request, folder: str, call: ApiCall = Depends(graph_api)) -> Response:
    wire.check_query_options(request, _DELTA_OPTIONS)
    box, params, prefer = call.mailbox, request.query_params, wire.Prefer.of(request)
    target = wire.resolve_folder(box, folder)
    link = f"{_api(request)}/me/mailFolders/{folder}/messages/delta"
    skiptoken, deltatoken = params.get("$skiptoken"), params.get("$deltatoken")

    if skiptoken or deltatoken:
        if call.take_fault("expire_cursor"):
            box.expire_cursors()
            raise wire.sync_state_not_found(link + "?$deltatoken=")
        token = _usable_token(box, target, skiptoken, deltatoken)
        if token is None:
            raise wire.sync_state_not_found(link + "?$deltatoken=")
    else:
        low, _ = wire.parse_received_filter(params.get("$filter"))
        top = params.get("$top")
        token = {
            "g": box.generation,
            "f": target,
            "m": "init",
            "s": box.seq,
            "p": None,
            "sel": wire.parse_select(params.get("$select")),
            "lo": low,
            "ps": int(top) if top and top.isdigit() else None,
        }

    size = min(prefer.max_page_size or token.get("ps") or wire.DEFAULT_PAGE, wire.MAX_TOP)
    select = token.get("sel")
    duplicate = token.get("p") is not None and call.take_fault("duplicate_page")
    rewind = max(1, min(5, size // 2)) if duplicate else 0
    if token["m"] == "init":
        items, next_token = _initial_page(box, target, token, size, rewind)
    else:
        items, next_token = _incremental_page(box, target, token, size, rewind)

    value = []
    for kind, message_id in items:
        message = box.get(message_id)
        if kind == "removed" or message is None:
            value.append(
                {
                    "@odata.type": "#microsoft.graph.message",
                    "id": message_id,
                    "@removed": {"reason": "deleted"},
                }
            )
        else:
            rendered = wire.render_message(
                call.pstate, box, message, select=select, body_type=prefer.body_type
            )
            value.append({"@odata.type": "#microsoft.graph.message", **rendered})
    body: dict[str, Any] = {"@odata.context": _api(request) + "/$metadata#Collection(message)"}
    if next_token is not None:
        body["@odata.nextLink"] = f"{link}?$skiptoken={wire.encode_token(next_token)}"
    else:
        final = {
            "g": box.generation,
            "f": target,
            "s": token["s"] if token["m"] == "init" else token["u"],
            "sel": select,
            "ps": token.get("ps"),
        }
        body["@odata.deltaLink"] = f"{link}?$deltatoken={wire.encode_token(final)}"
    body["value"] = value
    _delete_one_listed(call, [i for k, i in items if k == "item"])
    return _json(body, headers=prefer.applied())


def _usable_token(
    box: Mailbox, folder: Folder, skiptoken: str | None, deltatoken: str | None
) -> dict[str, Any] | None:
    """Decode a `$skiptoken` / `$deltatoken`; None when unknown, foreign or expired.

    Token fields: g mailbox generation, f folder, m mode (init: the first round, newest
    first; inc: changes in (s, u]), s snapshot / start sequence, u end sequence, p position
    of the last item served, sel `$select`, lo received-time lower bound, ps `$top`.
    """
    token = wire.decode_token(skiptoken or deltatoken or "")
    try:
        if token is None or token["g"] != box.generation or token["f"] != folder:
            return None
        if int(token["s"]) < box.log_floor:
            return None
        if deltatoken:  # a new round: everything that changed since the token
            return {**token, "m": "inc", "u": box.seq, "p": int(token["s"])}
        if token["m"] == "inc":
            int(token["u"]), int(token["p"])
        elif token["m"] != "init":
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return token


def _initial_page(
    box: Mailbox, folder: Folder, token: dict[str, Any], size: int, rewind: int
) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    """Newest first, only messages that were in the folder when the round started."""
    index = box.folder_index[folder]
    snapshot = int(token["s"])
    lo = 0 if token.get("lo") is None else bisect.bisect_left(index, (token["lo"], -1, ""))
    position = token.get("p")
    start = len(index) if position is None else bisect.bisect_left(index, tuple(position))
    while rewind and start < len(index):
        rewind -= index[start][1] <= snapshot
        start += 1
    items: list[tuple[str, str]] = []
    i = start - 1
    last: list[Any] | None = None
    while i >= lo and len(items) < size:
        entry = index[i]
        if entry[1] <= snapshot:
            items.append(("item", entry[2]))
            last = [entry[0], entry[1], ""]
        i -= 1
    if i >= lo and last is not None:
        return items, {**token, "p": last}
    return items, None


def _incremental_page(
    box: Mailbox, folder: Folder, token: dict[str, Any], size: int, rewind: int
) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    """Changes in (s, u] in order; additions that left the folder since are skipped (their
    removal comes as its own record)."""
    log = box.folder_logs[folder]
    i = bisect.bisect_right(log, int(token["p"]), key=lambda r: r.seq)
    end = bisect.bisect_right(log, int(token["u"]), key=lambda r: r.seq)
    i = max(0, i - rewind)
    items: list[tuple[str, str]] = []
    last_seq = int(token["p"])
    while i < end and len(items) < size:
        record = log[i]
        i += 1
        last_seq = max(last_seq, record.seq)
        if record.kind == "deleted":
            items.append(("removed", record.message_id))
            continue
        message = box.get(record.message_id)
        if message is not None and message.folder == folder:
            items.append(("item", record.message_id))
    if i < end:
        return items, {**token, "p": last_seq}
    return items, None


# --------------------------------------------------------------------------- one message


@router.get(API + "/me/messages/{message_id}")
@router.get(API + "/me/mailFolders/{folder}/messages/{message_id}")
async def get_message(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    wire.check_query_options(request, _GET_OPTIONS)
    message = _message(call, message_id)
    expand = (request.query_params.get("$expand") or "").strip().lower()
    if expand not in ("", "attachments"):
        raise graph_bad_request("The sandbox can only $expand=attachments.")
    select = wire.parse_select(request.query_params.get("$select"))
    rendered = _render(call, message, request, select=select, expand_attachments=bool(expand))
    context = _api(request) + f"/$metadata#users('{call.mailbox.address}')/messages/$entity"
    return _json({"@odata.context": context, **rendered}, headers=wire.Prefer.of(request).applied())


@router.get(API + "/me/messages/{message_id}/$value")
async def get_mime(message_id: str, call: ApiCall = Depends(graph_api)) -> Response:
    return Response(_message(call, message_id).raw, media_type="text/plain")


@router.patch(API + "/me/messages/{message_id}")
async def update_message(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = _message(call, message_id)
    changes = await _body_json(request, call)
    if "isRead" in changes:
        message.is_read = bool(changes.pop("isRead"))
    if changes:
        if message.draft is None:
            raise graph_error(
                400,
                "ErrorInvalidPropertyUpdateSentMessage",
                "Update to a sent message is not supported.",
            )
        unknown = set(changes) - _DRAFT_FIELDS
        if unknown:
            raise graph_bad_request(f"Property {sorted(unknown)[0]} is not supported for update.")
        message.draft.update(changes)
        _render_draft(call.mailbox, message)
    record = call.mailbox.update(message)
    call.state.notify("outlook", call.mailbox, [record])
    return _json(_render(call, message, request))


@router.delete(API + "/me/messages/{message_id}")
async def delete_message(message_id: str, call: ApiCall = Depends(graph_api)) -> Response:
    _message(call, message_id)
    call.state.delete_message("outlook", call.mailbox.address, message_id)
    return Response(status_code=204)


# --------------------------------------------------------------------------- attachments


@router.get(API + "/me/messages/{message_id}/attachments")
async def list_attachments(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = _message(call, message_id)
    value = [wire.attachment_json(message, p) for p in wire.attachments_of(call.pstate, message)]
    context = (
        _api(request)
        + f"/$metadata#users('{call.mailbox.address}')/messages('{message_id}')/attachments"
    )
    return _json({"@odata.context": context, "value": value})


@router.get(API + "/me/messages/{message_id}/attachments/{attachment_id}")
async def get_attachment(
    message_id: str, attachment_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = _message(call, message_id)
    part = wire.find_attachment(call.pstate, message, attachment_id)
    if part is None:
        raise graph_not_found()
    return _json(wire.attachment_json(message, part))


@router.get(API + "/me/messages/{message_id}/attachments/{attachment_id}/$value")
async def get_attachment_bytes(
    message_id: str, attachment_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = _message(call, message_id)
    part = wire.find_attachment(call.pstate, message, attachment_id)
    if part is None:
        raise graph_not_found()
    return Response(part.content(), media_type=part.mime_type)


@router.post(API + "/me/messages/{message_id}/attachments")
async def add_attachment(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = _draft(call, message_id)
    attachment = await _body_json(request, call)
    kind = str(attachment.get("@odata.type", "")).lower()
    if kind != "#microsoft.graph.fileattachment":
        raise graph_bad_request("The sandbox only supports #microsoft.graph.fileAttachment.")
    if not attachment.get("name") or "contentBytes" not in attachment:
        raise graph_bad_request("A file attachment needs name and contentBytes.")
    assert message.draft is not None
    message.draft.setdefault("attachments", []).append(attachment)
    _render_draft(call.mailbox, message)
    call.state.notify("outlook", call.mailbox, [call.mailbox.update(message)])
    created = wire.attachments_of(call.pstate, message)[-1]
    return _json(wire.attachment_json(message, created), status=201)


@router.post(API + "/me/messages/{message_id}/attachments/createUploadSession")
async def create_upload_session(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    _draft(call, message_id)
    item = (await _body_json(request, call)).get("attachmentItem") or {}
    size, name = item.get("size"), item.get("name")
    if (
        item.get("attachmentType", "file") != "file"
        or not name
        or not isinstance(size, int)
        or size < 1
    ):
        raise graph_bad_request("AttachmentItem needs attachmentType 'file', a name and a size.")
    if size > call.state.graph_max_upload_session_bytes:
        raise graph_error(
            400,
            "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
            "The attachment exceeds the maximum size.",
        )
    session = UploadSession(
        id=secrets.token_urlsafe(24),
        mailbox=call.mailbox.address,
        message_id=message_id,
        name=str(name),
        size=size,
        content_type=str(item.get("contentType") or "application/octet-stream"),
        is_inline=bool(item.get("isInline")),
        content_id=item.get("contentId"),
        expires_at=call.state.clock() + 6 * 3600,
    )
    call.pstate.upload_sessions[session.id] = session
    return _json(
        {
            "@odata.context": _api(request) + "/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": f"{sandbox_base(request)}/outlook/uploads/{session.id}",
            "expirationDateTime": wire.iso_epoch(session.expires_at),
            "nextExpectedRanges": ["0-"],
        },
        status=201,
    )


@router.put("/outlook/uploads/{session_id}")
async def upload_chunk(request: Request, session_id: str) -> Response:
    """A pre-authenticated upload URL: like Graph, an Authorization header is refused."""
    state = get_state(request)
    session = state.outlook.upload_sessions.get(session_id)
    if session is None or session.expires_at <= state.clock():
        raise graph_not_found()
    if "authorization" in request.headers:
        raise graph_unauthenticated("Do not send an Authorization header to an upload URL.")
    match = re.fullmatch(
        r"bytes (\d+)-(\d+)/(\d+)", request.headers.get("content-range", "").strip()
    )
    chunk = await request.body()
    if not match:
        raise graph_bad_request(
            "Content-Range bytes start-end/total is required.", code="InvalidContentRange"
        )
    first, last, total = (int(g) for g in match.groups())
    if total != session.size or last < first or last >= total or len(chunk) != last - first + 1:
        raise graph_bad_request(
            "The Content-Range does not match the session or the body.", code="InvalidContentRange"
        )
    if len(chunk) > MAX_CHUNK:
        raise graph_error(413, "RequestBodyTooLarge", "Upload chunks are limited to 4 MB.")
    if first != len(session.received):
        raise graph_error(
            416, "InvalidRange", f"The next expected range starts at {len(session.received)}."
        )
    session.received.extend(chunk)
    if len(session.received) < session.size:
        return _json(
            {
                "expirationDateTime": wire.iso_epoch(session.expires_at),
                "nextExpectedRanges": [f"{len(session.received)}-"],
            }
        )
    del state.outlook.upload_sessions[session_id]
    box = state.outlook.require_mailbox(session.mailbox)
    message = box.get(session.message_id)
    if message is None or message.draft is None:
        raise graph_not_found()
    attachment: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": session.name,
        "contentType": session.content_type,
        "contentBytes": base64.b64encode(bytes(session.received)).decode(),
        "isInline": session.is_inline,
    }
    if session.content_id:
        attachment["contentId"] = session.content_id
    message.draft.setdefault("attachments", []).append(attachment)
    _render_draft(box, message)
    state.notify("outlook", box, [box.update(message)])
    created = wire.attachments_of(state.outlook, message)[-1]
    attachment_id = wire.attachment_id(message.id, created.part_id)
    location = f"{_api(request)}/me/messages/{message.id}/attachments/{attachment_id}"
    return Response(status_code=201, headers={"Location": location})


@router.delete("/outlook/uploads/{session_id}")
async def cancel_upload(request: Request, session_id: str) -> Response:
    get_state(request).outlook.upload_sessions.pop(session_id, None)
    return Response(status_code=204)


# --------------------------------------------------------------------------- drafts and sending


def _sender(box: Mailbox) -> tuple[str, str]:
    return display_name(box.address), box.address


def _check_from(box: Mailbox, message: dict[str, Any]) -> None:
    sender = message.get("from")
    if sender:
        address = str((sender.get("emailAddress") or {}).get("address", "")).lower()
        if address and address != box.address:
            raise graph_error(
                403,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the "
                "right to send mail on behalf of the specified sending account.",
            )


def _compose(box: Mailbox, message: dict[str, Any], message_id: str, when: datetime) -> bytes:
    _check_from(box, message)
    try:
        return mime.build_from_graph(
            message,
            sender=_sender(box),
            message_id=message_id,
            date=when,
            in_reply_to=message.get("_inReplyTo"),
            references=message.get("_references"),
        )
    except mime.CompositionError as exc:
        raise graph_bad_request(str(exc), code=exc.code) from exc


def _render_draft(box: Mailbox, message: StoredMessage, when: datetime | None = None) -> None:
    """Drafts are JSON; their raw MIME (the one rendering source) follows every change."""
    assert message.draft is not None
    when = when or datetime.fromtimestamp(message.received_ms / 1000, UTC)
    message.raw = _compose(box, message.draft, message.draft["_messageId"], when)


def _draft(call: ApiCall, message_id: str) -> StoredMessage:
    message = _message(call, message_id)
    if message.draft is None:
        raise graph_error(
            400, "ErrorInvalidOperation", "The operation is only valid on a draft message."
        )
    return message


def _new_draft(call: ApiCall, draft: dict[str, Any], thread_id: str | None = None) -> StoredMessage:
    unknown = {k for k in draft if not k.startswith(("_", "@"))} - _DRAFT_FIELDS
    if unknown:
        raise graph_bad_request(f"Property {sorted(unknown)[0]} is not supported on a draft.")
    draft["_messageId"] = make_msgid(domain=_MESSAGE_ID_DOMAIN)
    raw = _compose(call.mailbox, draft, draft["_messageId"], datetime.now(UTC))
    message, _ = call.state.seed_message(
        "outlook", call.mailbox.address, raw, folder="drafts", is_read=True, thread_id=thread_id
    )
    message.draft = draft
    return message


@router.post(API + "/me/messages")
async def create_draft(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    message = _new_draft(call, await _body_json(request, call))
    return _json(_render(call, message, request), status=201)


@router.post(API + "/me/messages/{message_id}/createReply")
async def create_reply(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    original = _message(call, message_id)
    body = await _body_json(request, call)
    parsed = call.pstate.headers(original)
    subject = mime.decode_words(parsed.get("Subject", ""))
    reply_to = mime.addresses(parsed, "Reply-To") or mime.addresses(parsed, "From")
    earlier = mime.raw_header_value(parsed.get("References", ""))
    references = f"{earlier} {original.message_id_header or ''}".strip()
    draft: dict[str, Any] = {
        "subject": subject if subject.lower().startswith("re:") else f"RE: {subject}",
        "toRecipients": [{"emailAddress": {"name": n, "address": a}} for n, a in reply_to],
        "body": {"contentType": "html", "content": str(body.get("comment") or "")},
        **(body.get("message") or {}),
        "_inReplyTo": original.message_id_header,
        "_references": references or None,
    }
    message = _new_draft(call, draft, thread_id=original.thread_id)
    return _json(_render(call, message, request), status=201)


@router.post(API + "/me/messages/{message_id}/send")
async def send_draft(message_id: str, call: ApiCall = Depends(graph_api)) -> Response:
    message = _draft(call, message_id)
    assert message.draft is not None
    if not any(message.draft.get(k) for k in ("toRecipients", "ccRecipients", "bccRecipients")):
        raise graph_error(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient is required, but none were found.",
        )
    now_ms = call.state.now_ms()
    _render_draft(call.mailbox, message, datetime.fromtimestamp(now_ms / 1000, UTC))
    message.draft = None
    message.is_read = True
    message.sent_ms = now_ms
    lost = call.state.loses_change("outlook", call.mailbox, "sent")
    records = call.mailbox.move(message, "sent", received_ms=now_ms, in_change_feed=not lost)
    call.mailbox.sent_log.append((message.id, message.raw))
    call.state.notify("outlook", call.mailbox, records)
    return Response(status_code=202)


@router.post(API + "/me/sendMail")
async def send_mail(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    box, state = call.mailbox, call.state
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "text/plain":
        body = await request.body()
        if len(body) > state.graph_max_request_bytes:
            raise graph_error(
                413, "RequestBodyTooLarge", "The maximum request length supported is 4MB."
            )
        try:
            raw = mime.b64_decode_strict(body)
        except ValueError as exc:
            raise graph_bad_request(
                "Invalid base64 string for MIME content.",
                code="ErrorMimeContentInvalidBase64String",
            ) from exc
        if not mime.has_recipients(raw):
            raise graph_error(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient is required, but none were found.",
            )
        raw = mime.ensure_message_id_and_date(raw, domain=_MESSAGE_ID_DOMAIN, now=datetime.now(UTC))
        state.record_sent("outlook", box, raw)
        return Response(status_code=202)
    payload = await _body_json(request, call)
    message = payload.get("message")
    if not isinstance(message, dict):
        raise graph_bad_request("Empty Payload. JSON content expected.", code="ErrorInvalidRequest")
    if not any(message.get(k) for k in ("toRecipients", "ccRecipients", "bccRecipients")):
        raise graph_error(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient is required, but none were found.",
        )
    raw = _compose(box, message, make_msgid(domain=_MESSAGE_ID_DOMAIN), datetime.now(UTC))
    keep = payload.get("saveToSentItems", True) not in (False, "false", "False")
    state.record_sent("outlook", box, raw, keep_in_sent_folder=keep)
    return Response(status_code=202)


# --------------------------------------------------------------------------- subscriptions


def _subscription_json(request: Request, sub: Subscription, state: Any) -> dict[str, Any]:
    return {
        "@odata.context": _api(request) + "/$metadata#subscriptions/$entity",
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": state.application_id,
        "changeType": ",".join(sorted(sub.change_types)),
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "lifecycleNotificationUrl": sub.lifecycle_notification_url,
        "expirationDateTime": wire.iso_epoch(sub.expiration),
        "creatorId": graph_user_id(sub.mailbox),
        "includeResourceData": False,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": None,
        "encryptionCertificateId": None,
        "notificationQueryOptions": None,
        "notificationContentType": None,
        "notificationUrlAppId": None,
    }


def _expiration(call: ApiCall, raw: Any) -> float:
    try:
        when = wire.parse_iso(str(raw)).timestamp()
    except ValueError as exc:
        raise graph_bad_request(
            "expirationDateTime is not a valid date.", code="InvalidRequest"
        ) from exc
    maximum = call.state.require_config().subscription_max_minutes
    now = call.state.clock()
    if when <= now:
        raise graph_bad_request(
            "Subscription expiration must be in the future.", code="InvalidRequest"
        )
    if when > now + maximum * 60:
        raise graph_bad_request(
            f"Subscription expiration can only be {maximum} minutes in the future.",
            code="InvalidRequest",
        )
    return when


def _validation_failed() -> SandboxError:
    return graph_bad_request(
        "Subscription validation request failed. Notification endpoint must respond with 200 OK "
        "to validation request.",
        code="ValidationError",
    )


@router.post(API + "/subscriptions")
async def create_subscription(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    body = await _body_json(request, call)
    resource = str(body.get("resource") or "")
    match = _RESOURCE.fullmatch(resource)
    if not match:
        raise graph_bad_request(f"Unsupported resource '{resource}'.", code="InvalidRequest")
    name = match.group(1) or match.group(2)
    folder = wire.resolve_folder(call.mailbox, name) if name else None
    change_types = frozenset(
        t.strip() for t in str(body.get("changeType") or "").split(",") if t.strip()
    )
    if not change_types or not change_types <= {"created", "updated", "deleted"}:
        raise graph_bad_request(
            "changeType must be created, updated and/or deleted.", code="InvalidRequest"
        )
    url = str(body.get("notificationUrl") or "")
    if not url.startswith(("https://", "http://")):
        raise graph_bad_request("notificationUrl must be an absolute URL.", code="InvalidRequest")
    client_state = body.get("clientState")
    if client_state is not None and len(str(client_state)) > 128:
        raise graph_bad_request("clientState cannot exceed 128 characters.", code="InvalidRequest")
    expiration = _expiration(call, body.get("expirationDateTime"))
    lifecycle = body.get("lifecycleNotificationUrl")
    for endpoint in [url, *([lifecycle] if lifecycle else [])]:
        if not await call.state.pushes.validate_endpoint(str(endpoint)):
            raise _validation_failed()
    sub = Subscription(
        id=str(uuid.uuid4()),
        mailbox=call.mailbox.address,
        resource=resource,
        folder=folder,
        change_types=change_types,
        notification_url=url,
        lifecycle_notification_url=str(lifecycle) if lifecycle else None,
        client_state=str(client_state) if client_state is not None else None,
        expiration=expiration,
        created_at=call.state.clock(),
    )
    call.pstate.subscriptions[sub.id] = sub
    return _json(_subscription_json(request, sub, call.state), status=201)


def _subscription(call: ApiCall, subscription_id: str) -> Subscription:
    sub = call.pstate.subscriptions.get(subscription_id)
    if sub is None or sub.mailbox != call.mailbox.address:
        raise graph_error(404, "ResourceNotFound", "The object was not found.")
    return sub


@router.get(API + "/subscriptions")
async def list_subscriptions(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    subs = [s for s in call.pstate.subscriptions.values() if s.mailbox == call.mailbox.address]
    return _json({"value": [_subscription_json(request, s, call.state) for s in subs]})


@router.get(API + "/subscriptions/{subscription_id}")
async def get_subscription(
    request: Request, subscription_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    return _json(_subscription_json(request, _subscription(call, subscription_id), call.state))


@router.patch(API + "/subscriptions/{subscription_id}")
async def renew_subscription(
    request: Request, subscription_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    sub = _subscription(call, subscription_id)
    body = await _body_json(request, call)
    sub.expiration = _expiration(call, body.get("expirationDateTime"))
    return _json(_subscription_json(request, sub, call.state))


@router.delete(API + "/subscriptions/{subscription_id}")
async def delete_subscription(subscription_id: str, call: ApiCall = Depends(graph_api)) -> Response:
    sub = _subscription(call, subscription_id)
    del call.pstate.subscriptions[sub.id]
    return Response(status_code=204)


# --------------------------------------------------------------------------- $batch


@router.post(API + "/$batch")
async def json_batch(request: Request) -> Response:
    state = get_state(request)
    value = bearer(request)
    if not value or state.access_token("outlook", value) is None:
        raise graph_unauthenticated(
            "Access token has expired or is not yet valid." if value else "Access token is empty."
        )
    try:
        payload = json.loads(await request.body())
        requests = payload["requests"]
        assert isinstance(requests, list)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise graph_bad_request("Invalid batch payload.") from exc
    if not requests:
        raise graph_bad_request("Invalid batch payload: no requests.")
    if len(requests) > MAX_BATCH:
        raise graph_bad_request(
            f"The number of requests in a batch exceeds the limit of {MAX_BATCH}."
        )
    ids = [str(r.get("id", "")) for r in requests]
    if "" in ids or len(set(ids)) != len(ids):
        raise graph_bad_request("Each batch request needs a unique id.")
    statuses: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    async with inner_client(request) as client:
        for inner in requests:
            rid = str(inner["id"])
            depends = inner.get("dependsOn") or []
            if any(not 200 <= statuses.get(str(d), 0) < 300 for d in depends):
                statuses[rid] = 424
                responses.append(_failed_dependency(rid))
                continue
            responses.append(await _run_inner(client, inner, rid, value))
            statuses[rid] = responses[-1]["status"]
    return _json({"responses": responses})


async def _run_inner(client: Any, inner: dict[str, Any], rid: str, token: str) -> dict[str, Any]:
    url = str(inner.get("url") or "")
    if url.startswith(("http://", "https://")) or "$batch" in url:
        error = graph_bad_request("Batch request urls must be relative to the version.")
        return {
            "id": rid,
            "status": 400,
            "headers": {"Content-Type": "application/json"},
            "body": error.body,
        }
    path = API + ("" if url.startswith("/") else "/") + url
    headers = {str(k): str(v) for k, v in (inner.get("headers") or {}).items()}
    headers["Authorization"] = f"Bearer {token}"
    body = inner.get("body")
    content: bytes | None = None
    if isinstance(body, (dict, list)):
        content = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        content = body.encode()
    response = await client.request(
        str(inner.get("method", "GET")).upper(), path, headers=headers, content=content
    )
    kept = {
        name: response.headers[name.lower()]
        for name in ("Content-Type", "Retry-After", "Location", "Preference-Applied")
        if name.lower() in response.headers
    }
    answer: dict[str, Any] = {"id": rid, "status": response.status_code, "headers": kept}
    if response.content:
        if response.headers.get("content-type", "").startswith("application/json"):
            answer["body"] = response.json()
        else:
            answer["body"] = base64.b64encode(response.content).decode()
    return answer


def _failed_dependency(rid: str) -> dict[str, Any]:
    error = graph_error(424, "FailedDependency", "A dependency of this request failed.")
    return {
        "id": rid,
        "status": 424,
        "headers": {"Content-Type": "application/json"},
        "body": error.body,
    }
