"""RFC 822 helpers shared by the Gmail and Graph fakes (stdlib `email` only).

The stored raw message is the one source of truth: both wire formats are rendered from
it, and messages the service composes through Graph JSON are first turned into MIME here.
Parsing uses the compat32 policy so header values stay exactly as they were sent.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import format_datetime, formataddr, getaddresses, make_msgid, parsedate_to_datetime
from typing import Any

_HEADER_PARSER = BytesHeaderParser(policy=policy.compat32)
_CRLF = policy.compat32.clone(linesep="\r\n")
_WS = re.compile(r"\s+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MSGID = re.compile(r"<[^<>\s]+>")
_TAG = re.compile(r"<[^>]*>")
_BLOCK_END = re.compile(r"(?i)<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>")
_INVISIBLE = re.compile(r"(?is)<(style|script|head)\b.*?</\1\s*>")


def graph_id(prefix: str, counter: int) -> str:
    """A Graph-looking opaque id: base64 with `-`, `_` and `=` like the real ones."""
    payload = secrets.token_bytes(30) + counter.to_bytes(4, "big")
    return prefix + base64.urlsafe_b64encode(payload).decode()


def b64url(data: bytes, *, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (also tolerates the standard alphabet)."""
    cleaned = "".join(text.split()).replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def b64_decode_strict(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    data = b"".join(data.split())
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64") from exc


# --------------------------------------------------------------------------- parsing


def _blank_line(raw: bytes) -> tuple[int, int] | None:
    """Start and end of the blank line that ends the header block, if any."""
    found = [(i, i + n) for i, n in ((raw.find(b"\r\n\r\n"), 4), (raw.find(b"\n\n"), 2)) if i >= 0]
    return min(found) if found else None


def header_block(raw: bytes) -> bytes:
    blank = _blank_line(raw)
    return raw[: blank[0] + 2] if blank else raw


def body_of(raw: bytes) -> bytes:
    blank = _blank_line(raw)
    return raw[blank[1] :] if blank else b""


def parse_headers(raw: bytes) -> Message:
    """Only the header block: cheap enough to run on every seeded message."""
    return _HEADER_PARSER.parsebytes(header_block(raw), headersonly=True)


def parse(raw: bytes) -> Message:
    return message_from_bytes(raw, policy=policy.compat32)


def raw_header_value(value: Any) -> str:
    """A header value as sent, unfolded; undecodable bytes become U+FFFD."""
    if not isinstance(value, str):
        value = str(value)
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _FOLD.sub("", value).strip()


def decode_words(value: Any) -> str:
    """RFC 2047 encoded words → text; never raises."""
    text = raw_header_value(value)
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, UnicodeError, ValueError, binascii.Error):
        return text


