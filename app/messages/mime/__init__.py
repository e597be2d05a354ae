"""Parsing raw RFC 5322 / MIME mail: `parse_message` and what it returns.

The package, by concern: `parse` (the entry point and its fallbacks), `extract` (the walk
over the MIME tree), `fast_tree` (a fast builder of the stdlib tree for plain mail),
`charsets`, `headers`, `addresses`, `bodies`, `hashing`, `model`, and `dsn` (RFC 3464
delivery reports, read for bounce detection).
"""

from app.messages.mime.bodies import SNIPPET_LENGTH, make_snippet, truncate_utf8
from app.messages.mime.charsets import decode_bytes
from app.messages.mime.headers import decode_words, normalise_message_id
from app.messages.mime.model import ParsedAttachment, ParsedMessage, Participant
from app.messages.mime.parse import parse_message

__all__ = [
    "SNIPPET_LENGTH",
    "ParsedAttachment",
    "ParsedMessage",
    "Participant",
    "decode_bytes",
    "decode_words",
    "make_snippet",
    "normalise_message_id",
    "parse_message",
    "truncate_utf8",
]
