"""Bounce detection against a published corpus of real bounces and hand-written DSNs.

The corpus is flufl.bounce's test data (see bounce_corpus/SOURCES.md). The expected
addresses below are transcribed from flufl.bounce 6.0.0's own tests
(tests/test_detectors.py `DETECTORS`), lower-cased; they are not derived from our output.
"""

from __future__ import annotations

import base64
import email
import random
from pathlib import Path

import pytest
from flufl.bounce import scan_message

from app.messages.mime import normalise_message_id
from app.tracking import bounces
from app.tracking.bounces import BounceReport, detect_bounce

CORPUS = Path(__file__).parent / "bounce_corpus"

# file -> expected permanent failures (upstream: is_temporary False)
PERMANENT: dict[str, set[str]] = {
    "postfix_01.txt": {"xxxxx@local.ie"},
    "postfix_02.txt": {"yyyyy@digicool.com"},
    "postfix_03.txt": {"ttttt@ggggg.com"},
    "postfix_04.txt": {"userx@mail1.example.com"},
    "postfix_05.txt": {"userx@example.net"},
    "exim_01.txt": {"userx@its.example.nl"},
    "sendmail_01.txt": {"zzzzz@shaft.coal.nl", "zzzzz@nfg.nl"},
    "simple_01.txt": {"bbbsss@example.com"},
    "simple_02.txt": {"userx@example.net"},
    "simple_04.txt": {"userx@example.com"},
    "newmailru_01.txt": {"zzzzz@newmail.ru"},
    "hotpop_01.txt": {"userx@example.com"},
    "microsoft_03.txt": {"userx@example.com"},
    "simple_05.txt": {"userx@example.net"},
    "simple_06.txt": {"userx@example.com"},
    "simple_07.txt": {"userx@example.net"},
    "simple_08.txt": {"userx@example.de"},
    "simple_09.txt": {"userx@example.de"},
    "simple_10.txt": {"userx@example.com"},
    "simple_11.txt": {"userx@example.com"},
    "simple_12.txt": {"userx@example.ac.jp"},
    "simple_13.txt": {"userx@example.fr"},
    "simple_14.txt": {"userx@example.com", "usery@example.com"},
    "simple_15.txt": {"userx@example.be"},
    "simple_16.txt": {"userx@example.com"},
    "simple_17.txt": {"userx@example.com"},
    "simple_18.txt": {"userx@example.com"},
    "simple_19.txt": {"userx@example.com.ar"},
    "simple_20.txt": {"userx@example.com"},
    "simple_23.txt": {"userx@example.it"},
    "simple_24.txt": {"userx@example.com"},
    "simple_25.txt": {"userx@example.com"},
    "simple_26.txt": {"userx@example.it"},
    "simple_27.txt": {"userx@example.net.py"},
    "simple_29.txt": {"userx@example.com"},
    "simple_30.txt": {"userx@example.com"},
    "simple_31.txt": {"userx@example.fr"},
    "simple_32.txt": {"userx@example.com"},
    "simple_33.txt": {"userx@example.com"},
    "simple_34.txt": {"roland@example.com"},
    "simple_36.txt": {"userx@example.com"},
    "simple_37.txt": {"user@example.edu"},
    "simple_38.txt": {"userx@example.com"},
    "simple_39.txt": {"userx@example.ru"},
    "simple_41.txt": {"userx@example.com"},
    "simple_44.txt": {"user@example.com"},
    "simple_45.txt": {"subscriber@earthlink.net"},
    "bounce_02.txt": {"userx@example.com"},
    "bounce_03.txt": {"userx@example.uk"},
    "yahoo_12.txt": {"user@yahoo.com"},
    "groupwise_01.txt": {"userx@example.edu"},
    # Upstream: GroupWise finds nothing here, Exchange finds this address.
    "groupwise_02.txt": {"userx@example.com"},
    "yale_01.txt": {"userx@cs.yale.edu", "userx@yale.edu"},
    "dsn_01.txt": {"userx@example.com"},
    "dsn_02.txt": {"zzzzz@example.uk"},
    "dsn_03.txt": {"userx@example.be"},
    "dsn_04.txt": {"userx@example.ch"},
    "dsn_09.txt": {"userx@example.com"},
    "dsn_10.txt": {"anne.person@dom.ain"},
    "dsn_11.txt": {"joem@example.com"},
    "dsn_12.txt": {"userx@example.jp"},
    "dsn_13.txt": {"userx@example.com"},
    "dsn_14.txt": {"userx@example.com.dk"},
    "dsn_15.txt": {"userx@example.com"},
    "dsn_16.txt": {"userx@example.com"},
    "dsn_18.txt": {"email@replaced.net"},
    "microsoft_01.txt": {"userx@example.com"},
    "microsoft_02.txt": {"userx@example.com"},
    "microsoft_04.txt": {"userx@example.com"},
    "smtp32_01.txt": {"userx@example.ph"},
    "smtp32_02.txt": {"userx@example.com"},
    "smtp32_03.txt": {"userx@example.com"},
    "smtp32_04.txt": {"after_another@example.net", "one_bad_address@example.net"},
    "smtp32_05.txt": {"userx@example.com"},
    "smtp32_06.txt": {"absolute_garbage_addr@example.net"},
    "smtp32_07.txt": {"userx@example.com"},
    "qmail_01.txt": {"userx@example.de"},
    "qmail_02.txt": {"userx@example.com"},
    "qmail_03.txt": {"userx@example.jp"},
    "qmail_04.txt": {"userx@example.au"},
    "qmail_05.txt": {"userx@example.com"},
    "qmail_06.txt": {"ntl@xxx.com"},
    "qmail_07.txt": {"user@example.net"},
    "llnl_01.txt": {"user1@example.gov"},
    "netscape_01.txt": {"aaaaa@corel.com", "bbbbb@corel.com"},
    "yahoo_01.txt": {"userx@example.com"},
    "yahoo_02.txt": {"userx@example.es"},
    "yahoo_03.txt": {"userx@example.com"},
    "yahoo_04.txt": {"userx@example.es", "usery@example.uk"},
    "yahoo_05.txt": {"userx@example.com", "usery@example.com"},
    "yahoo_06.txt": {
        "userx@example.com",
        "usery@example.com",
        "userz@example.com",
        "usera@example.com",
    },
    "yahoo_07.txt": {
        "userw@example.com",
        "userx@example.com",
        "usery@example.com",
        "userz@example.com",
    },
    "yahoo_08.txt": {f"user{c}@example.com" for c in "abcdef"},
    "yahoo_09.txt": {"userx@example.com", "usery@example.com"},
    "yahoo_10.txt": {"userx@example.com", "usery@example.com", "userz@example.com"},
    "yahoo_11.txt": {"bad_user@aol.com"},
    "yahoo_13.txt": {"bogus-address@example.net"},
    "sina_01.txt": {"userx@sina.com", "usery@sina.com"},
    "aol_01.txt": {"screenname@aol.com"},
    "caiwireless_01.txt": {"userx@example.com"},
}

