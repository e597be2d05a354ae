"""Push notifications: Gmail through a simulated Pub/Sub push subscription, Graph webhooks.

Deliveries run in background tasks (a seed request never waits for them), one after the
other in the order the changes happened. Failures are logged without content (URLs lose
their query, which carries the push secret) and otherwise ignored, like a real provider
that gives up.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import secrets
import urllib.parse
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx

from sandbox.state import (
    ChangeRecord,
    Mailbox,
    SandboxState,
    Subscription,
    graph_user_id,
)

logger = logging.getLogger("sandbox.push")

_CHANGE_TYPES = {"added": "created", "updated": "updated", "deleted": "deleted"}
_GRAPH_BATCH = 100
_DELIVERY_TIMEOUT = 10.0


def _iso_ms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def _post(state: SandboxState, url: str, **kwargs: Any) -> None:
    try:
        async with asyncio.timeout(_DELIVERY_TIMEOUT), state.push_client_factory() as client:
            response = await client.post(url, timeout=_DELIVERY_TIMEOUT, **kwargs)
    except (httpx.HTTPError, TimeoutError) as exc:
        state.pushes_failed += 1
        logger.warning("sandbox push to %s failed: %s", _redacted(url), type(exc).__name__)
        return
    if response.is_success:
        state.pushes_sent += 1
    else:
        state.pushes_failed += 1
        logger.warning("sandbox push to %s answered %s", _redacted(url), response.status_code)


# --------------------------------------------------------------------------- Gmail


def gmail_envelope(address: str, history_id: int, topic: str, now: float) -> dict[str, Any]:
    """A Pub/Sub push request body as Google sends it for a Gmail watch."""
    data = json.dumps({"emailAddress": address, "historyId": history_id}).encode()
    message_id = str(secrets.randbelow(10**16))
    published = _iso_ms(now)
    project = topic.split("/")[1] if topic.count("/") >= 3 else "sandbox"
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": published,
            "publish_time": published,
            "attributes": {},
        },
        "subscription": f"projects/{project}/subscriptions/gmail-push-sandbox",
    }


def notify_gmail(state: SandboxState, box: Mailbox, records: list[ChangeRecord]) -> None:
    watch = box.watch
    settings = state.settings
    if watch is None or settings is None or watch.expiration_ms <= state.now_ms():
        return
    matching = [r for r in records if r.kind != "updated" and watch.matches(r.labels)]
    if not matching:
        return
    body = gmail_envelope(box.address, matching[-1].seq, watch.topic_name, state.clock())
    secret = settings.gmail_push_secret.get_secret_value()
    url = f"{settings.public_base_url}/v1/webhooks/gmail?" + urllib.parse.urlencode(
        {"token": secret}
    )
    state.spawn_push(functools.partial(_post, state, url, json=body))


# --------------------------------------------------------------------------- Graph


def graph_notification(
    state: SandboxState, sub: Subscription, record: ChangeRecord, user_id: str
) -> dict[str, Any]:
    resource = f"Users/{user_id}/Messages/{record.message_id}"
    item: dict[str, Any] = {
        "id": secrets.token_urlsafe(12),
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": _iso_ms(sub.expiration),
        "changeType": _CHANGE_TYPES[record.kind],
        "resource": resource,
        "tenantId": state.tenant_id,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": resource,
            "@odata.etag": f'W/"CQAAABYAAAA{record.seq:08d}"',
            "id": record.message_id,
        },
    }
    if sub.client_state is not None:
        item["clientState"] = sub.client_state
    return item


def notify_graph(state: SandboxState, box: Mailbox, records: list[ChangeRecord]) -> None:
    now = state.clock()
    user_id = graph_user_id(box.address)
    by_url: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sub in state.outlook.subscriptions.values():
        if sub.mailbox != box.address or sub.expiration <= now:
            continue
        for record in records:
            if sub.folder is not None and record.folder != sub.folder:
                continue
            if _CHANGE_TYPES[record.kind] not in sub.change_types:
                continue
            by_url[sub.notification_url].append(graph_notification(state, sub, record, user_id))
    for url, items in by_url.items():
        for start in range(0, len(items), _GRAPH_BATCH):
            body = {"value": items[start : start + _GRAPH_BATCH]}
            state.spawn_push(functools.partial(_post, state, url, json=body))


def validation_token() -> str:
    """Like Graph's: words, colons and an id, so the receiver must URL-decode it."""
    return (
        "Validation: Testing client application reachability for subscription Request-Id: "
        f"{uuid.uuid4()}"
    )


async def validate_endpoint(state: SandboxState, url: str) -> bool:
    """Graph's handshake: the endpoint must echo the token as 200 text/plain in time."""
    token = validation_token()
    limit = state.validation_timeout_seconds
    try:
        async with asyncio.timeout(limit), state.push_client_factory() as client:
            response = await client.post(
                url,
                params={"validationToken": token},
                headers={"Content-Type": "text/plain; charset=utf-8"},
                content=b"",
                timeout=limit,
            )
    except (httpx.HTTPError, TimeoutError) as exc:
        logger.warning("sandbox validation of %s failed: %s", _redacted(url), type(exc).__name__)
        return False
    content_type = response.headers.get("content-type", "")
    ok = (
        response.status_code == 200
        and content_type.split(";")[0].strip().lower() == "text/plain"
        and response.text == token
    )
    if not ok:
        logger.warning(
            "sandbox validation of %s rejected (status %s)", _redacted(url), response.status_code
        )
    return ok
