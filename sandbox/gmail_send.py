"""Fake Gmail API v1 sending: `messages.send` with the raw message in JSON, and the
upload endpoint's media, multipart and resumable protocols."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

import sandbox.mime as mime
from sandbox.dispatch import sandbox_base
from sandbox.errors import google_bad_request, google_error, google_not_found
from sandbox.gate import ApiCall, get_state, gmail_api
from sandbox.gmail_wire import QUOTA, USERS, answer, read_body
from sandbox.model import ResumableUpload
from sandbox.multipart import boundary_of, split_head, split_parts

router = APIRouter()

UPLOAD = "/gmail/upload/gmail/v1/users/{userId}/messages/send"


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
    return answer({"id": message.id, "threadId": message.thread_id, "labelIds": ["SENT"]})


def _decode_raw(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise google_bad_request(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
        )
    try:
        return mime.b64url_decode(value)
    except ValueError as exc:
        raise google_bad_request("Invalid value for ByteString: " + value[:20]) from exc


@router.post(USERS + "/messages/send")
async def send_message(
    request: Request, call: ApiCall = Depends(gmail_api(QUOTA["send"]))
) -> Response:
    body = await read_body(request)
    return _send(call, _decode_raw(body.get("raw")), body.get("threadId"))


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