# file -> expected delayed recipients (upstream: is_temporary True). Warnings, not bounces.
DELAYED: dict[str, set[str]] = {
    "simple_03.txt": {"userx@example.za"},
    "simple_21.txt": {"userx@example.com"},
    "simple_22.txt": {"user@example.org"},
    "simple_28.txt": {"userx@example.com"},
    "simple_35.txt": {"calvin@example.com"},
    "simple_40.txt": {"user@example.com"},
    "dsn_05.txt": {"userx@example.cz"},
    "dsn_06.txt": {"userx@example.com"},
    "dsn_07.txt": {"userx@example.nz"},
    "dsn_08.txt": {"userx@example.de"},
    "dsn_17.txt": {"userx@example.fi"},
}

# Upstream: "Not a bounce but has confused groupwise" / an "Auto reply" (qmail_08).
NOT_BOUNCES = ["groupwise_03.txt", "qmail_08.txt"]

# Bounces naming no usable address: upstream finds none in dumbass_01 (test_scan_unrecognized)
# nor, with SimpleMatch, in simple_43; bounce_01 names only "dylan" (no domain), read by hand.
NO_ADDRESS = ["dumbass_01.txt", "simple_43.txt", "bounce_01.txt"]


def _corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_corpus_is_large_enough_and_fully_classified() -> None:
    files = {p.name for p in CORPUS.glob("*.txt")}
    assert len(PERMANENT) + len(DELAYED) >= 50
    classified = set(PERMANENT) | set(DELAYED) | set(NOT_BOUNCES) | set(NO_ADDRESS)
    classified.add("simple_42.txt")
    assert classified == files


@pytest.mark.parametrize(("name", "expected"), sorted(PERMANENT.items()))
def test_corpus_permanent_failures(name: str, expected: set[str]) -> None:
    report = detect_bounce(_corpus(name))
    assert report is not None
    assert report.permanent == expected
    assert report.delayed == frozenset()


@pytest.mark.parametrize(("name", "expected"), sorted(DELAYED.items()))
def test_corpus_delays_are_not_bounces(name: str, expected: set[str]) -> None:
    report = detect_bounce(_corpus(name))
    assert report is not None
    assert report.permanent == frozenset()
    assert report.delayed == expected


