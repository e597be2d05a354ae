"""Fake Microsoft Graph v1.0 mail, reading: /me, folders, message listing, delta, one
message (JSON, `$value`), deletion and `$batch`. Composing and sending live in
`graph_compose`, subscriptions in `graph_subscriptions`. Links (`@odata.nextLink`,
`@odata.deltaLink`) are absolute on the URL the request came in on, so they work mounted
under `/_sandbox` and standalone."""

from __future__ import annotations

import base64
import bisect
import json
import urllib.parse
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

import sandbox.graph_wire as wire
from sandbox.dispatch import inner_client
from sandbox.errors import graph_bad_request, graph_error, graph_unauthenticated
from sandbox.gate import ApiCall, bearer, get_state, graph_api
from sandbox.graph_request import API, answer, api_root, find_message, render
from sandbox.model import Folder, Mailbox

router = APIRouter()

MAX_BATCH = 20
_LIST_OPTIONS = {"$select", "$top", "$skip", "$filter", "$orderby"}
_DELTA_OPTIONS = {"$select", "$top", "$filter", "$skiptoken", "$deltatoken"}
_GET_OPTIONS = {"$select", "$expand"}


# --------------------------------------------------------------------------- user and folders


@router.get(API + "/me")
async def me(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    return answer(
        {
            "@odata.context": api_root(request) + "/$metadata#users/$entity",
            **wire.user_json(call.mailbox),
        }
    )


@router.get(API + "/me/mailFolders")
async def list_folders(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    folders = [wire.folder_json(call.mailbox, f) for f in wire.FOLDER_NAMES]
    return answer(
        {
            "@odata.context": api_root(request) + "/$metadata#users('me')/mailFolders",
            "value": folders,
        }
    )


@router.get(API + "/me/mailFolders/{folder}")
async def get_folder(folder: str, call: ApiCall = Depends(graph_api)) -> Response:
    return answer(wire.folder_json(call.mailbox, wire.resolve_folder(call.mailbox, folder)))


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
        "@odata.context": api_root(request) + f"/$metadata#users('{box.address}')/messages",
        "value": [render(call, m, request, select=select) for m in messages],
    }
    if skip + top < count:
        query = dict(params)
        query["$skip"] = str(skip + top)
        query.setdefault("$top", str(top))
        url = str(request.url.replace(query=""))
        body["@odata.nextLink"] = url + "?" + urllib.parse.urlencode(query, safe="$,'():")
    _delete_one_listed(call, [m.id for m in messages])
    return answer(body, headers=prefer.applied())


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
    link = f"{api_root(request)}/me/mailFolders/{folder}/messages/delta"
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
    body: dict[str, Any] = {"@odata.context": api_root(request) + "/$metadata#Collection(message)"}
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
    return answer(body, headers=prefer.applied())


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
    message = find_message(call, message_id)
    expand = (request.query_params.get("$expand") or "").strip().lower()
    if expand not in ("", "attachments"):
        raise graph_bad_request("The sandbox can only $expand=attachments.")
    select = wire.parse_select(request.query_params.get("$select"))
    rendered = render(call, message, request, select=select, expand_attachments=bool(expand))
    context = api_root(request) + f"/$metadata#users('{call.mailbox.address}')/messages/$entity"
    return answer(
        {"@odata.context": context, **rendered}, headers=wire.Prefer.of(request).applied()
    )


@router.get(API + "/me/messages/{message_id}/$value")
async def get_mime(message_id: str, call: ApiCall = Depends(graph_api)) -> Response:
    return Response(find_message(call, message_id).raw, media_type="text/plain")


@router.delete(API + "/me/messages/{message_id}")
async def delete_message(message_id: str, call: ApiCall = Depends(graph_api)) -> Response:
    find_message(call, message_id)
    call.state.delete_message("outlook", call.mailbox.address, message_id)
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
    return answer({"responses": responses})


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
