"""Bounce (non-delivery) detection in raw messages found by sync.

`detect_bounce` reads a raw RFC 5322 message and says whether it reports a failed or delayed
delivery, for whom, and which sent message it is about. Three sources are combined:

- our own reading of every RFC 3464 `message/delivery-status` part (also RFC 6533
  `message/global-delivery-status`): per recipient block, `Action` decides (`failed` →
  permanent, `delayed` → delayed, `delivered`/`relayed`/`expanded` → neither); without an
  `Action`, the class of `Status` decides (5 → permanent, 4 → delayed);
- flufl.bounce's `all_failures`, which knows the non-standard formats (qmail, Exim and
  Postfix plain text, Gmail's "failed permanently" text, Exchange, Yahoo, AOL, ...) and
  plain-text delay warnings;
- the `X-Failed-Recipients` header (Exim, Gmail, Exchange): always permanent.

A recipient is permanent when the delivery-status part or `X-Failed-Recipients` says so,
or when flufl.bounce does and the delivery-status part does not call it delayed or
delivered (the structured field beats heuristics on prose). `delayed` holds only the
recipients nobody reported as permanent. A DSN that only says "delayed, will keep trying"
is not a bounce: the report then has an empty `permanent` set.

Linking to the sent message (`candidate_message_ids`, best first):
1. the `Message-ID` of the attached original (`message/rfc822`, `message/global`,
   `text/rfc822-headers`, `message/global-headers`, or `text/rfc822` as Zoho sends it);
2. `X-Original-Message-ID` (in the DSN's per-message block or in the outer headers);
3. the outer `In-Reply-To`, then the outer `References` from the newest id to the oldest;
4. `Message-ID:` lines of an original quoted inline in a text part (qmail, Yahoo) — a
   weaker source, so it comes last.
Ids are normalised by stripping whitespace and angle brackets only. Case is kept: the local
part of a Message-ID is case-sensitive (RFC 5322 §3.6.4 compares ids as opaque strings), so
the caller must compare them exactly as stored at send time.

Addresses are lower-cased (the caller matches them case-insensitively to what was sent).
Nothing here logs addresses, ids or text; malformed input never raises.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import logging
import quopri
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any

from flufl.bounce import _scan as flufl_scan
from flufl.bounce import all_failures

log = logging.getLogger(__name__)

_DELIVERY_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
# Parts whose payload is a whole message (the email package parses these into a Message).
_ATTACHED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
# Parts whose payload is text holding the original's headers (and maybe its body).
_ATTACHED_HEADER_TYPES = frozenset({"text/rfc822-headers", "message/global-headers", "text/rfc822"})
_STATUS_RE = re.compile(r"(?<![0-9.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])")
_BRACKETED_ID_RE = re.compile(r"<\s*([^<>\s]+?)\s*>")
_INLINE_MESSAGE_ID_RE = re.compile(r"^[ \t>]*Message-ID:[ \t]*<([^<>\s]+)>", re.I | re.M)
_FIELD_LINE_RE = re.compile(r"^([!-9;-~]+)[ \t]*:(.*)$")
# Beyond this many bytes of a text part we stop looking for inline Message-ID lines.
_INLINE_SCAN_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What a delivery status notification says. Its repr shows counts, never addresses."""

    permanent: frozenset[str]
    delayed: frozenset[str]
    original_message_id: str | None
    candidate_message_ids: list[str]
    reporting_mta: str | None
    status_codes: dict[str, str]

    def __repr__(self) -> str:
        return (
            f"BounceReport(permanent={len(self.permanent)}, delayed={len(self.delayed)}, "
            f"candidate_message_ids={len(self.candidate_message_ids)}, "
            f"status_codes={sorted(set(self.status_codes.values()))})"
        )

    __str__ = __repr__