@pytest.mark.parametrize("name", NOT_BOUNCES + NO_ADDRESS)
def test_corpus_without_bounced_address_gives_none(name: str) -> None:
    assert detect_bounce(_corpus(name)) is None


def test_corpus_simple_42_exim_dsn_read_by_hand() -> None:
    # Upstream only asserts SimpleMatch finds nothing here; the message itself is an Exim
    # RFC 3464 DSN: "Action: failed", "Final-Recipient: rfc822;david...@gmail.com",
    # "Status: 5.0.0", "Reporting-MTA: dns; smtp13.mailcore.me".
    report = detect_bounce(_corpus("simple_42.txt"))
    assert report is not None
    assert report.permanent == {"david...@gmail.com"}
    assert report.status_codes == {"david...@gmail.com": "5.0.0"}
    assert report.reporting_mta == "smtp13.mailcore.me"


def test_corpus_dsn_links_to_the_attached_original() -> None:
    # dsn_11 attaches the original as message/rfc822 (checked by hand in the file).
    report = detect_bounce(_corpus("dsn_11.txt"))
    assert report is not None
    assert report.original_message_id == (
        "mailman.0.1035637201.19036.mailman-developers@python.org"
    )
    assert report.status_codes == {"joem@example.com": "5.1.1"}


def test_detector_crash_does_not_hide_a_bounce(monkeypatch: pytest.MonkeyPatch) -> None:
    # flufl.bounce's all_failures() gives up at the first detector that raises (some do on
    # odd input); we skip that detector and still read the qmail text with the others.
    real = bounces.flufl_detectors()
    assert real, "flufl.bounce's detector list is read"
    crashed: list[str] = []

    class Crashes:
        def process(self, msg: object) -> tuple[set[str], set[str]]:
            crashed.append("ran")
            raise IndexError("a detector choking on odd input")

    monkeypatch.setattr(bounces, "flufl_detectors", lambda: [Crashes, *real])
    report = detect_bounce(_corpus("qmail_01.txt"))
    assert crashed, "the crashing detector ran first"
    assert report is not None
    assert report.permanent == {"userx@example.de"}


# --- hand-written RFC 3464 DSNs ---------------------------------------------------------

ORIGINAL_ID = "Abc.DEF-123@Mail.CRM.Example"

FAILED_RFC822 = f"""\
From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>
To: staff@clinic.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.org>
Auto-Submitted: auto-replied
X-Failed-Recipients: Patient.One@Example.COM
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Tue, 6 Oct 2026 10:00:00 +0000

Final-Recipient: rfc822; patient.one@example.com
Original-Recipient: rfc822;Patient.One@Example.COM
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <patient.one@example.com>: Recipient address
 rejected: User unknown

--B1
Content-Type: message/rfc822

From: staff@clinic.example
To: Patient.One@Example.COM
Subject: Your appointment
Message-ID: < {ORIGINAL_ID} >

Hello.

--B1--
"""

DELAYED_HEADERS = f"""\
From: Mail Delivery System <MAILER-DAEMON@relay.example.net>
Subject: Delivery Status Notification (Delay)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=B2

--B2
Content-Type: text/plain

This is a delivery status notification. Delivery to the following recipient has
been delayed: bob@slow.example. The server will keep trying for 4 more days.

--B2
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; bob@slow.example
Action: delayed
Status: 4.4.1
Will-Retry-Until: Sat, 10 Oct 2026 10:00:00 +0000
Diagnostic-Code: smtp; 421 4.4.1 connection timed out

--B2
Content-Type: text/rfc822-headers

From: staff@clinic.example
To: bob@slow.example
Message-ID: <{ORIGINAL_ID}>
Subject: Results

--B2--
"""

MIXED_TEXT_RFC822 = f"""\
From: mailer-daemon@mx.zoho.example
Subject: Undelivered Mail Returned to Sender
In-Reply-To: <reply-fallback@crm.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B3"

--B3
Content-Type: text/plain

Delivery has failed to some recipients.

--B3
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.zoho.example
X-Original-Message-ID: <x-original@crm.example>

Final-Recipient: rfc822; gone@a.example
Action: failed
Status: 5.2.1

Final-Recipient: rfc822; later@b.example
Action: delayed
Status: 4.2.2

Final-Recipient: rfc822; fine@c.example
Action: delivered
Status: 2.0.0

Final-Recipient: rfc822; nostatus-action@d.example
Status: 5.7.1

--B3
Content-Type: text/rfc822

From: staff@clinic.example
To: gone@a.example, later@b.example, fine@c.example
Message-ID: <{ORIGINAL_ID}>
Subject: Hello

Body of the original.

--B3--
"""


