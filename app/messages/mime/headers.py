"""Header values: RFC 2047 encoded words, message ids and dates."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from app.messages.mime.charsets import SUPERSETS, declared_codecs, decode_bytes, unsurrogate

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


def _decode_q(text: str) -> bytes:
    data = text.replace("_", " ").encode("ascii", "replace")
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)


def _decode_b(text: str) -> bytes:
    data = re.sub(r"[^A-Za-z0-9+/]", "", text)
    if len(data) % 4 == 1:
        data = data[:-1]
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return b""


def decode_words(value: str, hint_charset: str | None = None) -> str:
    """Decode RFC 2047 encoded words in ``value`` (also inside quotes, where they are not
    allowed but common). Whitespace between two encoded words is dropped and adjacent
    words in one charset are decoded together, so a character split across two words
    survives. Raw 8-bit bytes (surrogate escapes) are decoded as UTF-8, the hint, cp1252.
    """
    value = unsurrogate(value, hint_charset)
    if "=?" not in value:
        return value
    pieces: list[tuple[str | bytes, str | None]] = []
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        previous_encoded = bool(pieces) and pieces[-1][1] is not None
        if between and not (previous_encoded and between.isspace()):
            pieces.append((between, None))
        charset = match.group(1).split("*", 1)[0].lower()
        encoded = match.group(3)
        data = _decode_b(encoded) if match.group(2) in "bB" else _decode_q(encoded)
        last = pieces[-1] if pieces else None
        if last is not None and last[1] == charset and isinstance(last[0], bytes):
            pieces[-1] = (last[0] + data, charset)
        else:
            pieces.append((data, charset))
        position = match.end()
    pieces.append((value[position:], None))
    return "".join(
        decode_bytes(piece, charset) if isinstance(piece, bytes) else piece
        for piece, charset in pieces
    )


def unfold(value: str) -> str:
    return re.sub(r"\r?\n|\r", "", value)


def collapse(text: str) -> str:
    return " ".join(text.split())


def normalise_message_id(value: str | None) -> str | None:
    """``" <Abc@Example.com> (comment)"`` → ``"Abc@Example.com"``; ``None`` when empty."""
    if not value:
        return None
    match = re.search(r"<([^<>]*)>", value)
    token = match.group(1) if match else (value.split() or [""])[0]
    token = re.sub(r"\s+", "", token).strip("<>")
    return token[:998] or None


def message_ids(value: str) -> list[str]:
    tokens = re.findall(r"<([^<>]*)>", value) or re.split(r"[\s,]+", value)
    ids = [normalise_message_id(f"<{token}>") for token in tokens]
    return list(dict.fromkeys(i for i in ids if i))


def merge_encoded_words(value: str) -> str:
    """Join adjacent encoded words of one charset into one B-encoded word, so the stdlib
    parser (which decodes word by word and keeps the space between them) sees a
    character split across two words whole; also rewrite labels to their superset."""
    if "=?" not in value:
        return value
    out: list[str] = []
    position = 0
    run: list[re.Match[str]] = []

    def flush() -> None:
        if not run:
            return
        charset = run[0].group(1).split("*", 1)[0]
        label, declared = declared_codecs(charset)
        if len(run) == 1 and label not in SUPERSETS:
            out.append(run[0].group(0))
        else:
            data = b"".join(
                _decode_b(m.group(3)) if m.group(2) in "bB" else _decode_q(m.group(3)) for m in run
            )
            name = declared[0] if declared and label in SUPERSETS else charset
            out.append(f"=?{name}?B?{base64.b64encode(data).decode('ascii')}?=")
        run.clear()

    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        same_run = (
            run
            and gap.isspace()
            and run[-1].group(1).split("*", 1)[0].lower() == match.group(1).split("*", 1)[0].lower()
        )
        if not same_run:
            flush()
            out.append(gap)
        run.append(match)
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out)


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(unfold(value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return parsed if parsed.year >= 1980 else None
