"""What every fake Graph route shares: the API root, reading a JSON body (property names
in any case, as Graph reads them), finding a message, rendering one, answering JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

import sandbox.graph_wire as wire
from sandbox.dispatch import sandbox_base
from sandbox.errors import graph_bad_request, graph_error, graph_not_found
from sandbox.gate import ApiCall
from sandbox.model import StoredMessage

API = "/outlook/v1.0"


def api_root(request: Request) -> str:
    return sandbox_base(request) + API


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, headers=headers)


async def read_body(request: Request, call: ApiCall) -> dict[str, Any]:
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


def find_message(call: ApiCall, message_id: str) -> StoredMessage:
    message = call.mailbox.get(message_id)
    if message is None:
        raise graph_not_found()
    return message


def render(
    call: ApiCall, message: StoredMessage, request: Request, **kwargs: Any
) -> dict[str, Any]:
    prefer = wire.Prefer.of(request)
    return wire.render_message(
        call.pstate, call.mailbox, message, body_type=prefer.body_type, **kwargs
    )
