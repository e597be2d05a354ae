"""Push bodies read by the providers' push formats (the webhooks only verify and queue)."""

from __future__ import annotations

import base64
import json

import pytest

from app.providers.base import InvalidPush, SyncCursor
from app.providers.registry import push_format


def gmail_envelope(address: str, history_id: int | str) -> bytes:
    data = json.dumps({"emailAddress": address, "historyId": history_id}).encode()
    encoded = base64.urlsafe_b64encode(data).decode().rstrip("=")
    return json.dumps({"message": {"data": encoded, "messageId": "1"}}).encode()


def test_gmail_push_names_the_mailbox_and_its_history_position() -> None:
    gmail = push_format("gmail")
    [notice] = gmail.parse_push(gmail_envelope("ann@example.com", 42))
    assert notice.address == "ann@example.com"
    assert notice.sync
    assert not notice.renew_channel
    assert gmail.is_news(notice, SyncCursor())
    assert gmail.is_news(notice, SyncCursor({"history_id": "41"}))
    assert not gmail.is_news(notice, SyncCursor({"history_id": "42"}))


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"message": {}}',
        b'{"message": {"data": "!!"}}',
        gmail_envelope("a", "x"),
    ],
)
def test_gmail_push_refuses_what_is_not_one(body: bytes) -> None:
    with pytest.raises(InvalidPush):
        push_format("gmail").parse_push(body)


def test_graph_notifications_and_lifecycle_events() -> None:
    graph = push_format("outlook")
    body = {
        "value": [
            {"subscriptionId": "s1", "clientState": "c", "changeType": "created"},
            {"subscriptionId": "s1", "clientState": "c", "lifecycleEvent": "missed"},
            {"subscriptionId": "s1", "lifecycleEvent": "reauthorizationRequired"},
            {"subscriptionId": "s1", "lifecycleEvent": "subscriptionRemoved"},
            "not an object",
        ]
    }
    notices = graph.parse_push(json.dumps(body).encode())
    assert [(n.sync, n.renew_channel) for n in notices] == [
        (True, False),
        (True, False),
        (False, True),
        (True, True),
    ]
    assert notices[0].channel_id == "s1"
    assert notices[0].client_state == "c"
    assert graph.is_news(notices[0], SyncCursor({"inbox": "https://x"}))
    with pytest.raises(InvalidPush):
        graph.parse_push(b'{"value": 1}')
