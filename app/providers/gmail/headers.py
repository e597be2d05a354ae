"""The Message-ID of raw mail without parsing its header block (the sync's hot path)."""

from __future__ import annotations

import re

from app.providers.rfc822 import message_id_of

_HEADER_SCAN_LIMIT = 256 * 1024
_HEADER_LINE = re.compile(rb"From |[\041-\071\073-\176]*:|[\t ]")


def message_id_header(raw: bytes) -> str | None:
    """``rfc822.message_id_of(raw)`` without building a parsed header block: the header
    lines are walked by the email package's rules (continuations, a leading ``From ``
    line, a nameless line, the first line that is no header ends them) until the first
    Message-ID. 8-bit headers and bare CRs go to the email package itself."""
    head = raw[:_HEADER_SCAN_LIMIT]
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = head.find(separator)
        if index != -1:
            head = head[: index + len(separator)]
            break
    if not head.isascii() or head.count(b"\r") != head.count(b"\r\n"):
        return message_id_of(raw)
    lines = []
    for line in head.split(b"\n"):
        if not line or not _HEADER_LINE.match(line):
            break  # the blank line, or a first body line without one
        lines.append(line)
    name: bytes | None = None
    value: list[bytes] = []
    for number, line in enumerate(lines):
        if line[:1] in b" \t":
            if name is not None:
                value.append(line)
            continue
        if name is not None and name.lower() == b"message-id":
            break
        name = None
        if line.startswith(b"From "):
            if number == len(lines) - 1:
                break  # taken for the first line of the body
            continue  # an envelope line: not a header
        colon = line.find(b":")
        if colon > 0:
            name, value = line[:colon], [line[colon + 1 :]]
    if name is None or name.lower() != b"message-id":
        return None
    return " ".join(b" ".join(value).decode("ascii").split()) or None