def _b(text: str) -> bytes:
    return text.encode()


def test_failed_dsn_with_message_rfc822() -> None:
    report = detect_bounce(_b(FAILED_RFC822))
    assert report is not None
    assert report.permanent == {"patient.one@example.com"}
    assert report.delayed == frozenset()
    assert report.original_message_id == ORIGINAL_ID  # case kept, brackets and spaces gone
    assert report.candidate_message_ids == [ORIGINAL_ID]  # the DSN's own id is not a candidate
    assert report.reporting_mta == "mx.example.org"
    assert report.status_codes == {"patient.one@example.com": "5.1.1"}


def test_failed_dsn_with_crlf_line_endings() -> None:
    report = detect_bounce(_b(FAILED_RFC822).replace(b"\n", b"\r\n"))
    assert report is not None
    assert report.permanent == {"patient.one@example.com"}
    assert report.original_message_id == ORIGINAL_ID


def test_delayed_dsn_is_not_a_bounce() -> None:
    report = detect_bounce(_b(DELAYED_HEADERS))
    assert report is not None
    assert report.permanent == frozenset()
    assert report.delayed == {"bob@slow.example"}
    assert report.original_message_id == ORIGINAL_ID  # from text/rfc822-headers
    assert report.status_codes == {"bob@slow.example": "4.4.1"}


def test_mixed_dsn_per_recipient_with_text_rfc822() -> None:
    report = detect_bounce(_b(MIXED_TEXT_RFC822))
    assert report is not None
    assert report.permanent == {"gone@a.example", "nostatus-action@d.example"}
    assert report.delayed == {"later@b.example"}
    assert report.status_codes == {
        "gone@a.example": "5.2.1",
        "later@b.example": "4.2.2",
        "nostatus-action@d.example": "5.7.1",
    }
    # Priority: attached original (Zoho's text/rfc822), X-Original-Message-ID, In-Reply-To.
    assert report.original_message_id == ORIGINAL_ID
    assert report.candidate_message_ids == [
        ORIGINAL_ID,
        "x-original@crm.example",
        "reply-fallback@crm.example",
    ]


def test_delivery_status_action_beats_flufl_text_heuristics() -> None:
    # flufl.bounce cannot read the untyped Final-Recipient, so its SimpleMatch reads the prose
    # as a permanent failure; our reading of the delivery-status part says "delayed".
    raw = """\
From: Mail Delivery Subsystem <mailer-daemon@relay.example.net>
Content-Type: multipart/report; report-type=delivery-status; boundary=B4

--B4
Content-Type: text/plain

Delivery to the following recipient failed permanently:

     bob@slow.example

--B4
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: bob@slow.example
Action: delayed
Status: 4.4.1

--B4--
"""
    assert scan_message(email.message_from_bytes(_b(raw))) == {b"bob@slow.example"}
    report = detect_bounce(_b(raw))
    assert report is not None
    assert report.permanent == frozenset()
    assert report.delayed == {"bob@slow.example"}


def test_without_attachment_falls_back_to_headers() -> None:
    raw = """\
From: postmaster@outlook.example
Subject: Undeliverable: Your appointment
X-Failed-Recipients: a@x.example, B@Y.example
X-Original-Message-ID: <Outer-XO@crm.example>
In-Reply-To: <IRT@crm.example>
References: <first@crm.example> <second@crm.example>
Message-ID: <ndr@outlook.example>
Content-Type: text/plain

Delivery has failed to these recipients or groups.
"""
    report = detect_bounce(_b(raw))
    assert report is not None
    assert report.permanent == {"a@x.example", "b@y.example"}
    assert report.candidate_message_ids == [
        "Outer-XO@crm.example",
        "IRT@crm.example",
        "second@crm.example",
        "first@crm.example",
    ]
    assert report.original_message_id == "Outer-XO@crm.example"


def test_gmail_plain_text_failed_permanently() -> None:
    raw = """\
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: staff@clinic.example
Subject: Delivery Status Notification (Failure)
Content-Type: text/plain; charset=UTF-8

Delivery to the following recipient failed permanently:

     nobody.here@example.com

Technical details of permanent failure:
The email account that you tried to reach does not exist.

----- Original message -----

Message-ID: <Quoted-Inline@crm.example>
Subject: Your appointment
"""
    report = detect_bounce(_b(raw))
    assert report is not None
    assert report.permanent == {"nobody.here@example.com"}
    assert report.original_message_id == "Quoted-Inline@crm.example"