def detect_bounce(raw: bytes) -> BounceReport | None:
    """Read a raw message; a `BounceReport` when it reports a failed or delayed delivery.

    None for ordinary mail, auto-replies, success DSNs (`Action: delivered/relayed/expanded`)
    and for bounces that name no recipient address at all (nothing to mark).
    """
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # the parser is lenient; this is a last line of defence
        log.warning("bounce parse failed", extra={"error_type": type(exc).__name__})
        return None

    dsn = _read_delivery_status(msg)
    permanent: set[str] = set(dsn.failed)
    delayed: set[str] = set(dsn.delayed)

    # Where the delivery-status part speaks about a recipient, its Action wins over
    # flufl.bounce's text heuristics (which may read "could not be delivered" in the prose of
    # a delay notice as a failure).
    temporary_flufl, permanent_flufl = _flufl_failures(msg)
    permanent |= permanent_flufl - dsn.delayed - dsn.delivered
    temporary_flufl -= dsn.delivered
    permanent |= _x_failed_recipients(msg)
    delayed |= temporary_flufl
    delayed -= permanent

    if not permanent and not delayed:
        return None

    candidates = _candidate_message_ids(msg, dsn.original_message_ids)
    status_codes = {
        address: code
        for address, code in dsn.status_codes.items()
        if address in permanent or address in delayed
    }
    return BounceReport(
        permanent=frozenset(permanent),
        delayed=frozenset(delayed),
        original_message_id=candidates[0] if candidates else None,
        candidate_message_ids=candidates,
        reporting_mta=dsn.reporting_mta,
        status_codes=status_codes,
    )


def normalise_message_id(value: str) -> str | None:
    """`<Abc@Host>` → `Abc@Host`: whitespace and angle brackets stripped, case kept."""
    ids = _message_ids(value)
    return ids[0] if ids else None


# --- RFC 3464 -------------------------------------------------------------------------


@dataclass
class _DeliveryStatus:
    failed: set[str]
    delayed: set[str]
    delivered: set[str]  # delivered, relayed, expanded
    status_codes: dict[str, str]
    reporting_mta: str | None
    original_message_ids: list[str]


def _read_delivery_status(msg: Message) -> _DeliveryStatus:
    result = _DeliveryStatus(set(), set(), set(), {}, None, [])
    try:
        for part in _walk(msg):
            if part.get_content_type() not in _DELIVERY_STATUS_TYPES:
                continue
            for fields in _field_blocks(part):
                _apply_block(fields, result)
    except Exception as exc:  # malformed structure: keep what was read so far
        log.warning("delivery-status read failed", extra={"error_type": type(exc).__name__})
    return result


def _apply_block(fields: dict[str, str], result: _DeliveryStatus) -> None:
    if "reporting-mta" in fields and result.reporting_mta is None:
        result.reporting_mta = _strip_type(fields["reporting-mta"]) or None
    if "x-original-message-id" in fields:
        result.original_message_ids.extend(_message_ids(fields["x-original-message-id"]))

    address = _recipient_address(fields)
    if address is None:
        return
    action = fields.get("action", "").strip().lower()
    status = _status_code(fields.get("status", "")) or _status_code(
        fields.get("diagnostic-code", "")
    )
    # Some MTAs add comments to the action; opensmtpd writes the non-standard "error".
    if action.startswith(("fail", "error")):
        result.failed.add(address)
    elif action.startswith("delay"):
        result.delayed.add(address)
    elif action:
        result.delivered.add(address)  # delivered, relayed, expanded: not a failure
        return
    elif status and status.startswith("5"):
        result.failed.add(address)
    elif status and status.startswith("4"):
        result.delayed.add(address)
    else:
        return
    if status:
        result.status_codes[address] = status


def _recipient_address(fields: dict[str, str]) -> str | None:
    """Original-Recipient (what the sender wrote) when usable, else Final-Recipient."""
    for name in ("original-recipient", "final-recipient"):
        value = fields.get(name)
        if not value:
            continue
        addr_type, sep, rest = value.partition(";")
        if sep:
            if addr_type.strip().lower() not in ("rfc822", "utf-8"):
                continue
            candidate = rest
        else:
            candidate = value
        address = _clean_address(candidate)
        if address is not None:
            return address
    return None


