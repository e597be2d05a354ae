"""Fake Gmail API v1: profile, messages list/get, attachments, history, watch/stop, and
the multipart batch endpoint; sending is `gmail_send`, the wire format `gmail_wire`."""

from __future__ import annotations

import bisect
import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

import sandbox.mime as mime
from sandbox.dispatch import inner_client
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
from sandbox.gmail_wire import (
    QUOTA,
    USERS,
    answer,
    duplicate_page_size,
    history_item,
    int_param,
    message_json,
    message_ref,
    page_key,
    page_token,
    parse_query,
    part_of_attachment_id,
    read_body,
)
from sandbox.model import GmailWatch, StoredMessage
from sandbox.multipart import boundary_of, parse_batch_part, render_batch_response, split_parts
from sandbox.state import SandboxState

router = APIRouter()

WATCH_DAYS = 7
MAX_BATCH = 100
_HISTORY_TYPES = {"messageAdded", "messageDeleted", "labelAdded", "labelRemoved"}
_METADATA_SCOPE = "https://www.googleapis.com/auth/gmail.metadata"
_TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")


# --------------------------------------------------------------------------- endpoints


@router.get(USERS + "/profile")
async def get_profile(call: ApiCall = Depends(gmail_api(QUOTA["profile"]))) -> Response:
    box = call.mailbox
    return answer(
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
    page_size = int_param(request, "maxResults", 100, 500)
    token = request.query_params.get("pageToken")
    if flt.impossible:
        return answer({"resultSizeEstimate": 0})

    index = box.index_for(flt.folder)
    lo = 0 if flt.after_ms is None else bisect.bisect_left(index, (flt.after_ms, -1, ""))
    hi = len(index) if flt.before_ms is None else bisect.bisect_left(index, (flt.before_ms, -1, ""))
    start = hi if token is None else min(hi, bisect.bisect_left(index, page_key(token)))

    def matching(i: int) -> bool:
        return flt.matches(box.messages[index[i][2]])

    if token is not None and call.take_fault("duplicate_page"):
        rewind = duplicate_page_size(page_size)
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
        body["messages"] = [message_ref(m.id, m.thread_id) for m in found]
    if more and found:
        body["nextPageToken"] = page_token(found[-1].index_entry)
    body["resultSizeEstimate"] = max(hi - lo, len(found)) if found else 0
    _delete_one_listed(call, [m.id for m in found])
    return answer(body)


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
    part_id = part_of_attachment_id(message_id, attachment_id)
    part = call.pstate.parsed(message).find(part_id) if part_id is not None else None
    if part is None or part.is_container:
        raise google_bad_request("Invalid attachment token")
    data = part.content()
    return answer({"attachmentId": attachment_id, "size": len(data), "data": mime.b64url(data)})


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
    page_size = int_param(request, "maxResults", 100, 500)
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
        i = max(0, i - duplicate_page_size(page_size))
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
    return answer(body)


def _delete_one_listed(call: ApiCall, message_ids: list[str]) -> None:
    """`delete_before_get`: the first listed message that still exists disappears now."""
    box = call.mailbox
    target = next((m for m in message_ids if m in box.messages), None)
    if target and call.take_fault("delete_before_get"):
        call.state.delete_message(call.provider, box.address, target)


# --------------------------------------------------------------------------- watch


@router.post(USERS + "/watch")
async def watch(request: Request, call: ApiCall = Depends(gmail_api(100))) -> Response:
    body = await read_body(request)
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
    return answer({"historyId": str(call.mailbox.seq), "expiration": str(expiration)})


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