def test_success_dsn_is_none() -> None:
    raw = FAILED_RFC822.replace("Action: failed", "Action: delivered").replace(
        "Status: 5.1.1", "Status: 2.0.0"
    )
    raw = raw.replace("X-Failed-Recipients: Patient.One@Example.COM\n", "")
    assert detect_bounce(_b(raw)) is None


def test_non_ascii_recipient_is_read_as_utf8() -> None:
    raw = FAILED_RFC822.replace("Patient.One@Example.COM", "Jürgen@Example.COM").replace(
        "patient.one@example.com", "jürgen@example.com"
    )
    report = detect_bounce(raw.encode("utf-8"))
    assert report is not None
    assert report.permanent == {"jürgen@example.com"}


def test_base64_encoded_delivery_status() -> None:
    status = b"Reporting-MTA: dns; mx.b64.example\n\nFinal-Recipient: rfc822; z@z.example\n"
    status += b"Action: failed\nStatus: 5.1.1\n"
    raw = (
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=Q\n\n"
        b"--Q\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(status)
        + b"\n--Q--\n"
    )
    report = detect_bounce(raw)
    assert report is not None
    assert report.permanent == {"z@z.example"}
    assert report.reporting_mta == "mx.b64.example"


# --- not bounces ------------------------------------------------------------------------

ORDINARY = """\
From: Dr. Smith <smith@clinic.example>
To: patient@example.com
Subject: Re: Appointment
Message-ID: <ordinary@clinic.example>
In-Reply-To: <earlier@crm.example>
Content-Type: text/plain; charset=utf-8

Hi, see you on Tuesday. If my last message failed to reach you, call us.
"""

OUT_OF_OFFICE = """\
From: Jane <jane@partner.example>
To: staff@clinic.example
Subject: Automatic reply: Your appointment
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
In-Reply-To: <sent-1@crm.example>
Content-Type: text/plain

I am out of the office until Monday and will reply on my return.
For urgent matters, contact reception@partner.example.
"""

VACATION_HTML = """\
From: bob@example.com
Subject: Out of Office
Auto-Submitted: auto-replied
Precedence: bulk
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=ALT

--ALT
Content-Type: text/plain

Away until 12/01. Your message to bob@example.com will be read later.
--ALT
Content-Type: text/html

<p>Away until 12/01.</p>
--ALT--
"""

NEWSLETTER = """\
From: news@vendor.example
Subject: Monthly update
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

<html><body>Caf=E9 news. Unsubscribe: <a href=3D"mailto:u@vendor.example">here</a>=
</body></html>
"""


@pytest.mark.parametrize("raw", [ORDINARY, OUT_OF_OFFICE, VACATION_HTML, NEWSLETTER])
def test_ordinary_mail_and_auto_replies_are_none(raw: str) -> None:
    assert detect_bounce(_b(raw)) is None


# --- robustness -------------------------------------------------------------------------


def test_malformed_input_never_raises() -> None:
    rnd = random.Random(1234)
    samples: list[bytes] = [b"", b"\x00\xff\xfe", bytes(range(256)) * 40]
    samples.append(b"Content-Type: multipart/report; boundary=\n\n--\n--")
    samples.append(b"Content-Type: text/plain; charset=x-unknown-charset\n\n\xe9\xe8")
    samples.append(_b(FAILED_RFC822).replace(b"us-ascii", b"bogus-8"))
    for name in ["dsn_11.txt", "qmail_01.txt", "yahoo_06.txt", "microsoft_01.txt"]:
        raw = _corpus(name)
        samples.extend(raw[:cut] for cut in range(0, len(raw), max(1, len(raw) // 25)))
        for _ in range(30):
            mutated = bytearray(raw)
            for _ in range(40):
                mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
            samples.append(bytes(mutated))
    for raw in [_b(FAILED_RFC822), _b(MIXED_TEXT_RFC822)]:
        samples.extend(raw[:cut] for cut in range(0, len(raw), 37))
    for sample in samples:
        result = detect_bounce(sample)
        assert result is None or isinstance(result, BounceReport)


def test_report_repr_holds_no_addresses_or_ids() -> None:
    report = detect_bounce(_b(FAILED_RFC822))
    assert report is not None
    text = repr(report) + str(report)
    assert "@" not in text
    assert "permanent=1" in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<AbC@Host.Example>", "AbC@Host.Example"),
        ("  < AbC@Host.Example >\r\n", "AbC@Host.Example"),
        ("AbC@Host.Example", "AbC@Host.Example"),
        ("(comment) <a@b>", "a@b"),
        ("", None),
    ],
)
def test_normalise_message_id(value: str, expected: str | None) -> None:
    assert normalise_message_id(value) == expected
