"""Fake Microsoft Graph v1.0 change-notification subscriptions on mail: create (after
the validation handshake with the notification URL), list, get, renew, delete. The
notifications themselves are rendered and sent by `push`."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

import sandbox.graph_wire as wire
from sandbox.errors import SandboxError, graph_bad_request, graph_error
from sandbox.gate import ApiCall, graph_api
from sandbox.graph_request import API, answer, api_root, read_body
from sandbox.model import Subscription, graph_user_id

router = APIRouter()

_RESOURCE = re.compile(
    r"/?(?:me|users/[^/]+)/(?:mailfolders(?:\('([^']+)'\)|/([^/]+))/)?messages/?", re.IGNORECASE
)


# --------------------------------------------------------------------------- subscriptions


def _subscription_json(request: Request, sub: Subscription, state: Any) -> dict[str, Any]:
    return {
        "@odata.context": api_root(request) + "/$metadata#subscriptions/$entity",
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
    body = await read_body(request, call)
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
    return answer(_subscription_json(request, sub, call.state), status=201)


def _subscription(call: ApiCall, subscription_id: str) -> Subscription:
    sub = call.pstate.subscriptions.get(subscription_id)
    if sub is None or sub.mailbox != call.mailbox.address:
        raise graph_error(404, "ResourceNotFound", "The object was not found.")
    return sub


@router.get(API + "/subscriptions")
async def list_subscriptions(request: Request, call: ApiCall = Depends(graph_api)) -> Response:
    subs = [s for s in call.pstate.subscriptions.values() if s.mailbox == call.mailbox.address]
    return answer({"value": [_subscription_json(request, s, call.state) for s in subs]})


@router.get(API + "/subscriptions/{subscription_id}")
async def get_subscription(
    request: Request, subscription_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    return answer(_subscription_json(request, _subscription(call, subscription_id), call.state))


@router.patch(API + "/subscriptions/{subscription_id}")
async def renew_subscription(
    request: Request, subscription_id: str, call: ApiCall = Depends(graph_api)
) -> Response:
    sub = _subscription(call, subscription_id)
    body = await read_body(request, call)
    sub.expiration = _expiration(call, body.get("expirationDateTime"))
    return answer(_subscription_json(request, sub, call.state))


@router.delete(API + "/subscriptions/{subscription_id}")
async def delete_subscription(subscription_id: str, call: ApiCall = Depends(graph_api)) -> Response:
    sub = _subscription(call, subscription_id)
    del call.pstate.subscriptions[sub.id]
    return Response(status_code=204)
