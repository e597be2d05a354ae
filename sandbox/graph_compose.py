"""Fake Microsoft Graph v1.0 mail, composing and sending: message updates (read flag,
draft edits), attachments (read, added whole or through upload sessions), drafts,
createReply, send and sendMail (JSON or MIME). Drafts are kept as their JSON and rendered
to MIME on every change, so every message, draft or not, is read from one raw source."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

import sandbox.graph_wire as wire
import sandbox.mime as mime
from sandbox.dispatch import sandbox_base
from sandbox.errors import graph_bad_request, graph_error, graph_not_found, graph_unauthenticated
from sandbox.gate import ApiCall, get_state, graph_api
from sandbox.graph_request import API, answer, api_root, find_message, read_body, render
from sandbox.model import Mailbox, StoredMessage, UploadSession
from sandbox.oauth import display_name

router = APIRouter()

MAX_CHUNK = 4 * 1024 * 1024
_MESSAGE_ID_DOMAIN = "sandbox.prod.outlook.com"
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


# --------------------------------------------------------------------------- updates


@router.patch(API + "/me/messages/{message_id}")
async def update_message(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = find_message(call, message_id)
    changes = await read_body(request, call)
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
    return answer(render(call, message, request))


# --------------------------------------------------------------------------- attachments


@router.get(API + "/me/messages/{message_id}/attachments")
async def list_attachments(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = find_message(call, message_id)
    value = [wire.attachment_json(message, p) for p in wire.attachments_of(call.pstate, message)]
    context = (
        api_root(request)
        + f"/$metadata#users('{call.mailbox.address}')/messages('{message_id}')/attachments"
    )
    return answer({"@odata.context": context, "value": value})


@router.get(API + "/me/messages/{message_id}/attachments/{attachment_id}")
async def get_attachment(
    message_id: str, attachment_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = find_message(call, message_id)
    part = wire.find_attachment(call.pstate, message, attachment_id)
    if part is None:
        raise graph_not_found()
    return answer(wire.attachment_json(message, part))


@router.get(API + "/me/messages/{message_id}/attachments/{attachment_id}/$value")
async def get_attachment_bytes(
    message_id: str, attachment_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = find_message(call, message_id)
    part = wire.find_attachment(call.pstate, message, attachment_id)
    if part is None:
        raise graph_not_found()
    return Response(part.content(), media_type=part.mime_type)


@router.post(API + "/me/messages/{message_id}/attachments")
async def add_attachment(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    message = _draft(call, message_id)
    attachment = await read_body(request, call)
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
    return answer(wire.attachment_json(message, created), status=201)


@router.post(API + "/me/messages/{message_id}/attachments/createUploadSession")
async def create_upload_session(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    _draft(call, message_id)
    item = (await read_body(request, call)).get("attachmentItem") or {}
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
    return answer(
        {
            "@odata.context": api_root(request) + "/$metadata#microsoft.graph.uploadSession",
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
        return answer(
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
    location = f"{api_root(request)}/me/messages/{message.id}/attachments/{attachment_id}"
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
    message = find_message(call, message_id)
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
    message = _new_draft(call, await read_body(request, call))
    return answer(render(call, message, request), status=201)


@router.post(API + "/me/messages/{message_id}/createReply")
async def create_reply(
    request: Request, message_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    original = find_message(call, message_id)
    body = await read_body(request, call)
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
    return answer(render(call, message, request), status=201)


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
    payload = await read_body(request, call)
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
