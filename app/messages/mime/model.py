"""What a parsed message is (`ParsedMessage`) and the limits that bound the parse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Parts deeper or more numerous than this are ignored: no real mail comes close, and
# the limits bound the work a hostile message can cause.
MAX_DEPTH = 40
MAX_PARTS = 2000
# Raw header values are cut here before parsing (a To: with thousands of recipients is
# ~100 KB; the stdlib parsers are not linear on every pathological input).
MAX_HEADER_CHARS = 256 * 1024


@dataclass(frozen=True, slots=True)
class Participant:
    name: str | None
    address: str


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    filename: str
    content_type: str
    size: int
    content_id: str | None
    is_inline: bool
    part_index: int
    content: bytes = field(repr=False)
    sha256: str
    """Hex SHA-256 of the content, computed once when parsed (the content hash and the
    PF-11 document both use it)."""


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    internet_message_id: str | None
    in_reply_to: str | None
    subject: str
    from_: Participant | None
    to: list[Participant]
    cc: list[Participant]
    bcc: list[Participant]
    sent_at: datetime | None
    text_body: str | None
    html_body: str | None
    snippet: str
    truncated: bool
    attachments: list[ParsedAttachment]
    content_hash: str
