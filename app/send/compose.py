"""The RFC 822 message of a send, built with the standard library's `email` package.

Pure functions: the send job gathers the row, the attachments' bytes and the threading
ids, and gets bytes back (CRLF line endings, `policy.SMTP`). Attachments go in as bytes
with base64 transfer encoding, so they arrive byte-identical.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from app.messages.sanitize import html_to_text

SEND_MARKER_HEADER = "X-CE-Message-ID"
"""Carries the Message-ID we generated. Graph assigns its own Message-ID, but passes `x-`
headers through, so a retry whose previous attempt may have gone out can still recognise
that attempt's copy in the Sent folder (see `app.send.service`)."""

_CONTENT_TYPE = re.compile(r"\A[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}\Z")
# base64 lines of 76 characters + CRLF: 57 bytes of content per 78 bytes on the wire.
_B64_LINE_BYTES = 57
_B64_LINE_WIRE = 78
_PART_OVERHEAD = 512  # boundary, part headers
_HEADERS_OVERHEAD = 4096


@dataclass(frozen=True)
class Mailbox:
    address: str
    name: str | None = None


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Composition:
    sender: Mailbox
    to: Sequence[Mailbox]
    cc: Sequence[Mailbox]
    bcc: Sequence[Mailbox]
    subject: str
    text: str | None = field(repr=False)
    html: str | None = field(repr=False)
    message_id: str
    """Without angle brackets."""
    date: datetime
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    attachments: Sequence[OutgoingAttachment] = ()


def _address(mailbox: Mailbox) -> Address:
    local, _, domain = mailbox.address.rpartition("@")
    return Address(display_name=mailbox.name or "", username=local, domain=domain)


def _bracketed(message_id: str) -> str:
    return f"<{message_id.strip().strip('<>')}>"


def content_type_parts(value: str | None) -> tuple[str, str]:
    """`maintype, subtype` of a document's content type. Container types (message/*,
    multipart/*) and anything unparsable travel as application/octet-stream: the bytes
    are what matters, and base64 is not allowed on those types."""
    content_type = (value or "").split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.match(content_type):
        return "application", "octet-stream"
    maintype, subtype = content_type.split("/", 1)
    if maintype in ("message", "multipart"):
        return "application", "octet-stream"
    return maintype, subtype


def build_message(c: Composition) -> bytes:
    """The complete message (To/Cc/Bcc decide the recipients at the provider; the
    provider strips Bcc from what recipients see)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _address(c.sender)
    for header, people in (("To", c.to), ("Cc", c.cc), ("Bcc", c.bcc)):
        if people:
            msg[header] = [_address(p) for p in people]
    msg["Subject"] = c.subject
    msg["Date"] = format_datetime(c.date)
    msg["Message-ID"] = _bracketed(c.message_id)
    if c.in_reply_to:
        msg["In-Reply-To"] = _bracketed(c.in_reply_to)
    if c.references:
        msg["References"] = " ".join(_bracketed(r) for r in c.references)
    msg[SEND_MARKER_HEADER] = _bracketed(c.message_id)

    text, html = c.text, c.html
    if html and not text:
        # a plain alternative for clients (and filters) that want one
        text = html_to_text(html).strip() or None
    if text and html:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text or "")

    for attachment in c.attachments:
        maintype, subtype = content_type_parts(attachment.content_type)
        msg.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename or "attachment",
        )
    return msg.as_bytes()


def _base64_size(size: int) -> int:
    return -(-size // _B64_LINE_BYTES) * _B64_LINE_WIRE


def estimate_message_size(
    *, subject: str, text: str | None, html: str | None, attachment_sizes: Sequence[int]
) -> int:
    """An upper estimate of `build_message`'s output size, from what is known at request
    time: bodies as base64 (the worst transfer encoding) plus the attachments' base64."""
    body_bytes = [len(s.encode("utf-8")) for s in (text, html) if s]
    if html:
        # tracking adds a pixel and longer (rewritten) links
        body_bytes.append(len(html.encode("utf-8")) // 4 + 2048)
    if html and not text:
        body_bytes.append(len(html.encode("utf-8")))  # the derived plain alternative
    total = _HEADERS_OVERHEAD + len(subject.encode("utf-8")) * 2
    total += sum(_base64_size(n) + _PART_OVERHEAD for n in body_bytes)
    total += sum(_base64_size(n) + _PART_OVERHEAD for n in attachment_sizes)
    return total
