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

import email
import email.policy
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from flufl.bounce import _scan as flufl_scan
from flufl.bounce import all_failures

from app.messages.mime.dsn import ATTACHED_MESSAGE_TYPES as _ATTACHED_MESSAGE_TYPES
from app.messages.mime.dsn import clean_address as _clean_address
from app.messages.mime.dsn import header_text as _header_text
from app.messages.mime.dsn import read_delivery_status as _read_delivery_status
from app.messages.mime.dsn import report_message_ids as _message_ids
from app.messages.mime.dsn import walk_parts as _walk

log = logging.getLogger(__name__)

# Parts whose payload is text holding the original's headers (and maybe its body).
_ATTACHED_HEADER_TYPES = frozenset({"text/rfc822-headers", "message/global-headers", "text/rfc822"})
_INLINE_MESSAGE_ID_RE = re.compile(r"^[ \t>]*Message-ID:[ \t]*<([^<>\s]+)>", re.I | re.M)
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


# --- MIME helpers ---------------------------------------------------------------------


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
