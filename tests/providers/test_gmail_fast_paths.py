"""What the Gmail driver reads with byte searches (the batch answer's delimiters, the JSON
around each message, the Message-ID) must be exactly what the general tools give, on
every input."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from app.providers.gmail.batch import (
    BatchPart,
    _split_at_delimiters,
    message_resource,
    parse_batch_response,
)
from app.providers.gmail.headers import message_id_header as _message_id_header
from app.providers.rfc822 import b64url_decode, message_id_of


def test_splitting_at_delimiters_is_the_regex_split() -> None:
    rng = random.Random(1)
    alphabet = [b"\r", b"\n", b"-", b"--b", b"x", b"b", b"\r\n--b", b"\n--b--", b"--b\r\n"]
    for _ in range(50000):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        expected = re.compile(rb"(?:^|\r?\n)--" + re.escape(b"b")).split(body)
        assert _split_at_delimiters(body, b"b") == expected, body


def _general(body: bytes) -> tuple[Any, bytes | None]:
    """What the driver did before: the whole answer through json.loads, then the message
    through the general base64url decoder."""
    data = BatchPart("x", 200, {}, body).json()
    if not isinstance(data, dict) or not isinstance(data.get("raw"), str):
        return data, None
    try:
        return data, b64url_decode(data["raw"])
    except ValueError:
        return data, None


def _check(body: bytes) -> bool:
    """True when the fast path took the answer (and then gave what the general one does)."""
    resource, raw = message_resource(BatchPart("x", 200, {}, body))
    data, expected = _general(body)
    if raw is None:
        assert resource == data
        return False
    assert raw == expected, body[:200]
    assert resource == {**data, "raw": ""}
    return True


def test_message_resource_is_json_then_base64url() -> None:
    rng = random.Random(2)
    raw = base64.urlsafe_b64encode(rng.randbytes(3000)).decode()
    values = [
        f'"{raw}"', f'"{raw.rstrip("=")}"', '""', '"a\\/b"', '"ab\\"cd"', '"é"', '"a\nb"',
        "5", "null", '"a b"', '"==="', '"QUJD"', '"QUJD+/=="', '"-_-_"', '"QUJ"', '"Q"',
    ]  # fmt: skip
    others = [
        '"id":"1"', '"snippet":"x \\"raw\\":\\"y"', '"labelIds":["INBOX","raw"]',
        '"x":{"raw":"QUJD"}', '"raw":1', '"raw":""', '"sizeEstimate":12',
    ]  # fmt: skip
    taken = 0
    for _ in range(10000):
        members = rng.sample(others, rng.randint(0, 3))
        for _ in range(rng.randint(0, 2)):
            colon = rng.choice([":", ": ", " :\n  ", ":\t"])
            members.insert(rng.randint(0, len(members)), f'"raw"{colon}{rng.choice(values)}')
        body = ("{" + rng.choice([",", ",\n  "]).join(members) + "}").encode()
        if rng.random() < 0.1:
            body = body[: rng.randrange(len(body) + 1)]
        taken += _check(body)
    assert taken > 500


def test_a_batch_answer_of_raw_messages_reads_the_same_without_scanning_the_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = [bytes([n]) * 2000 for n in range(4)]
    styles: list[dict[str, Any]] = [
        {"separators": (",", ":")},  # the sandbox
        {"indent": 2},  # Google
    ]
    parts = [
        f"--b1\r\nContent-Type: application/http\r\nContent-ID: <response-item-{n}>\r\n\r\n"
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
        + json.dumps(
            {"id": str(n), "snippet": "say 'raw'", "raw": base64.urlsafe_b64encode(m).decode()},
            **styles[n % 2],
        )
        + "\r\n"
        for n, m in enumerate(messages)
    ]
    body = ("".join(parts) + "--b1--\r\n").encode()
    scanned: list[int] = []
    loads = json.loads

    def measuring(text: bytes) -> Any:
        scanned.append(len(text))
        return loads(text)

    monkeypatch.setattr("app.providers.gmail.batch.json.loads", measuring)
    parts_read = parse_batch_response("multipart/mixed; boundary=b1", body)
    answers = [message_resource(p) for p in parts_read]
    assert [raw for _, raw in answers] == messages
    assert [data["snippet"] for data, _ in answers] == ["say 'raw'"] * 4
    assert max(scanned) < 200  # the JSON around each message, never the message


# --- the Message-ID of a fetched message ----------------------------------------------

CORPUS = Path(__file__).parent.parent / "messages" / "corpus"
_HEADER_LINES = [
    b"Message-ID: <a@b>", b"Message-Id:\t<c@d> (comment)", b"message-id: <e@f>",
    b"Message-ID : <g@h>", b"Message-ID:", b" <folded@x>", b"\t<tab@x>", b"From someone",
    b"From: a@b", b": nameless", b"Subject: hi", b"X-Weird", b"", b"Message-ID: <\xe9@x>",
    b"Message-ID: <i@j>\r", b"Subject: a\rb", b"Received: from x", b"message-ID:<k@l>",
]  # fmt: skip


def test_the_message_id_is_the_email_packages() -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")
    samples = [p.read_bytes() for p in files]
    rng = random.Random(3)
    for _ in range(20000):
        lines = rng.choices(_HEADER_LINES, k=rng.randint(0, 8))
        ending = rng.choice([b"\n", b"\r\n"])
        samples.append(ending.join(lines) + ending * rng.randint(0, 2) + b"body\n")
    taken = 0
    for raw in samples:
        assert _message_id_header(raw) == message_id_of(raw), raw[:300]
        taken += raw[:2000].isascii()
    assert taken > 10000
