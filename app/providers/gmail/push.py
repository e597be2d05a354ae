"""Gmail push: a Pub/Sub push envelope whose `message.data` is base64 JSON
`{"emailAddress", "historyId"}` (one notification per watched user and second at most)."""

from __future__ import annotations

import binascii
import json
from typing import Any

from app.providers.base import InvalidPush, PushNotice, SyncCursor
from app.providers.gmail.driver import MAILBOX_SCOPE
from app.providers.rfc822 import b64url_decode


class GmailPushFormat:
    def parse_push(self, body: bytes) -> list[PushNotice]:
        try:
            envelope: Any = json.loads(body)
            data = json.loads(b64url_decode(envelope["message"]["data"]))
            address = str(data["emailAddress"])
            history_id = int(str(data["historyId"]))
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            raise InvalidPush("Not a Gmail push notification") from None
        return [PushNotice(address=address, position=str(history_id))]

    def is_news(self, notice: PushNotice, cursor: SyncCursor) -> bool:
        """historyIds grow: a notice at or before the stored one is old or repeated."""
        stored = cursor.position(MAILBOX_SCOPE)
        if not stored or not stored.isdigit() or notice.position is None:
            return True
        return int(notice.position) > int(stored)