def _field_blocks(part: Message) -> Iterator[dict[str, str]]:
    """The header blocks of a delivery-status part, as {lower-case name: unfolded value}."""
    payload = part.get_payload()
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        # The email package already split the part into header blocks.
        for block in payload:
            if isinstance(block, Message):
                yield {name.lower(): _unfold(_header_text(v)) for name, v in block.items()}
        return
    text = _delivery_status_text(payload, encoding)
    yield from _parse_field_blocks(text)


def _delivery_status_text(payload: object, encoding: str) -> str:
    if isinstance(payload, list):
        text = "\n".join(block.as_string() for block in payload if isinstance(block, Message))
    elif isinstance(payload, str):
        text = payload
    else:
        return ""
    data = text.encode("ascii", "surrogateescape")
    try:
        if encoding == "base64":
            data = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", data) + b"==")
        elif encoding == "quoted-printable":
            data = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return ""
    return data.decode("utf-8", "replace")


def _parse_field_blocks(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    name: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, name = {}, None
            continue
        if line[0] in " \t" and name is not None:
            fields[name] = _unfold(fields[name] + " " + line)
            continue
        match = _FIELD_LINE_RE.match(line)
        if match:
            name = match.group(1).lower()
            fields.setdefault(name, _unfold(match.group(2)))
    if fields:
        yield fields


def _status_code(value: str) -> str | None:
    match = _STATUS_RE.search(value)
    return ".".join(match.groups()) if match else None


def _strip_type(value: str) -> str:
    """`dns; mx.example.com` → `mx.example.com`."""
    _type, sep, rest = value.partition(";")
    return (rest if sep else value).strip()


# --- other sources --------------------------------------------------------------------


def flufl_detectors() -> list[type[Any]] | None:
    """flufl.bounce's detector classes in its order; None should a release drop the list.
    (Also the seam through which tests put in a detector that crashes.)"""
    detectors = getattr(flufl_scan, "_DETECTORS", None)
    return detectors if isinstance(detectors, list) else None


def _flufl_failures(msg: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's temporary and permanent failures, as lower-cased addresses.

    `all_failures` stops at the first detector that raises — and Yale's raises on any
    message without a From header on current Pythons (`getaddresses([""])` is `[]`), Sina's
    on a non-ASCII From — so a plain qmail or Exim bounce would go unread. We therefore run
    flufl's own detector list, in its order and with its rule (the first detector that finds
    anything wins), skipping a detector that raises. Should a later release drop that list,
    `all_failures` is used as is.
    """
    detectors = flufl_detectors()
    if detectors is None:
        try:
            temporary, permanent = all_failures(msg)
        except Exception as exc:
            log.warning("flufl.bounce failed", extra={"error_type": type(exc).__name__})
            return set(), set()
        return _clean_addresses(temporary), _clean_addresses(permanent)
    for detector_class in detectors:
        try:
            temporary, permanent = detector_class().process(msg)
        except Exception as exc:  # a detector choking on odd input must not stop the rest
            log.debug("bounce detector skipped", extra={"error_type": type(exc).__name__})
            continue
        if temporary or permanent:
            return _clean_addresses(temporary), _clean_addresses(permanent)
    return set(), set()


def _x_failed_recipients(msg: Message) -> set[str]:
    values = [_header_text(v) for v in msg.get_all("x-failed-recipients", [])]
    return {
        address
        for _name, raw in getaddresses(values)
        if (address := _clean_address(raw)) is not None
    }


def _clean_addresses(values: Iterable[bytes | str]) -> set[str]:
    found = set()
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        address = _clean_address(text)
        if address is not None:
            found.add(address)
    return found


def _clean_address(value: str) -> str | None:
    """A bare, lower-cased address, or None when the value is not one."""
    value = _repair(value).strip().strip(";").strip()
    if not value:
        return None
    if "<" not in value and " " not in value:
        address = value
    else:
        address = parseaddr(value)[1] or value.strip("<>")
    address = address.strip().strip("<>").lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        return None
    if "\ufffd" in address:
        return None  # undecodable bytes: we could not match it to anything we sent
    return address


# --- linking --------------------------------------------------------------------------


def _candidate_message_ids(msg: Message, from_dsn: list[str]) -> list[str]:
    ordered: list[str] = []
    getters: tuple[Callable[[], list[str]], ...] = (
        lambda: _attached_original_ids(msg),
        lambda: from_dsn,
        lambda: _header_ids(msg, "x-original-message-id"),
        lambda: _header_ids(msg, "in-reply-to"),
        lambda: list(reversed(_header_ids(msg, "references"))),
        lambda: _inline_quoted_ids(msg),
    )
    for getter in getters:
        try:
            ids = getter()
        except Exception as exc:
            log.warning("message-id lookup failed", extra={"error_type": type(exc).__name__})
            continue
        for message_id in ids:
            if message_id not in ordered:
                ordered.append(message_id)
    own = set(_header_ids(msg, "message-id"))
    return [message_id for message_id in ordered if message_id not in own]


def _attached_original_ids(msg: Message) -> list[str]:
    ids: list[str] = []
    for part in _walk(msg, into_attached=False):
        content_type = part.get_content_type()
        original: Message | None = None
        if content_type in _ATTACHED_MESSAGE_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = payload[0]
            elif isinstance(payload, str):
                original = BytesHeaderParser().parsebytes(_part_bytes(part))
        elif content_type in _ATTACHED_HEADER_TYPES:
            original = BytesHeaderParser().parsebytes(_part_bytes(part))
        if original is not None:
            ids.extend(_header_ids(original, "message-id"))
    return ids


def _inline_quoted_ids(msg: Message) -> list[str]:
    ids: list[str] = []
    for part in _walk(msg, into_attached=False):
        if part.get_content_type() != "text/plain":
            continue
        text = _part_bytes(part)[:_INLINE_SCAN_LIMIT].decode("utf-8", "replace")
        ids.extend(match.group(1) for match in _INLINE_MESSAGE_ID_RE.finditer(text))
    return ids


def _header_ids(msg: Message, name: str) -> list[str]:
    ids: list[str] = []
    for value in msg.get_all(name, []):
        ids.extend(_message_ids(_header_text(value)))
    return ids


def _message_ids(value: str) -> list[str]:
    value = _repair(value)
    bracketed = _BRACKETED_ID_RE.findall(value)
    if bracketed:
        return bracketed
    # Some MTAs drop the brackets; take bare tokens that look like ids.
    return [token for token in value.split() if "@" in token]


# --- MIME helpers ---------------------------------------------------------------------


def _walk(msg: Message, *, into_attached: bool = True) -> Iterator[Message]:
    """Every part, depth first; with into_attached=False, attached messages are not opened."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        if not part.is_multipart():
            continue
        if (
            not into_attached
            and part is not msg
            and part.get_content_type() in (_ATTACHED_MESSAGE_TYPES)
        ):
            continue
        if part.get_content_type() in _DELIVERY_STATUS_TYPES:
            continue  # its "parts" are header blocks, not MIME parts
        children = [p for p in part.get_payload() if isinstance(p, Message)]
        stack.extend(reversed(children))


def _part_bytes(part: Message) -> bytes:
    """The decoded body of a non-multipart part (transfer encoding undone)."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _header_text(value: object) -> str:
    """A header value as text; raw 8-bit bytes (compat32 keeps them) are read as UTF-8."""
    if isinstance(value, str):
        return _repair(value)
    if isinstance(value, Header):
        pieces = []
        for chunk, charset in decode_header(value):
            if isinstance(chunk, bytes):
                codec = charset if charset and charset != "unknown-8bit" else "utf-8"
                try:
                    pieces.append(chunk.decode(codec, "replace"))
                except LookupError:
                    pieces.append(chunk.decode("utf-8", "replace"))
            else:
                pieces.append(chunk)
        return "".join(pieces)
    return str(value)


def _repair(value: str) -> str:
    """Undo surrogate escapes left by the bytes parser, reading the bytes as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _unfold(value: str) -> str:
    return " ".join(value.split())
