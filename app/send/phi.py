"""PHI/PII hints for outgoing mail: where a message seems to hold an SSN, MRN, ...

These are hints for a warning shown to the sender (POST /v1/emails `warnings`), never a
block. A hint carries a type and a span — never the matched text — so it can be returned,
stored or logged without leaking what it points at. Nothing here logs.

Types and rules (digits are ASCII 0-9 only):
- `ssn`: `ddd-dd-dddd` anywhere; `ddd dd dddd` or nine bare digits only after an SSN
  keyword ("SSN", "SS#", "social security", "soc sec"). Invalid numbers never match:
  area 000, 666 or 900-999, group 00, serial 0000.
- `mrn`: after "MRN", "MR#", "medical record (number|no|#)", "patient (id|identifier|
  number|no|#)": an identifier of 6-10 letters/digits (hyphens allowed inside) holding at
  least one digit. The span covers the identifier, not the keyword.
- `date_of_birth`: a date (numeric m/d/y, d.m.y, y-m-d, or with a month name) within 40
  characters after "DOB", "D.O.B.", "date of birth", "birth date", "birthdate", "birthday"
  or "born", or just before "(DOB)". Other dates (appointments, invoices, timestamps) are
  not hints.
- `phone`: NANP numbers written with separators (space, no-break space, dot, hyphen) or
  parentheses (`(555) 234-5678`, `555.234.5678`, `+1 555-234-5678`; area code and
  exchange start with 2-9), bare ten digits only after a phone keyword, and international
  numbers starting with `+` (8-15 digits). Dates, ZIP and ZIP+4 codes have other shapes
  and do not match.
- `medicare_id`: the CMS Medicare Beneficiary Identifier (11 characters, pattern
  C A AN N A AN N A A N N, letters without S L O I B Z), with or without dashes (4-3-4).
- `credit_card`: 13-19 digits, optionally in groups split by one space or hyphen, starting
  with 2-6 (the card networks' ranges), passing the Luhn check.

Overlaps: a span reported as one type is not reported again as another; the order of
precedence is credit_card, ssn, medicare_id, mrn, date_of_birth, phone.

`detect_phi_in_html` runs on the text of an HTML body as `html_to_text` renders it, and the
positions refer to that text (not to the HTML source): callers that highlight must do so in
`html_to_text(html)`.
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass

from app.messages.sanitize import html_to_text

PHI_TYPES = ("credit_card", "ssn", "medicare_id", "mrn", "date_of_birth", "phone")
_PRECEDENCE = {name: rank for rank, name in enumerate(PHI_TYPES)}


@dataclass(frozen=True, slots=True)
class PhiHint:
    """A kind of sensitive data and where it is: `text[start:end]`. Never the value itself."""

    type: str
    start: int
    end: int


def detect_phi(text: str) -> list[PhiHint]:
    """The PHI/PII hints in a plain text, ordered by position, without overlaps."""
    if not text:
        return []
    candidates = [
        *_credit_cards(text),
        *_ssns(text),
        *_medicare_ids(text),
        *_mrns(text),
        *_dates_of_birth(text),
        *_phones(text),
    ]
    candidates.sort(key=lambda h: (_PRECEDENCE[h.type], h.start, -(h.end - h.start)))
    # Kept spans never overlap, so sorted by start they are sorted by end too: a candidate
    # only needs comparing with its neighbours.
    kept: list[PhiHint] = []
    starts: list[int] = []
    for hint in candidates:
        index = bisect.bisect_left(starts, hint.start)
        if index > 0 and kept[index - 1].end > hint.start:
            continue
        if index < len(kept) and kept[index].start < hint.end:
            continue
        kept.insert(index, hint)
        starts.insert(index, hint.start)
    return kept


def detect_phi_in_html(html: str) -> list[PhiHint]:
    """Hints in an HTML body; positions refer to `html_to_text(html)`, not to the HTML."""
    return detect_phi(html_to_text(html))


# --- SSN --------------------------------------------------------------------------------

_SSN_DASHED = re.compile(r"(?<![0-9-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9]|-[0-9])")
_SSN_CONTEXT = re.compile(
    r"\b(?:SSN|SS\s?#|SS\s?No\.?|social\s+security(?:\s+(?:number|no\.?|#))?|soc\.?\s+sec\.?)"
    r"(?:\s*(?:#|number|no\.?|is|was|:|=|-))*\s*",
    re.IGNORECASE,
)
_SSN_LOOSE = re.compile(r"([0-9]{3})[ \u00a0-]?([0-9]{2})[ \u00a0-]?([0-9]{4})(?![0-9])")


def _valid_ssn(area: str, group: str, serial: str) -> bool:
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


def _ssns(text: str) -> Iterator[PhiHint]:
    for m in _SSN_DASHED.finditer(text):
        if _valid_ssn(*m.groups()):
            yield PhiHint("ssn", m.start(), m.end())
    for keyword in _SSN_CONTEXT.finditer(text):
        loose = _SSN_LOOSE.match(text, keyword.end())
        if loose and _valid_ssn(*loose.groups()):
            yield PhiHint("ssn", loose.start(), loose.end())


# --- MRN --------------------------------------------------------------------------------

_MRN = re.compile(
    r"\b(?:MRN|MR\s?#|medical\s+record(?:\s+(?:number|no\.?|#|id))?|"
    r"patient\s+(?:id|identifier|number|no\.?|#))"
    r"(?:\s*(?:#|number|no\.?|is|:|=|-))*\s*"
    r"(?P<id>(?=[A-Za-z0-9-]*[0-9])[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
    r"(?![A-Za-z0-9-])",
    re.IGNORECASE,
)


def _mrns(text: str) -> Iterator[PhiHint]:
    for m in _MRN.finditer(text):
        identifier = m.group("id")
        alnum = sum(c.isalnum() for c in identifier)
        if 6 <= alnum <= 10 and "--" not in identifier:
            yield PhiHint("mrn", m.start("id"), m.end("id"))


# --- dates of birth ---------------------------------------------------------------------

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = re.compile(
    r"(?<![0-9])(?:"
    r"(?P<a>[0-9]{1,2})(?P<sep>[/.-])(?P<b>[0-9]{1,2})(?P=sep)(?P<y1>[0-9]{4}|[0-9]{2})"
    r"|(?P<y2>[0-9]{4})(?P<sep2>[/.-])(?P<m2>[0-9]{1,2})(?P=sep2)(?P<d2>[0-9]{1,2})"
    rf"|\b{_MONTHS}\s+(?P<d3>[0-9]{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y3>[0-9]{{4}})"
    rf"|(?P<d4>[0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS},?\s+(?P<y4>[0-9]{{4}})"
    r")(?![0-9]|[:T][0-9])",
    re.IGNORECASE,
)
_DOB_BEFORE = re.compile(
    r"\b(?:D\.O\.B\.?|(?:DOB|date\s+of\s+birth|birth\s*date|birthday|born)\b)", re.IGNORECASE
)
_DOB_AFTER = re.compile(r"\s*\(?\s*(?:D\.O\.B\.?|(?:DOB|date\s+of\s+birth)\b)", re.IGNORECASE)
_DOB_WINDOW = 40


_MONTH_NUMBERS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_MONTH_NAME = re.compile(_MONTHS, re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.;!?](?:\s|$)")


def _real_date(year: int, month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


def _plausible_date(m: re.Match[str]) -> bool:
    """A real calendar date (Feb 30 is not) with a year a living person could be born in."""
    if m.group("a"):
        first, second, year_text = int(m.group("a")), int(m.group("b")), m.group("y1")
        orders = [(first, second), (second, first)]  # month/day (US) or day/month
    elif m.group("y2"):
        year_text = m.group("y2")
        orders = [(int(m.group("m2")), int(m.group("d2")))]
    else:
        name = _MONTH_NAME.search(m.group())
        month = _MONTH_NUMBERS[name.group()[:3].lower()] if name else 0
        year_text = m.group("y3") or m.group("y4")
        orders = [(month, int(m.group("d3") or m.group("d4")))]
    year = int(year_text)
    if len(year_text) == 2:
        year += 2000  # only the leap-year check depends on the century
    elif not 1880 <= year <= 2100:
        return False
    return any(_real_date(year, month, day) for month, day in orders)


def _dates_of_birth(text: str) -> Iterator[PhiHint]:
    # A keyword marks the first date after it, if that date starts within the window and
    # no sentence ends in between ("DOB: 01/02/1980. Seen on 03/04/2025" marks one date).
    for keyword in _DOB_BEFORE.finditer(text):
        limit = keyword.end() + _DOB_WINDOW
        for m in _DATE.finditer(text, keyword.end(), limit + 40):
            if m.start() > limit:
                break
            if _plausible_date(m):
                if not _SENTENCE_END.search(text, keyword.end(), m.start()):
                    yield PhiHint("date_of_birth", m.start(), m.end())
                break
    # "01/02/1980 (DOB)"
    for m in _DATE.finditer(text):
        if _DOB_AFTER.match(text, m.end(), m.end() + 20) and _plausible_date(m):
            yield PhiHint("date_of_birth", m.start(), m.end())


# --- phones -----------------------------------------------------------------------------

_NANP = re.compile(
    r"(?<![0-9A-Za-z+])(?:\+?1[ \u00a0.-]?)?"
    r"(?:\((?:[2-9][0-9]{2})\)[ \u00a0.-]?|(?:[2-9][0-9]{2})[ \u00a0.-])"
    r"[2-9][0-9]{2}[ \u00a0.-][0-9]{4}(?![0-9]|[.-][0-9])"
)
_NANP_BARE = re.compile(r"(?:\+?1)?[2-9][0-9]{2}[2-9][0-9]{6}(?![0-9])")
_PHONE_CONTEXT = re.compile(
    r"\b(?:phone|tel|telephone|cell|mobile|fax|ph|call|text)\b\.?(?:\s*(?:#|no\.?|number|:|at|-))*\s*",
    re.IGNORECASE,
)
# Possessive digit runs and a separator before each group: one way to read any input.
_INTERNATIONAL = re.compile(
    r"(?<![0-9A-Za-z+])\+[1-9][0-9]*+"
    r"(?:[ \u00a0.-]?\([0-9]{1,4}\)[0-9]*+|[ \u00a0.-][0-9]++)++(?![0-9])"
)


def _phones(text: str) -> Iterator[PhiHint]:
    for m in _NANP.finditer(text):
        yield PhiHint("phone", m.start(), m.end())
    for keyword in _PHONE_CONTEXT.finditer(text):
        bare = _NANP_BARE.match(text, keyword.end())
        if bare:
            yield PhiHint("phone", bare.start(), bare.end())
    for m in _INTERNATIONAL.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        if 8 <= digits <= 15:
            yield PhiHint("phone", m.start(), m.end())


# --- Medicare MBI -----------------------------------------------------------------------

_A = "[AC-HJKMNP-RT-Y]"
_AN = "[AC-HJKMNP-RT-Y0-9]"
_MBI = re.compile(
    rf"(?<![A-Za-z0-9-])[1-9]{_A}{_AN}[0-9]-?{_A}{_AN}[0-9]-?{_A}{_A}[0-9]{{2}}(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def _medicare_ids(text: str) -> Iterator[PhiHint]:
    for m in _MBI.finditer(text):
        value = m.group()
        # Dashes come in the printed 4-3-4 form or not at all.
        if value.count("-") in (0, 2):
            yield PhiHint("medicare_id", m.start(), m.end())


# --- credit cards -----------------------------------------------------------------------

# One digit at a time, so that no input makes the engine try every way of grouping digits.
_CARD = re.compile(r"(?<![0-9-])[2-6](?:[ \u00a0-]?[0-9]){12,18}(?![0-9]|-[0-9])")
_CARD_GROUP = re.compile(r"[ \u00a0-]")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _credit_cards(text: str) -> Iterator[PhiHint]:
    for m in _CARD.finditer(text):
        value = m.group()
        separators = {c for c in value if not c.isdigit()}
        if len(separators) > 1:
            continue  # "4111 1111-1111 1111" is not how a card number is written
        groups = _CARD_GROUP.split(value)
        if len(groups) > 1 and not all(3 <= len(g) <= 6 for g in groups):
            continue  # printed cards group 4-4-4-4, 4-6-5, ...; "1 2 3 4 ..." is a list
        digits = "".join(groups)
        if 13 <= len(digits) <= 19 and _luhn_valid(digits):
            yield PhiHint("credit_card", m.start(), m.end())
