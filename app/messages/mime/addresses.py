"""Address headers: mailboxes out of raw To/Cc/From values, tolerant of what clients write."""

from __future__ import annotations

import re
from email import policy as email_policy
from email.utils import getaddresses

from app.messages.mime.charsets import unsurrogate
from app.messages.mime.headers import collapse, decode_words, merge_encoded_words, unfold
from app.messages.mime.model import MAX_HEADER_CHARS, Participant


def clean_address(value: str) -> str | None:
    address = value.strip().strip("<>").strip().lower()
    if address.startswith("mailto:"):
        address = address[len("mailto:") :]
    if not address or "@" not in address or any(c.isspace() for c in address):
        return None
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        return None
    return address


def _participant(name: str | None, address: str, hint: str | None) -> Participant | None:
    clean = clean_address(unsurrogate(address, hint))
    if clean is None:
        return None
    display = collapse(decode_words(name, hint)) if name else ""
    while len(display) >= 2 and display[0] == display[-1] and display[0] in "\"'":
        display = display[1:-1].strip()  # Outlook's "'Jane Doe'" and doubled quotes
    return Participant(name=display or None, address=clean)


def _split_top_level(value: str) -> list[str]:
    """Split an address list at commas outside quotes, comments and angle brackets."""
    segments: list[str] = []
    start = depth_angle = depth_comment = 0
    quoted = escaped = False
    for position, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            depth_comment += 1
        elif char == ")" and depth_comment:
            depth_comment -= 1
        elif char == "<" and not depth_comment:
            depth_angle += 1
        elif char == ">" and depth_angle and not depth_comment:
            depth_angle -= 1
        elif char == "," and not (depth_angle or depth_comment):
            segments.append(value[start:position])
            start = position + 1
    segments.append(value[start:])
    return segments


_BARE_NAME_WITH_AT = re.compile(r"\A(\s*)([^\"<>():;,]*@[^\"<>():;,]*?)\s*<([^<>]*)>\s*\Z")


def _quote_bare_names(value: str) -> str:
    """``alice@example.com <bob@example.com>`` names Bob's mailbox (that is how clients
    show and answer it), but the strict parser reads Alice's address and drops Bob's:
    a spoofing aid. Quote such display names before parsing."""
    if "@" not in value or "<" not in value:
        return value
    segments = _split_top_level(value)
    changed = False
    for i, segment in enumerate(segments):
        match = _BARE_NAME_WITH_AT.match(segment)
        if match:
            name = match.group(2).strip().replace("\\", "\\\\")
            segments[i] = f'{match.group(1)}"{name}" <{match.group(3)}>'
            changed = True
    return ",".join(segments) if changed else value


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_SIMPLE_MAILBOX = re.compile(
    rf"[ \t]*(?:([A-Za-z0-9!#$%&'*+/^_`{{|}}~ \t-]*?)[ \t]*<({_DOT_ATOM}@{_DOT_ATOM})>"
    rf"|({_DOT_ATOM}@{_DOT_ATOM}))[ \t]*"
)


def _simple_address_pairs(value: str) -> list[tuple[str, str]] | None:
    """(display name, address) of a list of plain mailboxes (``a@b.c``, ``Name <a@b.c>``:
    ASCII atoms only, no quotes, comments, groups, encoded words or empty entries), as
    the header registry reads them up to whitespace in names (which is collapsed
    afterwards); None for anything else. Most real headers are this simple, and the
    registry's full RFC 5322 parser costs ~0.1 ms per header."""
    if "=?" in value:
        return None
    pairs = []
    for item in value.split(","):
        match = _SIMPLE_MAILBOX.fullmatch(item)
        if match is None:
            return None
        if match.group(3) is not None:
            pairs.append(("", match.group(3)))
        else:
            pairs.append((match.group(1), match.group(2)))
    return pairs


def _registry_address_pairs(value: str) -> list[tuple[str, str]]:
    try:
        header = email_policy.default.header_factory("to", value)
        return [(a.display_name, a.addr_spec) for a in header.addresses]
    except Exception:
        # The structured parser gave up; the older tolerant one still finds mailboxes.
        try:
            return getaddresses([value])
        except Exception:
            return []


def parse_address_list(values: list[str], hint_charset: str | None = None) -> list[Participant]:
    """Mailboxes from raw address-header values; groups flattened, garbage dropped."""
    participants: list[Participant] = []
    for raw in values:
        value = unsurrogate(unfold(raw)[:MAX_HEADER_CHARS], hint_charset)
        value = _quote_bare_names(merge_encoded_words(value))
        pairs = _simple_address_pairs(value)
        if pairs is None:
            pairs = _registry_address_pairs(value)
        for name, address in pairs:
            participant = _participant(name, address, hint_charset)
            if participant is not None:
                participants.append(participant)
    return list(dict.fromkeys(participants))
