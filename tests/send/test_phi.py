"""PHI/PII hints: positives and negatives per type, exact positions, value-free reprs."""

from __future__ import annotations

import re
import time

import pytest

from app.messages.sanitize import html_to_text
from app.send.phi import PhiHint, detect_phi, detect_phi_in_html


def found(text: str) -> list[tuple[str, str]]:
    """(type, matched text) for each hint; the tests may look at values, the code may not."""
    return [(h.type, text[h.start : h.end]) for h in detect_phi(text)]


def types(text: str) -> set[str]:
    return {h.type for h in detect_phi(text)}


# --- SSN --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Patient SSN 123-45-6789 on file", "123-45-6789"),
        ("ssn: 123456789.", "123456789"),
        ("SSN# 123 45 6789", "123 45 6789"),
        ("Social Security Number is 234-56-7890", "234-56-7890"),
        ("soc. sec. 772-11-4321", "772-11-4321"),
        ("her number 078-05-1120 was printed", "078-05-1120"),
    ],
)
def test_ssn_positive(text: str, value: str) -> None:
    assert found(text) == [("ssn", value)]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "912-34-5678",  # area 9xx
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "SSN 987654321",  # area 9xx in context
        "Order 123456789 shipped",  # nine digits without SSN context
        "ticket 123 45 6789",  # spaced without context
        "part 12-345-6789",  # other grouping
        "ref 1123-45-67890",  # longer digit runs
    ],
)
def test_ssn_negative(text: str) -> None:
    assert "ssn" not in types(text)


# --- MRN --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("MRN: 12345678", "12345678"),
        ("mrn 0042917", "0042917"),
        ("Medical record number A1234567 attached", "A1234567"),
        ("Patient ID: AB-12345", "AB-12345"),
        ("patient identifier #998877665", "998877665"),
        ("MR# 1234567890.", "1234567890"),
    ],
)
def test_mrn_positive(text: str, value: str) -> None:
    assert found(text) == [("mrn", value)]


@pytest.mark.parametrize(
    "text",
    [
        "MRN unknown",
        "MRN pending review",  # no digits
        "Patient no. 5 in the queue",  # too short
        "Patient ID 12345678901",  # eleven characters
        "Order 12345678",  # no keyword
        "medical records for 2023",  # not an identifier after the keyword
    ],
)
def test_mrn_negative(text: str) -> None:
    assert "mrn" not in types(text)


# --- date of birth ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("DOB: 03/14/1975", "03/14/1975"),
        ("D.O.B. 14.03.1975", "14.03.1975"),
        ("Date of birth: March 3, 1962.", "March 3, 1962"),
        ("She was born on 5th of May 1990 in Ohio", "5th of May 1990"),
        ("birthdate 1980-02-29", "1980-02-29"),
        ("DOB 1/2/80", "1/2/80"),
        ("Date of birth\n\n12 March 1961", "12 March 1961"),
        ("1961-03-12 (DOB)", "1961-03-12"),
    ],
)
def test_dob_positive(text: str, value: str) -> None:
    assert found(text) == [("date_of_birth", value)]


@pytest.mark.parametrize(
    "text",
    [
        "Your appointment is on 04/05/2025 at 10:00",
        "Invoice date 2024-01-05",
        "Synced at 2024-01-05T10:22:33Z",
        "Visit on March 3, 2024 confirmed",
        "DOB: 02/30/1980",  # no such day
        "born 29.02.2001",  # not a leap year
        "The newborn unit opens 01/02/2025",  # "born" inside a word
        "DOB: on file. Next visit 03/04/2025",  # the sentence ended before the date
        "DOB is 01/01/1850",  # implausible year
    ],
)
def test_dob_negative(text: str) -> None:
    assert "date_of_birth" not in types(text)


def test_dob_keyword_marks_only_the_first_date() -> None:
    text = "DOB 01/02/1980, seen 03/04/2025"
    assert found(text) == [("date_of_birth", "01/02/1980")]


