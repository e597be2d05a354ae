"""RFC 3464 delivery reports from the corpus, read by `app.messages.mime.dsn`."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from app.messages.mime.dsn import DeliveryStatus, read_delivery_status

CORPUS = Path(__file__).parent / "corpus"


def read(name: str) -> DeliveryStatus:
    raw = (CORPUS / name).read_bytes()
    return read_delivery_status(email.message_from_bytes(raw, policy=email.policy.compat32))


def test_multipart_report_from_the_wild() -> None:
    report = read("mail-parser/mail_malformed_2.eml")
    assert report.failed == {"abh@netpar.com.br"}
    assert report.delayed == set()
    assert report.reporting_mta == "apus.netpar.com.br"


def test_stdlib_dsn_samples() -> None:
    report = read("cpython/msg_16.txt")
    assert report.failed == {"jangel1@cougar.noc.ucla.edu"}
    assert report.status_codes == {"jangel1@cougar.noc.ucla.edu": "5.0.0"}
    banned = read("cpython/msg_43.txt")
    assert len(banned.failed) == 11
    assert set(banned.status_codes.values()) == {"5.7.1"}


def test_ordinary_mail_reports_nothing() -> None:
    report = read("flanker/gmail-invalid-address.eml")  # a bounce, but not RFC 3464
    assert report == DeliveryStatus()
