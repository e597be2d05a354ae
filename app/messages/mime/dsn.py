"""RFC 3464 delivery reports: who a `message/delivery-status` part says failed, was
delayed or was delivered (also RFC 6533 `message/global-delivery-status`).

Per recipient block, `Action` decides (`failed` → failed, `delayed` → delayed,
`delivered`/`relayed`/`expanded` → delivered); without an `Action`, the class of `Status`
decides (5 → failed, 4 → delayed). Addresses are lower-cased; Original-Recipient (what
the sender wrote) is preferred to Final-Recipient. Malformed input never raises: what was
read before the fault is kept. `app.tracking.bounces` combines this with other sources.
"""

from __future__ import annotations

import base64
import binascii
import logging
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import Header, decode_header
from email.message import Message
from email.utils import parseaddr

log = logging.getLogger(__name__)

DELIVERY_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
# Parts whose payload is a whole message (the email package parses these into a Message).
ATTACHED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_STATUS_RE = re.compile(r"(?<![0-9.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])")
_FIELD_LINE_RE = re.compile(r"^([!-9;-~]+)[ \t]*:(.*)$")
_BRACKETED_ID_RE = re.compile(r"<\s*([^<>\s]+?)\s*>")


@dataclass
class DeliveryStatus:
    failed: set[str] = field(default_factory=set)
    delayed: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)
    """Delivered, relayed or expanded: not a failure."""
    status_codes: dict[str, str] = field(default_factory=dict)
    reporting_mta: str | None = None
    original_message_ids: list[str] = field(default_factory=list)
    """The ids in the report's `X-Original-Message-ID` fields."""


def read_delivery_status(msg: Message) -> DeliveryStatus:
    """What every delivery-status part of `msg` says (nothing for ordinary mail)."""
    result = DeliveryStatus()
    try:
        for part in walk_parts(msg):
            if part.get_content_type() not in DELIVERY_STATUS_TYPES:
                continue
            for fields in _field_blocks(part):
                _apply_block(fields, result)
    except Exception as exc:  # malformed structure: keep what was read so far
        log.warning("delivery-status read failed", extra={"error_type": type(exc).__name__})
    return result


def _apply_block(fields: dict[str, str], result: DeliveryStatus) -> None:
    if "reporting-mta" in fields and result.reporting_mta is None:
        result.reporting_mta = _strip_type(fields["reporting-mta"]) or None
    if "x-original-message-id" in fields:
        result.original_message_ids.extend(report_message_ids(fields["x-original-message-id"]))

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
        address = clean_address(candidate)
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
                yield {name.lower(): _unfold(header_text(v)) for name, v in block.items()}
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


# --- helpers shared with bounce detection ----------------------------------------------


def clean_address(value: str) -> str | None:
    """A bare, lower-cased address, or None when the value is not one."""
    value = repair(value).strip().strip(";").strip()
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


def report_message_ids(value: str) -> list[str]:
    """The ids in a header value as an MTA writes it: every `<id>`, else the bare tokens
    holding an `@` (some MTAs drop the brackets). Case kept, brackets stripped."""
    value = repair(value)
    bracketed = _BRACKETED_ID_RE.findall(value)
    if bracketed:
        return bracketed
    return [token for token in value.split() if "@" in token]


def walk_parts(msg: Message, *, into_attached: bool = True) -> Iterator[Message]:
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
            and part.get_content_type() in ATTACHED_MESSAGE_TYPES
        ):
            continue
        if part.get_content_type() in DELIVERY_STATUS_TYPES:
            continue  # its "parts" are header blocks, not MIME parts
        children = [p for p in part.get_payload() if isinstance(p, Message)]
        stack.extend(reversed(children))


def header_text(value: object) -> str:
    """A header value as text; raw 8-bit bytes (compat32 keeps them) are read as UTF-8."""
    if isinstance(value, str):
        return repair(value)
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


def repair(value: str) -> str:
    """Undo surrogate escapes left by the bytes parser, reading the bytes as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _unfold(value: str) -> str:
    return " ".join(value.split())