# --- phone ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Call (555) 234-5678 today", "(555) 234-5678"),
        ("cell 555.234.5678", "555.234.5678"),
        ("+1 555-234-5678", "+1 555-234-5678"),
        ("1-800-555-0199 toll free", "1-800-555-0199"),
        ("phone: 5552345678", "5552345678"),
        ("London +44 20 7946 0958", "+44 20 7946 0958"),
        ("Berlin +49 (0)30 1234567", "+49 (0)30 1234567"),
        ("Paris +33 1 23 45 67 89.", "+33 1 23 45 67 89"),
    ],
)
def test_phone_positive(text: str, value: str) -> None:
    assert found(text) == [("phone", value)]


@pytest.mark.parametrize(
    "text",
    [
        "ZIP 90210",
        "ZIP+4 90210-1234",
        "on 12-03-2024",
        "on 2024.01.05",
        "at 10:30:45",
        "Order 5552345678 shipped",  # bare digits without phone context
        "Order #123-456-7890",  # area code cannot start with 1
        "host 192.168.100.200",
        "version 2.10.3",
        "+12 is the score",
    ],
)
def test_phone_negative(text: str) -> None:
    assert "phone" not in types(text)


# --- Medicare MBI -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("MBI 1EG4-TE5-MK73", "1EG4-TE5-MK73"),
        ("Medicare: 1EG4TE5MK73.", "1EG4TE5MK73"),
        ("mbi 9aa0-aa0-aa00", "9aa0-aa0-aa00"),
    ],
)
def test_medicare_positive(text: str, value: str) -> None:
    assert found(text) == [("medicare_id", value)]


@pytest.mark.parametrize(
    "text",
    [
        "1SG4TE5MK73",  # S is never used
        "0EG4TE5MK73",  # first character 1-9
        "1EG4TE5MK7",  # ten characters
        "1EG4TE5MK733",  # twelve
        "1EG4-TE5MK73",  # one dash only
        "ABCD-EFG-HIJK",
    ],
)
def test_medicare_negative(text: str) -> None:
    assert "medicare_id" not in types(text)


# --- credit cards -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Visa 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("5555555555554444", "5555555555554444"),
        ("Amex 3782 822463 10005", "3782 822463 10005"),
        ("Visa 13: 4222222222222.", "4222222222222"),
    ],
)
def test_credit_card_positive(text: str, value: str) -> None:
    assert found(text) == [("credit_card", value)]


@pytest.mark.parametrize(
    "text",
    [
        "Order 4111111111111112",  # fails Luhn
        "Tracking 1234567890123452",  # Luhn-valid, but no card network starts with 1
        "4111 1111-1111 1111",  # mixed separators
        "Items 1 2 3 4 5 6 7 8 9 10 11 12 13",
        "Big number 41111111111111111111111",  # too long
        "Epoch ms 1712345678901",
    ],
)
def test_credit_card_negative(text: str) -> None:
    assert "credit_card" not in types(text)


# --- combined, positions, overlaps ------------------------------------------------------


def test_positions_in_a_mixed_text() -> None:
    text = (
        "Re: patient\nSSN 123-45-6789, DOB: 01/02/1980, MRN 7654321,\n"
        "tel (555) 234-5678, card 4111 1111 1111 1111, MBI 1EG4-TE5-MK73."
    )
    hints = detect_phi(text)
    expected = [
        ("ssn", "123-45-6789"),
        ("date_of_birth", "01/02/1980"),
        ("mrn", "7654321"),
        ("phone", "(555) 234-5678"),
        ("credit_card", "4111 1111 1111 1111"),
        ("medicare_id", "1EG4-TE5-MK73"),
    ]
    assert [(h.type, text[h.start : h.end]) for h in hints] == expected
    for hint, (_type, value) in zip(hints, expected, strict=True):
        assert hint.start == text.index(value)
        assert hint.end == hint.start + len(value)
    assert [h.start for h in hints] == sorted(h.start for h in hints)


