"""Gmail batch requests: multipart/mixed of `application/http` parts, answered in kind.

Headers of the outer request (Authorization) apply to every inner call, so the parts carry
only the request line. Each inner answer has its own status: the driver retries only the
parts that failed with 429/5xx.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any


@dataclass(frozen=True)
class BatchPart:
    content_id: str
    status: int
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


_RAW_KEY = b'"raw"'
_RAW_VALUE_START = re.compile(rb'"raw"[ \t\r\n]*:[ \t\r\n]*"')
_TO_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")


def message_resource(part: BatchPart) -> tuple[Any, bytes | None]:
    """A ``messages.get(format=raw)`` answer: (the resource, the decoded message).

    The same as ``part.json()`` then base64url-decoding its ``raw``, without the JSON
    scanner walking, and a str copying, the encoded message (most of the answer): the
    value is cut out and decoded straight from the bytes, the rest is parsed as JSON. That
    happens only when it is exactly equivalent: one ``"raw"`` in the answer, a top-level
    string of nothing but base64url (strict decoding proves it). Otherwise the message
    is None and the resource is ``part.json()``, ``raw`` included, as ever."""
    body = part.body
    start = body.find(_RAW_KEY)
    found = _RAW_VALUE_START.match(body, start) if start >= 0 else None
    if found is not None:
        value_start = found.end()
        value_end = body.find(b'"', value_start)
        if value_end >= 0 and body.find(_RAW_KEY, value_end) < 0:
            value = body[value_start:value_end].translate(_TO_STANDARD_ALPHABET)
            if len(value) % 4:
                value += b"=" * (-len(value) % 4)
            try:
                raw = binascii.a2b_base64(value, strict_mode=True)
                rest = json.loads(body[:value_start] + body[value_end:])
            except ValueError:  # binascii.Error is one
                rest = None
            if isinstance(rest, dict) and rest.get("raw") == "":
                return rest, raw
    return part.json(), None


def new_boundary() -> str:
    return f"batch_{secrets.token_hex(12)}"


def build_batch_body(requests: Sequence[tuple[str, str]], boundary: str) -> bytes:
    """`requests` are (content_id, "GET /path?query") pairs."""
    chunks: list[str] = []
    for content_id, request_line in requests:
        chunks.append(
            f"--{boundary}\r\n"
            "Content-Type: application/http\r\n"
            f"Content-ID: <{content_id}>\r\n"
            "\r\n"
            f"{request_line} HTTP/1.1\r\n"
            "\r\n"
        )
    chunks.append(f"--{boundary}--\r\n")
    return "".join(chunks).encode("ascii")


def boundary_of(content_type: str) -> str | None:
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    return boundary if isinstance(boundary, str) else None


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def _split_head(block: bytes) -> tuple[bytes, bytes]:
    match = _BLANK_LINE.search(block)
    if match is None:
        return block, b""
    return block[: match.start()], block[match.end() :]


def _parse_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.splitlines():
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def strip_content_id(value: str) -> str:
    value = value.strip().strip("<>").strip()
    return value.removeprefix("response-")


def _split_at_delimiters(body: bytes, boundary: bytes) -> list[bytes]:
    """``body`` split at each ``--boundary`` that starts the body or a line (the line break
    before it goes with the delimiter). ``bytes.find``, not a regex: a batch of raw
    messages is megabytes, and an alternation at every byte costs more than the rest of
    the parsing together."""
    marker = b"--" + boundary
    segments: list[bytes] = []
    start = 0
    if body.startswith(marker):
        segments.append(b"")
        start = len(marker)
    found = body.find(b"\n" + marker, start)
    while found >= 0:
        end = found - 1 if found > start and body[found - 1] == 0x0D else found
        segments.append(body[start:end])
        start = found + 1 + len(marker)
        found = body.find(b"\n" + marker, start)
    segments.append(body[start:])
    return segments


def parse_batch_response(content_type: str, body: bytes) -> list[BatchPart]:
    """The inner responses, in the order received. Raises ValueError when unparseable."""
    boundary = boundary_of(content_type)
    if not boundary:
        raise ValueError("batch response without a boundary")
    parts: list[BatchPart] = []
    for segment in _split_at_delimiters(body, boundary.encode("latin-1"))[1:]:
        if segment.startswith(b"--"):
            break  # the close delimiter
        # Drop the rest of the delimiter line (transport padding) and its line break.
        _, _, segment = segment.partition(b"\n")
        part_head, http_message = _split_head(segment)
        part_headers = _parse_headers(part_head)
        status_and_headers, inner_body = _split_head(http_message)
        lines = status_and_headers.splitlines()
        if not lines:
            raise ValueError("batch part without a status line")
        status_fields = lines[0].split()
        if len(status_fields) < 2 or not status_fields[1].isdigit():
            raise ValueError("batch part with a malformed status line")
        parts.append(
            BatchPart(
                content_id=strip_content_id(part_headers.get("content-id", "")),
                status=int(status_fields[1]),
                headers=_parse_headers(b"\n".join(lines[1:])),
                body=inner_body.rstrip(b"\r\n"),
            )
        )
    return parts
