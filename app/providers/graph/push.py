"""Graph change and lifecycle notifications: `{"value": [{subscriptionId, clientState,
lifecycleEvent?, ...}]}`, at most 100 read from one body."""

from __future__ import annotations

import json
from typing import Any

from app.providers.base import InvalidPush, PushNotice, SyncCursor

MAX_NOTIFICATIONS = 100
# reauthorizationRequired: renew only; subscriptionRemoved: register again and catch up;
# missed and every change notification: catch up.
_RENEW_ONLY = "reauthorizationRequired"
_RENEW_AND_SYNC = "subscriptionRemoved"


class GraphPushFormat:
    def parse_push(self, body: bytes) -> list[PushNotice]:
        try:
            data: Any = json.loads(body)
        except ValueError:
            raise InvalidPush("Body is not JSON") from None
        items = data.get("value") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InvalidPush("Not a Graph notification")
        notices = []
        for item in items[:MAX_NOTIFICATIONS]:
            if not isinstance(item, dict):
                continue
            lifecycle = item.get("lifecycleEvent")
            notices.append(
                PushNotice(
                    channel_id=str(item.get("subscriptionId", ""))[:256],
                    client_state=str(item.get("clientState") or ""),
                    sync=lifecycle != _RENEW_ONLY,
                    renew_channel=lifecycle in (_RENEW_ONLY, _RENEW_AND_SYNC),
                )
            )
        return notices

    def is_news(self, notice: PushNotice, cursor: SyncCursor) -> bool:
        """Graph notifications carry no position to compare: every one may be news."""
        return True