_THREAD_HEADER = re.compile(
    rb"^(message-id|in-reply-to|references)[ \t]*:(.*(?:\r?\n[ \t].*)*)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(slots=True)
class ThreadHeaders:
    """Message-ID and what it replies to, scanned without a full header parse (seeding 20,000
    messages must stay fast)."""

    message_id: str | None
    references: list[str]


def thread_headers(raw: bytes) -> ThreadHeaders:
    found: dict[bytes, str] = {}
    for match in _THREAD_HEADER.finditer(header_block(raw)):
        found.setdefault(match.group(1).lower(), match.group(2).decode("utf-8", "replace"))
    ids = _MSGID.findall(found.get(b"message-id", ""))
    references = _MSGID.findall(found.get(b"in-reply-to", ""))
    references += reversed(_MSGID.findall(found.get(b"references", "")))
    return ThreadHeaders(message_id=ids[0] if ids else None, references=references)


def message_id_of(headers: Message) -> str | None:
    value = headers.get("Message-ID")
    if not value:
        return None
    found = _MSGID.findall(raw_header_value(value))
    return found[0] if found else None


def references_of(headers: Message) -> list[str]:
    """Ids this message replies to, nearest first (In-Reply-To, then References backwards)."""
    ids: list[str] = []
    for name in ("In-Reply-To", "References"):
        value = headers.get(name)
        if value:
            found = _MSGID.findall(raw_header_value(value))
            ids.extend(found if name == "In-Reply-To" else reversed(found))
    return ids


def addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    values = [decode_words(v) for v in msg.get_all(name, [])]
    return [(n, a) for n, a in getaddresses(values) if a]


def date_of(msg: Message) -> datetime | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(raw_header_value(value))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# --------------------------------------------------------------------------- parts


@dataclass(slots=True)
class Part:
    part: Message
    part_id: str
    """Gmail numbering: "" for the top, "0", "1", then "0.1" for nested parts."""
    mime_type: str
    filename: str
    disposition: str | None
    content_id: str | None
    is_container: bool

    @property
    def is_attachment(self) -> bool:
        if self.is_container:
            return False
        return (
            bool(self.filename)
            or self.disposition == "attachment"
            or (self.mime_type == "message/rfc822")
        )

    def content(self) -> bytes:
        """The transfer-decoded bytes of a leaf part."""
        if self.part.is_multipart():
            # message/rfc822 and message/delivery-status arrive parsed into sub-messages;
            # their content is the body of the part, flattened back with CRLF.
            return body_of(self.part.as_bytes(policy=_CRLF))
        payload = self.part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""

    def text(self) -> str:
        data = self.content()
        charset = self.part.get_content_charset() or "utf-8"
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = "utf-8"
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace")


def walk(msg: Message) -> Iterator[Part]:
    """Every part, depth first, with Gmail part ids (only multipart/* has children)."""

    def visit(part: Message, part_id: str) -> Iterator[Part]:
        mime_type = part.get_content_type()
        container = part.get_content_maintype() == "multipart" and part.is_multipart()
        disposition = part.get_content_disposition()
        content_id = part.get("Content-ID")
        yield Part(
            part=part,
            part_id=part_id,
            mime_type=mime_type,
            filename=decode_words(part.get_filename() or ""),
            disposition=disposition,
            content_id=raw_header_value(content_id).strip("<>") if content_id else None,
            is_container=container,
        )
        if container:
            children = part.get_payload()
            assert isinstance(children, list)
            for index, child in enumerate(children):
                yield from visit(child, f"{part_id}.{index}" if part_id else str(index))

    yield from visit(msg, "")


@dataclass(slots=True)
class Bodies:
    text: str | None
    html: str | None

    def as_text(self) -> str:
        if self.text is not None:
            return self.text
        return html_to_text(self.html) if self.html is not None else ""

    def as_html(self) -> str:
        if self.html is not None:
            return self.html
        escaped = html.escape(self.text or "").replace("\r\n", "\n").replace("\n", "<br>\r\n")
        return (
            '<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f"\r\n</head>\r\n<body>\r\n<div>{escaped}</div>\r\n</body>\r\n</html>\r\n"
        )


class Parsed:
    """A parsed message with its part tree walked once (what the renderers need)."""

    __slots__ = ("_bodies", "msg", "parts")

    def __init__(self, raw: bytes) -> None:
        self.msg = parse(raw)
        self.parts = list(walk(self.msg))
        self._bodies: Bodies | None = None

    @property
    def attachments(self) -> list[Part]:
        return [p for p in self.parts if p.is_attachment]

    def find(self, part_id: str) -> Part | None:
        return next((p for p in self.parts if p.part_id == part_id), None)

    def bodies(self) -> Bodies:
        if self._bodies is None:
            text: str | None = None
            html_body: str | None = None
            for part in self.parts:
                if part.is_container or part.is_attachment:
                    continue
                if part.mime_type == "text/plain" and text is None:
                    text = part.text()
                elif part.mime_type == "text/html" and html_body is None:
                    html_body = part.text()
            self._bodies = Bodies(text=text, html=html_body)
        return self._bodies

    def preview(self, limit: int) -> str:
        return _WS.sub(" ", self.bodies().as_text()).strip()[:limit]


GMAIL_SNIPPET_LENGTH = 200


def gmail_snippet(parsed: Parsed) -> str:
    """Gmail's `snippet`: the start of the text, HTML-escaped."""
    text = parsed.preview(GMAIL_SNIPPET_LENGTH)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def html_to_text(markup: str) -> str:
    markup = _INVISIBLE.sub("", markup)
    markup = _BLOCK_END.sub("\n", markup)
    return html.unescape(_TAG.sub("", markup)).strip()


# --------------------------------------------------------------------------- composing


class CompositionError(ValueError):
    """The Graph JSON cannot become a message (the text says why, for a 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _recipient(entry: Any) -> tuple[str, str]:
    try:
        email = entry["emailAddress"]
        address = str(email["address"]).strip()
    except (KeyError, TypeError) as exc:
        raise CompositionError("ErrorInvalidRecipients", "Invalid recipient.") from exc
    if "@" not in address:
        raise CompositionError("ErrorInvalidRecipients", f"Invalid recipient: {address}")
    return str(email.get("name") or ""), address


def recipients(message: dict[str, Any], key: str) -> list[tuple[str, str]]:
    entries = message.get(key) or []
    if not isinstance(entries, list):
        raise CompositionError("ErrorInvalidRecipients", f"{key} must be a collection.")
    return [_recipient(e) for e in entries]


def build_from_graph(
    message: dict[str, Any],
    *,
    sender: tuple[str, str],
    message_id: str,
    date: datetime,
    in_reply_to: str | None = None,
    references: str | None = None,
) -> bytes:
    """Render Graph message JSON as RFC 822, the way Exchange would transmit it (Bcc kept:
    this is the sender's copy)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = formataddr(sender)
    for key, header in (
        ("toRecipients", "To"),
        ("ccRecipients", "Cc"),
        ("bccRecipients", "Bcc"),
        ("replyTo", "Reply-To"),
    ):
        found = recipients(message, key)
        if found:
            msg[header] = ", ".join(formataddr(r) for r in found)
    msg["Subject"] = str(message.get("subject") or "")
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for header in message.get("internetMessageHeaders") or []:
        name = str(header.get("name", ""))
        if not name.lower().startswith("x-"):
            raise CompositionError(
                "InvalidInternetMessageHeader",
                "The internet message header name should start with 'x-' or 'X-'.",
            )
        msg[name] = str(header.get("value", ""))
    body = message.get("body") or {}
    content = str(body.get("content") or "")
    if str(body.get("contentType", "text")).lower() == "html":
        msg.set_content(content, subtype="html")
    else:
        msg.set_content(content)
    for attachment in message.get("attachments") or []:
        _attach(msg, attachment)
    return msg.as_bytes()


def _attach(msg: EmailMessage, attachment: dict[str, Any]) -> None:
    kind = attachment.get("@odata.type", "#microsoft.graph.fileAttachment")
    if kind.lower() != "#microsoft.graph.fileattachment":
        raise CompositionError("ErrorInvalidRequest", f"Unsupported attachment type {kind}.")
    try:
        data = b64_decode_strict(attachment.get("contentBytes") or "")
    except ValueError as exc:
        raise CompositionError("ErrorInvalidRequest", "contentBytes is not valid base64.") from exc
    name = str(attachment.get("name") or "attachment")
    content_type = str(attachment.get("contentType") or "application/octet-stream").lower()
    maintype, _, subtype = content_type.partition("/")
    disposition = "inline" if attachment.get("isInline") else "attachment"
    cid = attachment.get("contentId")
    if maintype in ("message", "multipart") or not subtype:
        maintype, subtype = "application", "octet-stream"
    msg.add_attachment(
        data,
        maintype=maintype,
        subtype=subtype,
        filename=name,
        disposition=disposition,
        cid=f"<{cid}>" if cid else None,
    )


def ensure_message_id_and_date(raw: bytes, *, domain: str, now: datetime) -> bytes:
    """Providers add Message-ID and Date when the client left them out."""
    headers = parse_headers(raw)
    extra = b""
    if not headers.get("Message-ID"):
        extra += f"Message-ID: {make_msgid(domain=domain)}\r\n".encode()
    if not headers.get("Date"):
        extra += f"Date: {format_datetime(now)}\r\n".encode()
    return extra + raw


def has_recipients(raw: bytes) -> bool:
    headers = parse_headers(raw)
    return any(addresses(headers, name) for name in ("To", "Cc", "Bcc"))
