"""Push notifications: Gmail through a simulated Pub/Sub push subscription, Graph webhooks.

This module renders what a provider would push for some changes (`gmail_push`,
`graph_pushes`) and delivers it (`PushOutbox`); the state decides which pushes leave (the
`drop_push` fault). Deliveries run in background tasks (a seed request never waits for
them), one after the other in the order the changes happened. Failures are logged without
content (URLs lose their query, which carries the push secret) and otherwise ignored, like
a real provider that gives up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from sandbox.config import SandboxConfig
from sandbox.model import ChangeRecord, Mailbox, Subscription, graph_user_id

logger = logging.getLogger("sandbox.push")

_CHANGE_TYPES = {"added": "created", "updated": "updated", "deleted": "deleted"}
_GRAPH_BATCH = 100
_DELIVERY_TIMEOUT = 10.0


PushClientFactory = Callable[[], httpx.AsyncClient]


def _iso_ms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class Push:
    """One delivery: `body` POSTed as JSON to `url`."""

    url: str
    body: dict[str, Any]


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


def gmail_push(
    config: SandboxConfig, box: Mailbox, records: list[ChangeRecord], now: float
) -> Push | None:
    """The push the mailbox's watch sends for these changes (one, with the latest id)."""
    watch = box.watch
    if watch is None or watch.expiration_ms <= int(now * 1000):
        return None
    matching = [r for r in records if r.kind != "updated" and watch.matches(r.labels)]
    if not matching:
        return None
    body = gmail_envelope(box.address, matching[-1].seq, watch.topic_name, now)
    query = urllib.parse.urlencode({"token": config.gmail_push_secret})
    return Push(f"{config.public_base_url}/v1/webhooks/gmail?{query}", body)


# --------------------------------------------------------------------------- Graph


def graph_notification(
    tenant_id: str, sub: Subscription, record: ChangeRecord, user_id: str
) -> dict[str, Any]:
    resource = f"Users/{user_id}/Messages/{record.message_id}"
    item: dict[str, Any] = {
        "id": secrets.token_urlsafe(12),
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": _iso_ms(sub.expiration),
        "changeType": _CHANGE_TYPES[record.kind],
        "resource": resource,
        "tenantId": tenant_id,
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


def graph_pushes(
    tenant_id: str,
    subscriptions: Iterable[Subscription],
    box: Mailbox,
    records: list[ChangeRecord],
    now: float,
) -> list[Push]:
    """The notification requests the mailbox's live subscriptions send for these changes:
    per notification URL, up to 100 changes in each."""
    user_id = graph_user_id(box.address)
    by_url: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sub in subscriptions:
        if sub.mailbox != box.address or sub.expiration <= now:
            continue
        for record in records:
            if sub.folder is not None and record.folder != sub.folder:
                continue
            if _CHANGE_TYPES[record.kind] not in sub.change_types:
                continue
            by_url[sub.notification_url].append(graph_notification(tenant_id, sub, record, user_id))
    return [
        Push(url, {"value": items[start : start + _GRAPH_BATCH]})
        for url, items in by_url.items()
        for start in range(0, len(items), _GRAPH_BATCH)
    ]


def validation_token() -> str:
    """Like Graph's: words, colons and an id, so the receiver must URL-decode it."""
    return (
        "Validation: Testing client application reachability for subscription Request-Id: "
        f"{uuid.uuid4()}"
    )


# --------------------------------------------------------------------------- delivery


class PushOutbox:
    """Sends pushes in the background, in order, and counts what arrived.

    - `client_factory`: returns the `httpx.AsyncClient` for one delivery or validation
      handshake (closed afterwards); by default a real client.
    - `validation_timeout_seconds`: how long Graph's subscription handshake waits.
    """

    def __init__(
        self,
        client_factory: PushClientFactory | None = None,
        *,
        validation_timeout_seconds: float = 10.0,
    ) -> None:
        self.client_factory: PushClientFactory = client_factory or httpx.AsyncClient
        self.validation_timeout_seconds = validation_timeout_seconds
        self.sent = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock: asyncio.Lock | None = None

    def send(self, push: Push) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # seeded from sync code: nobody can receive a push anyway
            return

        async def run() -> None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:  # FIFO: pushes leave in the order changes happened
                await self._post(push)

        task = loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every scheduled push has been delivered (or has failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _post(self, push: Push) -> None:
        try:
            async with asyncio.timeout(_DELIVERY_TIMEOUT), self.client_factory() as client:
                response = await client.post(push.url, timeout=_DELIVERY_TIMEOUT, json=push.body)
        except (httpx.HTTPError, TimeoutError) as exc:
            self.failed += 1
            logger.warning("sandbox push to %s failed: %s", _redacted(push.url), type(exc).__name__)
            return
        if response.is_success:
            self.sent += 1
        else:
            self.failed += 1
            logger.warning(
                "sandbox push to %s answered %s", _redacted(push.url), response.status_code
            )

    async def validate_endpoint(self, url: str) -> bool:
        """Graph's handshake: the endpoint must echo the token as 200 text/plain in time."""
        token = validation_token()
        limit = self.validation_timeout_seconds
        try:
            async with asyncio.timeout(limit), self.client_factory() as client:
                response = await client.post(
                    url,
                    params={"validationToken": token},
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                    content=b"",
                    timeout=limit,
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            logger.warning(
                "sandbox validation of %s failed: %s", _redacted(url), type(exc).__name__
            )
            return False
        content_type = response.headers.get("content-type", "")
        ok = (
            response.status_code == 200
            and content_type.split(";")[0].strip().lower() == "text/plain"
            and response.text == token
        )
        if not ok:
            logger.warning(
                "sandbox validation of %s rejected (status %s)",
                _redacted(url),
                response.status_code,
            )
        return ok
