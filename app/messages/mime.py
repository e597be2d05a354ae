"""Parse one raw RFC 5322 / MIME message into what the service stores.

``parse_message`` is a pure function of the raw bytes and the body size limit. It never
raises: mail is written by thousands of programs and a sync must not stop on one bad
message. The stdlib ``email`` package does the MIME work (``policy.default``); headers are
read from their raw text and decoded here, because the structured header objects of
``policy.default`` can raise on malformed input, keep undecodable bytes as surrogates
and decode every encoded word on its own (which breaks characters split across words).

Conventions (callers and the matching code rely on them):

* Message ids (``internet_message_id``, ``in_reply_to``, ``references``,
  ``original_message_id``) and ``content_id`` are stored WITHOUT angle brackets, with
  whitespace removed and case kept (the left part of a msg-id is case-sensitive). Add the
  brackets back when writing ``In-Reply-To``/``References``.
* Addresses are stripped and lower-cased (see ``app.matching.normalize`` for why the
  local part is lower-cased too); entries without an ``@`` (group names,
  ``undisclosed-recipients:;``, garbage) are dropped. Display names are RFC 2047
  decoded, whitespace-collapsed, ``None`` when empty.
* ``sent_at`` is the Date header in UTC; ``None`` when missing, unparsable or before
  1980 (epoch-zero dates come from broken clocks, not from real mail).
* Bodies are text (str). All ``text/plain`` body parts are joined, and all ``text/html``
  body parts (Apple Mail splits HTML around inline images); in ``multipart/alternative``
  only the last part of each kind counts (RFC 2046: the last is the richest). The HTML
  body is sanitised (``app.messages.sanitize``). Each body is cut at
  ``body_limit_bytes`` UTF-8 bytes on a character boundary; ``truncated`` says whether
  either was cut. A body of exactly the limit is not truncated.
* Attachments are every non-body leaf part plus each attached message (``message/rfc822``
  as one ``.eml`` attachment; the parts inside it are not extracted). ``part_index`` is
  the position of the part in a depth-first, pre-order walk of the MIME tree (root = 0,
  containers counted, an attached message counted as one part), so it is stable for the
  same raw message. ``filename`` is never empty: a name is made up when the part has none.
* ``content_hash`` is a SHA-256 over normalised content (message id, subject, sender,
  To/Cc addresses, date, body text, attachment names/types/digests), not over the raw
  bytes, so the same message fetched from Gmail and from Graph hashes the same although
  the providers re-fold headers and re-encode parts.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import html as html_lib
import json
import logging
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from functools import partial
from io import BytesIO
from typing import Any, TypeVar, overload

from app.messages.sanitize import html_to_text, sanitize_html

logger = logging.getLogger(__name__)

SNIPPET_LENGTH = 200
# Parts deeper or more numerous than this are ignored: no real mail comes close, and
# the limits bound the work a hostile message can cause.
MAX_DEPTH = 40
MAX_PARTS = 2000
# Raw header values are cut here before parsing (a To: with thousands of recipients is
# ~100 KB; the stdlib parsers are not linear on every pathological input).
MAX_HEADER_CHARS = 256 * 1024
MAX_REFERENCES = 100
# Headers kept verbatim (decoded) for the sync and bounce logic.
HEADERS_OF_INTEREST = (
    "auto-submitted",
    "x-failed-recipients",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "list-id",
    "list-unsubscribe",
    "return-path",
    "x-ms-exchange-message-is-ndr",
)


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


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    internet_message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_: Participant | None
    to: list[Participant]
    cc: list[Participant]
    bcc: list[Participant]
    reply_to: list[Participant]
    sent_at: datetime | None
    text_body: str | None
    html_body: str | None
    snippet: str
    truncated: bool
    attachments: list[ParsedAttachment]
    is_delivery_report: bool
    # Auto-Submitted value ("auto-replied", "auto-generated", ...), lower-cased, or None.
    auto_submitted: str | None
    # X-Failed-Recipients plus the recipients a delivery report marks as failed.
    failed_recipients: list[str]
    # For a delivery report or a bounce: the Message-ID of the message that bounced.
    original_message_id: str | None
    headers_of_interest: dict[str, str]
    content_hash: str

    @property
    def is_bounce(self) -> bool:
        """A report of a permanent delivery failure (a delay report is not one)."""
        return bool(self.failed_recipients)


def parse_message(raw: bytes, *, body_limit_bytes: int) -> ParsedMessage:
    """Parse ``raw`` (see the module docstring for the conventions). Never raises."""
    # compat32 first: the extractor decodes headers itself, so the results are the same
    # (checked over the whole corpus), and it is ~2.5x faster than policy.default, whose
    # header registry re-parses Content-Type on every get_content_type() call.
    eight_bit = not raw.isascii()
    for policy in (email_policy.compat32, email_policy.default):
        try:
            message = _fast_tree(raw) if policy is email_policy.compat32 else None
            if message is None:
                message = BytesParser(policy=policy).parsebytes(raw)
            return _Extractor(message, body_limit_bytes, eight_bit=eight_bit).result()
        except Exception as exc:
            # Deliberately broad: one bad message must not stop a sync. The exception
            # text can quote header values, so only its type is logged.
            logger.warning("mime parse failed (%s); falling back", type(exc).__name__)
    try:
        # Typically a MIME tree nested past the parser's recursion limit: keep the
        # headers, show the body as raw text.
        message = BytesParser(policy=email_policy.default).parsebytes(raw, headersonly=True)
        return _Extractor(message, body_limit_bytes, walk_body=False, eight_bit=eight_bit).result()
    except Exception as exc:
        logger.warning("mime header parse failed (%s); storing raw text", type(exc).__name__)
    return _degraded(raw, body_limit_bytes)


# --- charsets -----------------------------------------------------------------------

# Labels that mail software uses for a smaller charset than it actually writes; decoding
# with the superset is what mail clients and browsers (WHATWG Encoding) do.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "euc-cn": ("gb18030",),
    "gb_2312-80": ("gb18030",),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "shift-jis": ("cp932", "shift_jis_2004"),
    "sjis": ("cp932", "shift_jis_2004"),
    "x-sjis": ("cp932", "shift_jis_2004"),
    "ms_kanji": ("cp932",),
    "windows-31j": ("cp932",),
    "csshiftjis": ("cp932",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004"),
    "csiso2022jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2"),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "euc-kr": ("cp949",),
    "ks_c_5601-1987": ("cp949",),
    "ksc5601": ("cp949",),
    "ks_c_5601": ("cp949",),
    "big5": ("cp950", "big5hkscs"),
    "tis-620": ("cp874",),
    "iso-8859-11": ("cp874",),
    "iso-8859-9": ("cp1254",),
}
# Labels under which UTF-8 is very often sent by mistake: try UTF-8 first, then cp1252
# (a superset of ISO-8859-1 and ASCII that decodes all but five byte values).
_LATIN_LABELS = frozenset(
    {
        "us-ascii", "ascii", "ansi_x3.4-1968", "iso-8859-1", "iso8859-1", "iso_8859-1",
        "latin1", "latin-1", "l1", "cp819", "windows-1252", "cp1252", "x-user-defined",
        "unknown-8bit", "x-unknown", "unknown", "default", "8bit", "7bit", "us",
    }
)  # fmt: skip
# Python text codecs that are not charsets anyone may choose for us.
_REFUSED_CODECS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined", "charmap"}
)


def _codec(name: str) -> str | None:
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def _declared_codecs(charset: str | None) -> tuple[str, list[str]]:
    label = (charset or "").strip().strip("\"'").lower().split(";", 1)[0].strip()
    if not label or label in _LATIN_LABELS:
        return label, []
    codecs_ = [c for c in (_codec(n) for n in _SUPERSETS.get(label, (label,))) if c]
    return label, list(dict.fromkeys(codecs_))


def decode_bytes(data: bytes, charset: str | None, *, utf8_first: bool = False) -> str:
    """Decode ``data`` declared as ``charset``; never raises, never returns surrogates.

    A declared charset (or its usual superset: gb2312 → gb18030, shift_jis → cp932, ...)
    is tried strictly, then UTF-8, then the declared charset with replacement characters.
    ASCII/Latin-1/cp1252 labels, no label and unknown labels try UTF-8 (so often sent
    under those labels by mistake), then windows-1252 (a superset of both) with
    replacement. ``utf8_first`` tries UTF-8 before the declared charset (raw headers).
    """
    _, declared = _declared_codecs(charset)
    candidates = ["utf-8", *declared] if utf8_first else [*declared, "utf-8"]
    for name in dict.fromkeys(candidates):
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError, ValueError):
            continue
    fallback = declared[0] if declared else "cp1252"
    return data.decode(fallback, "replace")


_SURROGATE_RUN = re.compile("[\udc80-\udcff]+")


def _unsurrogate(text: str, hint_charset: str | None = None) -> str:
    """Turn bytes the parser kept as surrogate escapes into text (UTF-8, hint, cp1252)."""
    if text.isascii() or not _SURROGATE_RUN.search(text):
        return _strip_bad_chars(text)

    def decode_run(match: re.Match[str]) -> str:
        data = match.group(0).encode("ascii", "surrogateescape")
        return decode_bytes(data, hint_charset, utf8_first=True)

    return _strip_bad_chars(_SURROGATE_RUN.sub(decode_run, text))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _strip_bad_chars(text: str) -> str:
    text = text.replace("\x00", "")
    if text.isascii():  # surrogates are not ASCII: skip the scan of most bodies
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


# --- header decoding ----------------------------------------------------------------

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
    value = _unsurrogate(value, hint_charset)
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


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n|\r", "", value)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def normalise_message_id(value: str | None) -> str | None:
    """``" <Abc@Example.com> (comment)"`` → ``"Abc@Example.com"``; ``None`` when empty."""
    if not value:
        return None
    match = re.search(r"<([^<>]*)>", value)
    token = match.group(1) if match else (value.split() or [""])[0]
    token = re.sub(r"\s+", "", token).strip("<>")
    return token[:998] or None


def _message_ids(value: str) -> list[str]:
    tokens = re.findall(r"<([^<>]*)>", value) or re.split(r"[\s,]+", value)
    ids = [normalise_message_id(f"<{token}>") for token in tokens]
    return list(dict.fromkeys(i for i in ids if i))


def _merge_encoded_words(value: str) -> str:
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
        label, declared = _declared_codecs(charset)
        if len(run) == 1 and label not in _SUPERSETS:
            out.append(run[0].group(0))
        else:
            data = b"".join(
                _decode_b(m.group(3)) if m.group(2) in "bB" else _decode_q(m.group(3)) for m in run
            )
            name = declared[0] if declared and label in _SUPERSETS else charset
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


def _clean_address(value: str) -> str | None:
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
    clean = _clean_address(_unsurrogate(address, hint))
    if clean is None:
        return None
    display = _collapse(decode_words(name, hint)) if name else ""
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
        value = _unsurrogate(_unfold(raw)[:MAX_HEADER_CHARS], hint_charset)
        value = _quote_bare_names(_merge_encoded_words(value))
        pairs = _simple_address_pairs(value)
        if pairs is None:
            pairs = _registry_address_pairs(value)
        for name, address in pairs:
            participant = _participant(name, address, hint_charset)
            if participant is not None:
                participants.append(participant)
    return list(dict.fromkeys(participants))


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(_unfold(value).strip())
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


# --- bodies -------------------------------------------------------------------------


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


def _cut_sanitised_html(safe: str, limit: int) -> tuple[str, bool]:
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


def _unflow(text: str, *, delsp: bool) -> str:
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


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_INVISIBLE = re.compile("[\u200b-\u200f\u034f\u00ad\u2060-\u2064\ufeff\u180e]")


def _visible(text: str) -> str:
    """``text`` without zero-width and other invisible characters (none in ASCII text)."""
    return text if text.isascii() else _INVISIBLE.sub("", text)


def make_snippet(text: str) -> str:
    """At most ``SNIPPET_LENGTH`` characters of ``text``, whitespace collapsed."""
    # Collapsing a prefix gives a prefix of the collapsed whole (at worst its last word
    # cut short), so a prefix that still collapses to SNIPPET_LENGTH characters or more
    # gives the same snippet as the whole text without collapsing kilobytes of it.
    head = _collapse(_visible(text[: SNIPPET_LENGTH * 5]))
    if len(head) < SNIPPET_LENGTH:
        head = _collapse(_visible(text[: SNIPPET_LENGTH * 50]))
    return head[:SNIPPET_LENGTH].rstrip()


_EXTENSIONS = {
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


def _clean_filename(name: str | None) -> str | None:
    if not name:
        return None
    name = _UNSAFE_FILENAME.sub("", _collapse(name))
    name = re.split(r"[\\/]", name)[-1].strip().lstrip(".").strip()
    return name[:255] or None


@dataclass(slots=True)
class _Bodies:
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)

    def extend(self, other: _Bodies) -> None:
        self.texts.extend(other.texts)
        self.htmls.extend(other.htmls)


_T = TypeVar("_T")
_D = TypeVar("_D")


@overload
def _safe(call: Callable[[], _T]) -> _T | None: ...
@overload
def _safe(call: Callable[[], _T], default: _D) -> _T | _D: ...
def _safe(call: Callable[[], Any], default: Any = None) -> Any:
    """``call()``, or ``default`` when the stdlib trips over a malformed part."""
    try:
        return call()
    except Exception:
        return default


class _Extractor:
    def __init__(
        self,
        message: Message,
        body_limit_bytes: int,
        *,
        walk_body: bool = True,
        eight_bit: bool = True,
    ):
        self.message = message
        self.walk_body = walk_body
        self.limit = max(0, body_limit_bytes)
        self.headers: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            if isinstance(name, str) and isinstance(value, str):
                self.headers.setdefault(name.strip().lower(), []).append(value)
        # The hint only ever decodes raw 8-bit bytes (surrogate escapes) in headers and
        # file names: a message that is ASCII throughout has none, so skip the walk.
        self.hint = self._body_charset_hint() if eight_bit else None
        self.attachments: list[ParsedAttachment] = []
        self.part_count = 0
        self.is_delivery_report = False
        self.dsn_failed: list[str] = []
        self.original_message_id: str | None = None

    # headers

    def _first(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0][:MAX_HEADER_CHARS] if values else None

    def _text_header(self, name: str) -> str | None:
        value = self._first(name)
        return _collapse(decode_words(_unfold(value), self.hint)) if value is not None else None

    def _addresses(self, name: str) -> list[Participant]:
        return parse_address_list(self.headers.get(name, []), self.hint)

    def _body_charset_hint(self) -> str | None:
        # Raw 8-bit headers are most often in the charset of the body, when it isn't UTF-8.
        for part in _safe(lambda: list(self.message.walk()), [])[:50]:
            charset = _safe(part.get_content_charset)
            if charset and charset.lower() not in _LATIN_LABELS and charset.lower() != "utf-8":
                return str(charset)
        return None

    # walk

    def _walk(self, part: Message, depth: int) -> _Bodies:
        index = self.part_count
        self.part_count += 1
        bodies = _Bodies()
        if depth > MAX_DEPTH or index >= MAX_PARTS:
            return bodies
        content_type = _safe(part.get_content_type, "text/plain") or "text/plain"
        maintype, _, subtype = content_type.partition("/")
        payload = _safe(lambda: part.get_payload(), None)
        if maintype == "multipart" and not isinstance(payload, list):
            # Missing or wrong boundary parameter: find the boundary in the body, else
            # show the body as text (what mail clients do).
            salvaged = _salvage_multipart(payload, subtype)
            if salvaged is None:
                text = decode_bytes(_payload_bytes(part), None)
                if text.strip():
                    bodies.texts.append(_strip_bad_chars(text.replace("\r\n", "\n")))
                return bodies
            payload = salvaged
        if maintype == "multipart" and isinstance(payload, list):
            parts = [child for child in payload if isinstance(child, Message)]
            if subtype == "report" and self._is_delivery_status_report(part):
                self.is_delivery_report = True
            children = [self._walk(child, depth + 1) for child in parts]
            if subtype == "alternative":
                texts = [c.texts for c in children if c.texts]
                htmls = [c.htmls for c in children if c.htmls]
                bodies.texts = texts[-1] if texts else []
                bodies.htmls = htmls[-1] if htmls else []
            else:
                for child in children:
                    bodies.extend(child)
            if subtype == "report":
                self._read_report(parts)
            return bodies
        if maintype == "message" and subtype in ("rfc822", "global"):
            self._add_attached_message(part, index)
            return bodies
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            self.dsn_failed.extend(_failed_recipients(_report_text(part)))
            self.is_delivery_report = True
        self._leaf(part, index, content_type, bodies)
        return bodies

    @staticmethod
    def _is_delivery_status_report(part: Message) -> bool:
        report_type = _safe(lambda: part.get_param("report-type"), None)
        return isinstance(report_type, str) and report_type.strip().lower() in (
            "delivery-status",
            "global-delivery-status",
        )

    def _read_report(self, children: list[Message]) -> None:
        for child in children:
            child_type = _safe(child.get_content_type, "")
            if child_type in ("message/rfc822", "message/global"):
                inner = _safe(partial(child.get_payload, 0), None)
                if isinstance(inner, Message):
                    ids = [v for n, v in inner.raw_items() if n.lower() == "message-id"]
                    if ids and self.original_message_id is None:
                        self.original_message_id = normalise_message_id(_unfold(str(ids[0])))
            elif child_type in (
                "text/rfc822-headers",
                "message/rfc822-headers",
                "message/global-headers",
            ):
                data = _payload_bytes(child)
                headers = _safe(partial(BytesHeaderParser().parsebytes, data), None)
                if headers is not None and self.original_message_id is None:
                    self.original_message_id = normalise_message_id(headers.get("message-id"))

    def _add_attached_message(self, part: Message, index: int) -> None:
        inner = _safe(lambda: part.get_payload(0), None)
        content = b""
        name = _clean_filename(decode_words(_safe(part.get_filename, None) or "", self.hint))
        if isinstance(inner, Message):
            content = _serialise(inner)
            if name is None:
                subjects = [str(v) for n, v in inner.raw_items() if n.lower() == "subject"]
                subject = _collapse(decode_words(_unfold(subjects[0]))) if subjects else ""
                name = _clean_filename(subject[:100])
                name = f"{name}.eml" if name else None
        self._attach(part, index, "message/rfc822", content, name)

    def _leaf(self, part: Message, index: int, content_type: str, bodies: _Bodies) -> None:
        disposition = _safe(part.get_content_disposition, None)
        raw_name = _safe(part.get_filename, None)
        filename = _clean_filename(decode_words(str(raw_name), self.hint)) if raw_name else None
        data = _payload_bytes(part)
        is_body = (
            content_type in ("text/plain", "text/html")
            and disposition != "attachment"
            and filename is None
        )
        if not is_body:
            self._attach(part, index, content_type, data, filename)
            return
        charset = _safe(part.get_content_charset, None)
        if content_type == "text/html":
            if charset is None:
                sniffed = _META_CHARSET.search(data[:2048])
                charset = sniffed.group(1).decode("ascii") if sniffed else None
            bodies.htmls.append(_strip_bad_chars(decode_bytes(data, charset)))
            return
        text = _strip_bad_chars(decode_bytes(data, charset))
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        fmt = _safe(lambda: part.get_param("format"), None)
        if isinstance(fmt, str) and fmt.lower() == "flowed":
            delsp = _safe(lambda: part.get_param("delsp"), None)
            text = _unflow(text, delsp=isinstance(delsp, str) and delsp.lower() == "yes")
        bodies.texts.append(text)

    def _attach(
        self,
        part: Message,
        index: int,
        content_type: str,
        content: bytes,
        filename: str | None,
    ) -> None:
        content_ids = self.headers_of(part, "content-id")
        content_id = normalise_message_id(_unfold(content_ids[0])) if content_ids else None
        if not content and filename is None and content_id is None:
            return  # an empty part with nothing to show (e.g. a blank alternative)
        disposition = _safe(part.get_content_disposition, None)
        is_inline = disposition == "inline" or (disposition is None and content_id is not None)
        if filename is None:
            extension = _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type)
            extension = extension or ".bin"
            filename = f"part-{index}{extension}"
        self.attachments.append(
            ParsedAttachment(
                filename=filename,
                content_type=content_type,
                size=len(content),
                content_id=content_id,
                is_inline=is_inline,
                part_index=index,
                content=content,
            )
        )

    @staticmethod
    def headers_of(part: Message, name: str) -> list[str]:
        return [str(v) for n, v in part.raw_items() if isinstance(n, str) and n.lower() == name]

    # result

    def result(self) -> ParsedMessage:
        if self.walk_body:
            bodies = self._walk(self.message, 0)
        else:
            payload = _safe(lambda: self.message.get_payload(), "")
            raw_body = (
                payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
            )
            bodies = _Bodies(texts=[_strip_bad_chars(decode_bytes(raw_body, None))])
        text_full = "\n\n".join(bodies.texts) if bodies.texts else None
        html_raw = "\n".join(bodies.htmls) if bodies.htmls else None

        truncated = False
        text_body = None
        if text_full is not None:
            text_body, cut = truncate_utf8(text_full, self.limit)
            truncated |= cut
        html_body = None
        safe = ""
        if html_raw is not None:
            # Bound the sanitiser's work on huge bodies: sanitising only shrinks mail HTML
            # in practice, so a raw prefix of 4x the limit still fills the limit.
            precut, cut_raw = truncate_utf8(html_raw, self.limit * 4 + 65536)
            safe = sanitize_html(precut)
            html_body, cut = _cut_sanitised_html(safe, self.limit)
            truncated |= cut or cut_raw

        has_text = text_full is not None and text_full.strip() != ""
        if has_text and text_full is not None:
            body_text = text_full
        else:  # the text of the HTML only counts when there is no text body
            body_text = html_to_text(safe) if html_raw is not None else ""
        snippet = make_snippet(body_text)

        subject = self._text_header("subject") or ""
        senders = self._addresses("from")
        to, cc = self._addresses("to"), self._addresses("cc")
        bcc, reply_to = self._addresses("bcc"), self._addresses("reply-to")
        message_id = normalise_message_id(_unfold(self._first("message-id") or ""))
        in_reply_to_ids = _message_ids(_unfold(self._first("in-reply-to") or ""))
        references = _message_ids(" ".join(_unfold(v) for v in self.headers.get("references", [])))
        if len(references) > MAX_REFERENCES:
            # Keep the thread root and the most recent ancestors.
            references = [references[0], *references[-(MAX_REFERENCES - 1) :]]
        sent_at = parse_date(self._first("date"))

        interesting = {}
        for name in HEADERS_OF_INTEREST:
            value = self._text_header(name)
            if value is not None:
                interesting[name] = value
        auto_submitted = interesting.get("auto-submitted")
        if auto_submitted is not None:
            auto_submitted = auto_submitted.split(";", 1)[0].strip().lower() or None

        failed: list[str] = []
        for value in self.headers.get("x-failed-recipients", []):
            for token in re.split(r"[\s,;]+", _unsurrogate(_unfold(value))):
                address = _clean_address(token)
                if address:
                    failed.append(address)
        failed.extend(self.dsn_failed)
        failed = list(dict.fromkeys(failed))
        original_id = self.original_message_id
        if original_id is None and failed and text_full:
            # Non-MIME bounces (qmail, older Gmail) quote the original headers as text.
            match = re.search(r"^\s*Message-ID:\s*(<[^>\s]+>)", text_full, re.I | re.M)
            original_id = normalise_message_id(match.group(1)) if match else None

        content_hash = _content_hash(
            message_id=message_id,
            subject=subject,
            sender=senders[0].address if senders else None,
            recipients=[p.address for p in (*to, *cc)],
            sent_at=sent_at,
            body=body_text,
            attachments=self.attachments,
        )
        return ParsedMessage(
            internet_message_id=message_id,
            in_reply_to=in_reply_to_ids[0] if in_reply_to_ids else None,
            references=references,
            subject=subject,
            from_=senders[0] if senders else None,
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            sent_at=sent_at,
            text_body=text_body,
            html_body=html_body,
            snippet=snippet,
            truncated=truncated,
            attachments=self.attachments,
            is_delivery_report=self.is_delivery_report,
            auto_submitted=auto_submitted,
            failed_recipients=failed,
            original_message_id=original_id,
            headers_of_interest=interesting,
            content_hash=content_hash,
        )


def _payload_bytes(part: Message) -> bytes:
    """The decoded content of a leaf part (base64 with or without padding, QP, 8bit)."""
    data = _safe(lambda: part.get_payload(decode=True), None)
    if isinstance(data, bytes):
        return data
    payload = _safe(lambda: part.get_payload(), None)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, list):
        return b"\n".join(_serialise(p) for p in payload if isinstance(p, Message))
    return b""


_BOUNDARY_LINE = re.compile(r"^--([^\s\"]{1,200})[ \t]*$", re.M)


def _salvage_multipart(payload: object, subtype: str) -> list[Message] | None:
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
    rebuilt = _safe(lambda: BytesParser(policy=email_policy.default).parsebytes(data), None)
    children = _safe(lambda: rebuilt.get_payload(), None) if rebuilt is not None else None
    if isinstance(children, list):
        return [child for child in children if isinstance(child, Message)] or None
    return None


# --- the MIME tree, fast path ---------------------------------------------------------
#
# The stdlib feed parser reads a message line by line (~1.5 us a line, and a fresh regex
# compiled for every boundary), which was most of the cost of a sync. `_fast_tree` builds
# the very same compat32 `Message` tree with `str.find` for the common, well-formed case,
# and returns None for anything that is not plainly that, so the stdlib parser gets it.
# What "the same" means is spelled out in tests/messages/test_mime_fast_paths.py, which
# compares both trees node by node (headers, payloads, preamble, epilogue, defects).

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


def _fast_tree(raw: bytes) -> Message | None:
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


_SERIALISE_POLICY = email_policy.compat32.clone(linesep="\r\n")


def _serialise(message: Message) -> bytes:
    """Bytes of an attached message. compat32 writes the raw headers back as they came,
    where ``policy.default`` would refold them (and can raise on malformed ones)."""
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=_SERIALISE_POLICY).flatten(message)
    except Exception:
        return _safe(lambda: message.as_bytes(policy=_SERIALISE_POLICY), b"") or b""
    return buffer.getvalue()


def _report_text(part: Message) -> str:
    payload = _safe(lambda: part.get_payload(), None)
    if isinstance(payload, list):
        blocks = []
        for block in payload:
            if isinstance(block, Message):
                blocks.append("\n".join(f"{n}: {_unfold(str(v))}" for n, v in block.raw_items()))
        return "\n\n".join(blocks)
    return decode_bytes(_payload_bytes(part), "utf-8")


def _failed_recipients(report: str) -> list[str]:
    """Recipients with ``Action: failed`` in a delivery-status body (RFC 3464)."""
    failed: list[str] = []
    report = re.sub(r"\r?\n[ \t]+", " ", report.replace("\r\n", "\n"))
    for block in re.split(r"\n\s*\n", report):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                fields.setdefault(name.strip().lower(), value.strip())
        recipient = fields.get("final-recipient") or fields.get("original-recipient")
        action = fields.get("action", "").lower()
        if recipient and action.startswith("failed"):
            address = _clean_address(recipient.partition(";")[2] or recipient)
            if address:
                failed.append(address)
    return failed


def _content_hash(
    *,
    message_id: str | None,
    subject: str,
    sender: str | None,
    recipients: list[str],
    sent_at: datetime | None,
    body: str,
    attachments: list[ParsedAttachment],
) -> str:
    document = {
        "message_id": message_id,
        "subject": subject,
        "from": sender,
        "recipients": sorted(set(recipients)),
        "sent_at": sent_at.isoformat() if sent_at else None,
        "body": _collapse(_visible(body)),
        "attachments": sorted(
            [a.filename, a.content_type, hashlib.sha256(a.content).hexdigest()] for a in attachments
        ),
    }
    canonical = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "replace")).hexdigest()


def _degraded(raw: bytes, body_limit_bytes: int) -> ParsedMessage:
    """Last resort when both parser runs failed: the raw bytes as a text body."""
    text = _strip_bad_chars(decode_bytes(raw, None))
    body, truncated = truncate_utf8(text, max(0, body_limit_bytes))
    return ParsedMessage(
        internet_message_id=None,
        in_reply_to=None,
        references=[],
        subject="",
        from_=None,
        to=[],
        cc=[],
        bcc=[],
        reply_to=[],
        sent_at=None,
        text_body=body,
        html_body=None,
        snippet=make_snippet(text),
        truncated=truncated,
        attachments=[],
        is_delivery_report=False,
        auto_submitted=None,
        failed_recipients=[],
        original_message_id=None,
        headers_of_interest={},
        content_hash=hashlib.sha256(raw).hexdigest(),
    )
