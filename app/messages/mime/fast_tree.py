"""The MIME tree, fast path.

The stdlib feed parser reads a message line by line (~1.5 us a line, and a fresh regex
compiled for every boundary), which was most of the cost of a sync. `fast_tree` builds
the very same compat32 `Message` tree with `str.find` for the common, well-formed case,
and returns None for anything that is not plainly that, so the stdlib parser gets it.
What "the same" means is spelled out in tests/messages/test_mime_fast_paths.py, which
compares both trees node by node (headers, payloads, preamble, epilogue, defects).
"""

from __future__ import annotations

import re
from email import policy as email_policy
from email.message import Message
from typing import Any

_HEADER_LINE = re.compile(r"[\041-\071\073-\176]*:|[\t ]")
"""The feed parser's header-or-continuation test (without its ``From `` branch)."""


def _line_end(text: str, start: int, end: int) -> int:
    """Index just past the line starting at ``start`` (bounded by ``end``)."""
    newline = text.find("\n", start, end)
    return end if newline < 0 else newline + 1


def _without_eol(text: str, start: int, stop: int) -> int:
    """``stop`` moved back over one line ending (``\\r\\n`` or ``\\n``) before it."""
    if stop > start and text[stop - 1] == "\n":
        stop -= 1
        if stop > start and text[stop - 1] == "\r":
            stop -= 1
    return stop


class _NotSimple(Exception):
    """The message needs the stdlib parser (a defect, an odd construct, message/*)."""


_NO_HEADER = object()


class _Part(Message):
    """A compat32 ``Message`` that parses each header's parameters once: the extractor
    asks the same part for its charset, name, filename, format ... and compat32 re-parses
    the header every time. Only the fast tree makes these, and nothing changes a parsed
    message's headers afterwards."""

    def __init__(self) -> None:
        super().__init__(policy=email_policy.compat32)
        self._params_by_header: dict[str, Any] = {}

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        key = header.lower()
        params = self._params_by_header.get(key, _NO_HEADER)
        if params is _NO_HEADER:
            params = super()._get_params_preserve(_NO_HEADER, header)  # type: ignore[misc]
            self._params_by_header[key] = params
        return failobj if params is _NO_HEADER else params


def fast_tree(raw: bytes) -> Message | None:
    """The compat32 tree ``BytesParser`` would build, or None when not plainly simple."""
    text = raw.decode("ascii", "surrogateescape")
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return None  # bare CRs: the feed parser treats them as line ends
    try:
        return _fast_part(text, 0, len(text), (), parent_type=None)
    except _NotSimple:
        return None


def _fast_part(
    text: str, start: int, end: int, boundaries: tuple[str, ...], parent_type: str | None
) -> Message:
    if parent_type == "multipart/digest":
        raise _NotSimple
    message = _Part()
    position = start
    name = ""
    value: list[str] = []
    first = True
    while True:
        if position >= end:
            raise _NotSimple  # no blank line after the headers
        line_end = _line_end(text, position, end)
        line = text[position:line_end]
        if line in ("\r\n", "\n"):
            position = line_end
            break
        if line.startswith("From ") or not _HEADER_LINE.match(line):
            raise _NotSimple  # unix-from, or a body without the blank line
        if line[0] in " \t":
            if first:
                raise _NotSimple  # a continuation as the first header line
            value.append(line)
        else:
            colon = line.find(":")
            if colon <= 0:
                raise _NotSimple
            if name:
                message.set_raw(*email_policy.compat32.header_source_parse(value))
            name, value = line[:colon], [line]
        first = False
        position = line_end
    if name:
        message.set_raw(*email_policy.compat32.header_source_parse(value))

    content_type = message.get_content_type()
    maintype = content_type.partition("/")[0]
    if maintype == "message":
        raise _NotSimple
    if maintype != "multipart":
        message.set_payload(text[position:end])
        return message
    boundary = message.get_boundary()
    if not boundary:
        raise _NotSimple
    if str(message.get("content-transfer-encoding", "8bit")).lower() not in (
        "7bit",
        "8bit",
        "binary",
    ):
        raise _NotSimple
    if any(b.startswith(boundary) or boundary.startswith(b) for b in boundaries):
        raise _NotSimple  # one line could close two levels
    _fast_multipart(text, position, end, message, boundary, (*boundaries, boundary))
    return message


def _boundary_line(text: str, at: int, end: int, separator: str) -> tuple[int, bool] | None:
    """(end of the line, is the close delimiter) when the line at ``at`` is a delimiter."""
    line_end = _line_end(text, at, end)
    rest = text[at + len(separator) : _without_eol(text, at, line_end)].rstrip(" \t")
    if rest == "":
        return line_end, False
    if rest == "--":
        return line_end, True
    return None


def _next_boundary(text: str, start: int, end: int, separator: str) -> tuple[int, int, bool] | None:
    """The first delimiter line at or after ``start``: (line start, line end, close)."""
    at = text.find(separator, start, end)
    while at >= 0:
        if at == start or text[at - 1] == "\n":
            found = _boundary_line(text, at, end, separator)
            if found is not None:
                return at, found[0], found[1]
        at = text.find(separator, at + 1, end)
    return None


def _fast_multipart(
    text: str, start: int, end: int, message: Message, boundary: str, stack: tuple[str, ...]
) -> None:
    separator = "--" + boundary
    found = _next_boundary(text, start, end, separator)
    if found is None or found[2]:
        raise _NotSimple  # no start delimiter, or a close delimiter first
    at, line_end, _ = found
    if at > start:
        message.preamble = text[start : _without_eol(text, start, at)]
    content_type = message.get_content_type()
    while True:
        found = _next_boundary(text, line_end, end, separator)
        if found is None:
            raise _NotSimple  # no close delimiter
        next_at, next_end, close = found
        if next_at == line_end:
            raise _NotSimple  # an empty part (two delimiters in a row)
        part = _fast_part(text, line_end, next_at, stack, parent_type=content_type)
        if part.get_content_maintype() == "multipart":
            # RFC 2046: the line break before a delimiter belongs to the delimiter.
            epilogue = part.epilogue
            if epilogue == "":
                part.epilogue = None
            elif epilogue is not None:
                part.epilogue = epilogue[: _without_eol(epilogue, 0, len(epilogue))]
        else:
            # the raw str, as the feed parser strips it (get_payload() would decode it)
            payload = part._payload  # type: ignore[attr-defined]
            if isinstance(payload, str):
                part.set_payload(payload[: _without_eol(payload, 0, len(payload))])
        message.attach(part)
        line_end = next_end
        if close:
            break
    message.epilogue = text[line_end:end]
