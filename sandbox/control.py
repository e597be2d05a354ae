"""Sandbox control paths (SANDBOX.md): seed, delete, the sent log, faults, stats, reset.

These are not provider APIs: they take no token and answer plain JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

import sandbox.mime as mime
from sandbox.errors import SandboxError
from sandbox.gate import get_state
from sandbox.model import FAULT_KINDS, ChangeRecord, Fault, Folder
from sandbox.oauth import provider_of

router = APIRouter()

_FOLDERS: dict[str, Folder] = {"inbox": "inbox", "sent": "sent", "sentitems": "sent"}
MAX_BULK = 50_000


def _bad(message: str, status: int = 400) -> SandboxError:
    return SandboxError(status, {"error": message})


def _folder(value: str | None) -> Folder:
    folder = _FOLDERS.get((value or "inbox").lower())
    if folder is None:
        raise _bad(f"folder must be inbox or sent, not {value!r}")
    return folder


def _received_ms(value: str | None) -> int | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(f"received_at is not ISO 8601: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _is_read(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes")


@router.post("/reset", status_code=204)
async def reset(request: Request) -> Response:
    get_state(request).reset()
    return Response(status_code=204)


@router.get("/{provider}/mailboxes")
async def list_mailboxes(request: Request, provider: str) -> Response:
    pstate = get_state(request).provider(provider_of(provider))
    return JSONResponse({"mailboxes": sorted(pstate.mailboxes)})


@router.get("/{provider}/mailboxes/{address}")
async def mailbox_summary(request: Request, provider: str, address: str) -> Response:
    box = get_state(request).provider(provider_of(provider)).mailbox(address, create=False)
    if box is None:
        raise _bad("no such mailbox", 404)
    return JSONResponse(
        {
            "address": box.address,
            "messages": len(box.messages),
            "folders": {name: len(index) for name, index in box.folder_index.items()},
            "cursor": box.seq,
            "watch": box.watch is not None,
        }
    )


@router.post("/{provider}/mailboxes/{address}/messages", status_code=201)
async def seed(request: Request, provider: str, address: str) -> Response:
    """Body: raw RFC 822 (`message/rfc822`). Pushes fire as the real provider's would."""
    p = provider_of(provider)
    raw = await request.body()
    if not raw.strip():
        raise _bad("the body must be a raw RFC 822 message")
    message, _ = get_state(request).seed_message(
        p,
        address,
        raw,
        folder=_folder(request.query_params.get("folder")),
        received_ms=_received_ms(request.query_params.get("received_at")),
        is_read=_is_read(request.query_params.get("is_read")),
    )
    return JSONResponse({"id": message.id, "threadId": message.thread_id}, status_code=201)


@router.post("/{provider}/mailboxes/{address}/messages:bulk", status_code=201)
async def seed_bulk(request: Request, provider: str, address: str) -> Response:
    """`{"messages": [{"raw", "folder"?, "received_at"?, "is_read"?}]}` in one call
    (`raw_base64` instead of `raw` for bytes that are not UTF-8)."""
    p = provider_of(provider)
    state = get_state(request)
    try:
        items = json.loads(await request.body())["messages"]
        assert isinstance(items, list)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise _bad('expected {"messages": [{"raw": ...}]}') from exc
    if len(items) > MAX_BULK:
        raise _bad(f"at most {MAX_BULK} messages per call")
    ids: list[str] = []
    records: list[ChangeRecord] = []
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"messages[{number}] must be an object")
        if isinstance(item.get("raw_base64"), str):
            raw = mime.b64url_decode(item["raw_base64"])
        elif isinstance(item.get("raw"), str) and item["raw"].strip():
            raw = item["raw"].encode("utf-8")
        else:
            raise _bad(f"messages[{number}] needs raw (text) or raw_base64")
        message, record = state.seed_message(
            p,
            address,
            raw,
            folder=_folder(item.get("folder")),
            received_ms=_received_ms(item.get("received_at")),
            is_read=_is_read(item.get("is_read")),
            notify=False,
        )
        ids.append(message.id)
        records.append(record)
    box = state.provider(p).require_mailbox(address)
    state.notify(p, box, records)
    return JSONResponse({"ids": ids}, status_code=201)


@router.delete("/{provider}/mailboxes/{address}/messages/{message_id}", status_code=204)
async def delete(request: Request, provider: str, address: str, message_id: str) -> Response:
    if not get_state(request).delete_message(provider_of(provider), address, message_id):
        raise _bad("no such message", 404)
    return Response(status_code=204)


@router.get("/{provider}/mailboxes/{address}/sent")
async def sent(request: Request, provider: str, address: str) -> Response:
    box = get_state(request).provider(provider_of(provider)).mailbox(address, create=False)
    items = [] if box is None else box.sent_log
    return JSONResponse(
        {"items": [{"id": i, "raw": raw.decode("utf-8", "replace")} for i, raw in items]}
    )


# --------------------------------------------------------------------------- faults and stats


@router.post("/{provider}/faults", status_code=201)
async def add_fault(request: Request, provider: str) -> Response:
    """`{"kind", "count"=1, "mailbox"?, "seconds"? (slow), "retry_after"? (rate_limit)}`."""
    pstate = get_state(request).provider(provider_of(provider))
    try:
        body = json.loads(await request.body())
        assert isinstance(body, dict)
    except (ValueError, AssertionError) as exc:
        raise _bad("expected a JSON object") from exc
    kind = body.get("kind")
    if kind not in FAULT_KINDS:
        raise _bad(f"kind must be one of {sorted(FAULT_KINDS)}")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise _bad("count must be a positive integer")
    mailbox = body.get("mailbox")
    fault = Fault(
        kind=kind,
        remaining=count,
        mailbox=str(mailbox).strip().lower() if mailbox else None,
        seconds=float(body.get("seconds", 0.5)),
        retry_after=float(body.get("retry_after", 1.0)),
    )
    pstate.faults.append(fault)
    return JSONResponse({"faults": [f.as_dict() for f in pstate.faults]}, status_code=201)


@router.get("/{provider}/faults")
async def list_faults(request: Request, provider: str) -> Response:
    pstate = get_state(request).provider(provider_of(provider))
    return JSONResponse({"faults": [f.as_dict() for f in pstate.faults]})


@router.delete("/{provider}/faults", status_code=204)
async def clear_faults(request: Request, provider: str) -> Response:
    get_state(request).provider(provider_of(provider)).faults.clear()
    return Response(status_code=204)


@router.get("/{provider}/stats")
async def stats(request: Request, provider: str) -> Response:
    state = get_state(request)
    return JSONResponse(
        {
            "mailboxes": state.stats(provider_of(provider)),
            "pushes": {"sent": state.pushes.sent, "failed": state.pushes.failed},
        }
    )
