"""Body text and HTML: cutting to the limit, format=flowed, snippets, part payloads."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser
from io import BytesIO
from typing import Any, TypeVar, overload

from app.messages.mime.headers import collapse
from app.messages.sanitize import html_to_text, sanitize_html

SNIPPET_LENGTH = 200


def truncate_utf8(text: str, limit: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes on a character boundary."""
    if len(text) * 4 <= limit:
        return text, False
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text, False
    return encoded[: max(limit, 0)].decode("utf-8", "ignore"), True


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def cut_sanitised_html(safe: str, limit: int) -> tuple[str, bool]:
    if _utf8_len(safe) <= limit:
        return safe, False
    target = limit
    for _ in range(6):
        cut, _ = truncate_utf8(safe, target)
        # Sanitising the cut closes the tags left open and drops a tag cut in half.
        result = sanitize_html(cut)
        size = _utf8_len(result)
        if size <= limit:
            return result, True
        target -= size - limit + 64
        if target <= 0:
            break
    text, _ = truncate_utf8(html_lib.escape(html_to_text(safe)), limit)
    return text, True


def unflow(text: str, *, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: join soft-broken lines, remove space-stuffing."""
    out: list[str] = []
    buffer = ""
    buffer_depth: int | None = None
    for line in text.split("\n"):
        line = line.rstrip("\r")
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]
        if buffer_depth is not None and depth != buffer_depth:
            out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
            buffer, buffer_depth = "", None
        soft = content.endswith(" ") and content != "-- "
        if soft and delsp:
            content = content[:-1]
        buffer += content
        buffer_depth = depth
        if not soft:
            out.append(">" * depth + (" " if depth and buffer else "") + buffer)
            buffer, buffer_depth = "", None
    if buffer_depth is not None:
        out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
    return "\n".join(out)


META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_INVISIBLE = re.compile("[\u200b-\u200f\u034f\u00ad\u2060-\u2064\ufeff\u180e]")


def visible(text: str) -> str:
    """``text`` without zero-width and other invisible characters (none in ASCII text)."""
    return text if text.isascii() else _INVISIBLE.sub("", text)


def make_snippet(text: str) -> str:
    """At most ``SNIPPET_LENGTH`` characters of ``text``, whitespace collapsed."""
    # Collapsing a prefix gives a prefix of the collapsed whole (at worst its last word
    # cut short), so a prefix that still collapses to SNIPPET_LENGTH characters or more
    # gives the same snippet as the whole text without collapsing kilobytes of it.
    head = collapse(visible(text[: SNIPPET_LENGTH * 5]))
    if len(head) < SNIPPET_LENGTH:
        head = collapse(visible(text[: SNIPPET_LENGTH * 50]))
    return head[:SNIPPET_LENGTH].rstrip()


EXTENSIONS = {
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/global-delivery-status": ".txt",
    "message/rfc822-headers": ".txt",
    "text/rfc822-headers": ".txt",
    "message/disposition-notification": ".txt",
    "text/calendar": ".ics",
}
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f]")


def clean_filename(name: str | None) -> str | None:
    if not name:
        return None
    name = _UNSAFE_FILENAME.sub("", collapse(name))
    name = re.split(r"[\\/]", name)[-1].strip().lstrip(".").strip()
    return name[:255] or None


@dataclass(slots=True)
class Bodies:
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)

    def extend(self, other: Bodies) -> None:
        self.texts.extend(other.texts)
        self.htmls.extend(other.htmls)


_T = TypeVar("_T")
_D = TypeVar("_D")


@overload
def safe_call(call: Callable[[], _T]) -> _T | None: ...
@overload
def safe_call(call: Callable[[], _T], default: _D) -> _T | _D: ...
def safe_call(call: Callable[[], Any], default: Any = None) -> Any:
    """``call()``, or ``default`` when the stdlib trips over a malformed part."""
    try:
        return call()
    except Exception:
        return default


def payload_bytes(part: Message) -> bytes:
    """The decoded content of a leaf part (base64 with or without padding, QP, 8bit)."""
    data = safe_call(lambda: part.get_payload(decode=True), None)
    if isinstance(data, bytes):
        return data
    payload = safe_call(lambda: part.get_payload(), None)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, list):
        return b"\n".join(serialise(p) for p in payload if isinstance(p, Message))
    return b""


_BOUNDARY_LINE = re.compile(r"^--([^\s\"]{1,200})[ \t]*$", re.M)


def salvage_multipart(payload: object, subtype: str) -> list[Message] | None:
    """Re-parse a multipart body whose declared boundary never occurs in it. The boundary
    is the first ``--token`` line that occurs twice or, failing that, the first one that
    is followed by a header line."""
    if not isinstance(payload, str) or not payload:
        return None
    text = payload[: 64 * 1024 * 1024]
    counts: dict[str, int] = {}
    boundary = None
    first_before_header = None
    for match in _BOUNDARY_LINE.finditer(text):
        token = match.group(1)
        token = token[:-2] if token.endswith("--") and token[:-2] in counts else token
        counts[token] = counts.get(token, 0) + 1
        if counts[token] >= 2:
            boundary = token
            break
        following = text[match.end() : match.end() + 200].lstrip("\r\n")
        if first_before_header is None and re.match(r"[A-Za-z][A-Za-z0-9-]*:", following):
            first_before_header = token
    boundary = boundary or first_before_header
    if boundary is None:
        return None
    head = f'Content-Type: multipart/{subtype or "mixed"}; boundary="{boundary}"\r\n\r\n'
    data = head.encode("ascii", "replace") + text.encode("utf-8", "surrogateescape")
    rebuilt = safe_call(lambda: BytesParser(policy=email_policy.default).parsebytes(data), None)
    children = safe_call(lambda: rebuilt.get_payload(), None) if rebuilt is not None else None
    if isinstance(children, list):
        return [child for child in children if isinstance(child, Message)] or None
    return None


_SERIALISE_POLICY = email_policy.compat32.clone(linesep="\r\n")


def serialise(message: Message) -> bytes:
    """Bytes of an attached message. compat32 writes the raw headers back as they came,
    where ``policy.default`` would refold them (and can raise on malformed ones)."""
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=_SERIALISE_POLICY).flatten(message)
    except Exception:
        return safe_call(lambda: message.as_bytes(policy=_SERIALISE_POLICY), b"") or b""
    return buffer.getvalue()