def test_no_overlapping_hints() -> None:
    # Nine digits after "SSN" that are also ddd-dd-dddd are reported once, as an SSN.
    assert found("SSN 123-45-6789") == [("ssn", "123-45-6789")]


def test_ordinary_mail_has_no_hints() -> None:
    text = (
        "Hi Dr. Jones,\n\nThanks for the call on 03/04/2025. Our office at 1200 Main St, "
        "Springfield, IL 62704 is open 9:00-17:00. Order #A-10023 ships 2025-03-10T08:00:00Z. "
        "Version 3.2.1, invoice 2024-0007, total $1,234.56.\n\nBest,\nSam"
    )
    assert detect_phi(text) == []


def test_empty_text() -> None:
    assert detect_phi("") == []


def test_repr_and_str_hold_no_matched_digits() -> None:
    text = "SSN 518-72-9043 DOB 07/19/1958 MRN 88231947 tel 415-867-5309 card 4012888888881881"
    hints = detect_phi(text)
    assert {h.type for h in hints} == {"ssn", "date_of_birth", "mrn", "phone", "credit_card"}
    rendered = repr(hints) + str(hints) + "".join(str(h) for h in hints)
    for hint in hints:
        value = text[hint.start : hint.end]
        assert value not in rendered
        for run in re.findall(r"[0-9]{3,}", value):
            assert run not in rendered
    assert not hasattr(hints[0], "value")
    assert set(PhiHint.__slots__) == {"type", "start", "end"}


def test_large_and_adversarial_input_is_fast() -> None:
    samples = [
        "+1 2 3 4 5 6 7 8 9 " * 20_000,
        "DOB 01/01/1980 " * 20_000,
        "4" * 300_000,
        "1-2-" * 100_000,
        "MRN " * 80_000,
        "SSN 123-45-6789 " * 20_000,
    ]
    started = time.perf_counter()
    for sample in samples:
        detect_phi(sample)
    assert time.perf_counter() - started < 10


# --- HTML -------------------------------------------------------------------------------


def test_html_positions_refer_to_the_text_form() -> None:
    html = (
        "<html><head><style>.x{color:red}</style><title>SSN 111-22-3333</title></head>"
        "<body><table><tr><td>DOB:</td><td>01/02/1980</td></tr></table>"
        "<p>SSN&nbsp;123-45-6789<br>MRN: <b>A1234567</b></p>"
        "<script>var s = '234-56-7890';</script><!-- 345-67-8901 --></body></html>"
    )
    text = html_to_text(html)
    hints = detect_phi_in_html(html)
    assert [(h.type, text[h.start : h.end]) for h in hints] == [
        ("date_of_birth", "01/02/1980"),
        ("ssn", "123-45-6789"),
        ("mrn", "A1234567"),
    ]
    # Hidden parts (title, style, script, comments) are not text and give no hints.
    assert "111-22-3333" not in text
    assert "234-56-7890" not in text
    assert "345-67-8901" not in text


def test_html_entities_are_decoded_before_detection() -> None:
    html = "<p>SSN &#49;23-45-6789 and phone (555)&#160;234-5678</p>"
    text = html_to_text(html)
    assert [(h.type, text[h.start : h.end]) for h in detect_phi_in_html(html)] == [
        ("ssn", "123-45-6789"),
        ("phone", "(555)\xa0234-5678"),
    ]


def test_html_cells_do_not_run_together() -> None:
    html = "<table><tr><td>MRN</td><td>12345678</td></tr></table>"
    assert [h.type for h in detect_phi_in_html(html)] == ["mrn"]


def test_broken_html_does_not_raise() -> None:
    for html in ["<p>DOB: 01/02/1980", "<<<>>>", "<scr", "<p attr='unterminated>SSN 123-45-6789"]:
        detect_phi_in_html(html)
