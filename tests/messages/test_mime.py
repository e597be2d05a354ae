"""Targeted tests of ``parse_message``: decoding, participants, attachments, truncation,
reports, robustness and size."""

from __future__ import annotations

import base64
import hashlib
import os
import quopri
import random
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.messages.mime import (
    SNIPPET_LENGTH,
    Participant,
    decode_bytes,
    decode_words,
    normalise_message_id,
    parse_message,
    truncate_utf8,
)

CORPUS = Path(__file__).parent / "corpus"
LIMIT = 500 * 1024


def corpus(name: str, limit: int = LIMIT):  # type: ignore[no-untyped-def]
    return parse_message((CORPUS / name).read_bytes(), body_limit_bytes=limit)


def message(headers: str, body: bytes | str = b"", *, limit: int = LIMIT):  # type: ignore[no-untyped-def]
    raw_body = body.encode("utf-8") if isinstance(body, str) else body
    return parse_message(headers.encode("utf-8") + b"\n" + raw_body, body_limit_bytes=limit)


def plain(text: str, *, limit: int = LIMIT, extra: str = ""):  # type: ignore[no-untyped-def]
    headers = (
        "From: a@example.org\nSubject: s\n"
        + extra
        + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
    )
    return message(headers, text, limit=limit)


# --- decoded subjects and names ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "subject", "sender"),
    [
        (
            "handmade/shift_jis.eml",
            "お見積りのご依頼①",
            Participant("山田 太郎", "taro.yamada@example.co.jp"),
        ),
        (
            "handmade/iso-2022-jp.eml",
            "会議の日程について",
            Participant("鈴木 一郎", "suzuki@example.jp"),
        ),
        (
            "handmade/gb2312-encoded-words.eml",
            "关于王喆医生的会诊安排",
            Participant("李堃", "likun@hospital.example.cn"),
        ),
        (
            "handmade/windows-1252-subject.eml",
            "\u201cQuarterly\u201d report \u2013 \u20ac 1 000",
            Participant("Renée O\u2019Brien", "renee.obrien@clinic.example.ie"),
        ),
        (
            "handmade/utf8-raw-headers.eml",
            "Überweisung für Zoë",
            Participant("José Müller", "jose@clínica.example"),
        ),
        ("handmade/unknown-charset.eml", "Qaplaé!", Participant("Kéhless", "kahless@example.com")),
        (
            "mail-parser/mail_test_12.eml",
            "代开各地增值税发票",
            Participant("张先生", "baoguan@hotmail.com"),
        ),
    ],
)
def test_subjects_and_names_are_decoded(name: str, subject: str, sender: Participant) -> None:
    parsed = corpus(name)
    assert parsed.subject == subject
    assert parsed.from_ == sender


def test_bodies_in_legacy_charsets() -> None:
    assert corpus("handmade/shift_jis.eml").text_body == (
        "山田様\n\nいつもお世話になっております。\n①の件、ご確認ください。\n"
    )
    assert corpus("handmade/iso-2022-jp.eml").text_body == (
        "佐藤様\n\n来週の会議は水曜日の午後二時からです。\nよろしくお願いいたします。\n"
    )
    assert corpus("handmade/gb2312-encoded-words.eml").text_body == (
        "您好：\n\n王喆医生和李堃护士将于周五参加会诊。\n"  # noqa: RUF001 (Chinese punctuation)
    )
    assert corpus("handmade/windows-1252-subject.eml").text_body == (
        "Dear Ms O\u2019Brien,\n\n"
        "Please find the \u201cQ3\u201d figures \u2013 total \u20ac 1 000.\n"
        "Café meeting at 10.\n"
    )
    # Unknown charset: UTF-8 fails, windows-1252 decodes everything.
    assert corpus("handmade/unknown-charset.eml").text_body == (
        "Café and naïve, invalid ÿþ bytes.\n"
    )


def test_character_split_across_encoded_words_survives() -> None:
    parsed = corpus("handmade/utf8-raw-headers.eml")
    assert parsed.to == [Participant("Zoë", "zoe@example.com")]


def test_format_flowed_is_unwrapped() -> None:
    parsed = corpus("handmade/utf8-raw-headers.eml")
    assert parsed.text_body == (
        "Hallo Zoë, dies ist eine lange Zeile, die mit format=flowed umbrochen wurde.\n"
        "\n> Zitat weiter\n"
    )


def test_raw_8bit_headers_use_the_body_charset_when_not_utf8() -> None:
    gb = corpus("flanker/charset-gb2312.eml")
    assert gb.from_ == Participant("腾讯企业邮箱", "10000@qq.com")
    cp1252 = corpus("flanker/broken-headers.eml")
    assert cp1252.subject == "Forget Asking For A Link Exchange…"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?caf=C3=A9?=", "café"),
        ("=?UTF-8?B?Y2Fmw6k?=", "café"),  # base64 without padding
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # whitespace between words dropped
        ("=?utf-8?q?a?= plain =?utf-8?q?b?=", "a plain b"),
        ("=?utf-8*en?q?hello?=", "hello"),  # RFC 2231 language tag
        ("=?gb2312?b?" + base64.b64encode("喆".encode("gbk")).decode() + "?=", "喆"),
        ("=?iso-8859-1?q?=93quoted=94?=", "\u201cquoted\u201d"),  # cp1252 under a latin-1 label
        ("=?x-nonsense?q?caf=C3=A9?=", "café"),
        ("=?utf-8?b?@@@?=", ""),
        ("no encoded words", "no encoded words"),
        ("=?broken", "=?broken"),
    ],
)
def test_decode_words(value: str, expected: str) -> None:
    assert decode_words(value) == expected


def test_decode_bytes_never_raises_and_prefers_supersets() -> None:
    assert decode_bytes("①".encode("cp932"), "shift_jis") == "①"
    assert decode_bytes("喆".encode("gbk"), "GB2312") == "喆"
    assert decode_bytes("é".encode(), "iso-8859-1") == "é"  # UTF-8 under a Latin-1 label
    assert decode_bytes(b"\xe9", "us-ascii") == "é"
    assert decode_bytes(b"\xff\xfe\xfd", "utf-8") == "\ufffd\ufffd\ufffd"
    assert decode_bytes(b"abc", "rot13") == "abc"  # not a text codec: ignored
    assert decode_bytes(b"\\u0041", "unicode_escape") == "\\u0041"  # refused
    assert decode_bytes(b"x", 'utf-8"; junk') == "x"


# --- participants --------------------------------------------------------------------


def test_bcc_only_sent_copy_with_group_and_garbage() -> None:
    parsed = corpus("handmade/bcc-only.eml")
    assert parsed.to == []
    assert parsed.cc == []
    assert parsed.bcc == [
        Participant(None, "p1@example.com"),
        Participant("Smith, John", "p2@example.com"),
        Participant(None, "p3@example.net"),
    ]
    assert parsed.from_ == Participant("Dr. Ann Lee", "ann.lee@hospital.example.org")


def test_participants_are_normalised_and_tolerant() -> None:
    parsed = message(
        "From: \"'Jane Doe'\" <Jane.Doe@Example.ORG >\n"
        "To: undisclosed-recipients:;\n"
        'Cc: "O\'Brien, Pat" <pat@x.org>, "Pat" <pat@x.org>, <>, just garbage, b@x.org\n'
        "Reply-To: =?utf-8?q?M=C3=BCller?= <mueller@x.de>\n"
        "Subject: s\n",
        "body",
    )
    assert parsed.from_ == Participant("Jane Doe", "jane.doe@example.org")
    assert parsed.to == []
    assert parsed.cc == [
        Participant("O'Brien, Pat", "pat@x.org"),
        Participant("Pat", "pat@x.org"),
        Participant(None, "b@x.org"),
    ]


def test_duplicate_and_lowercase_headers() -> None:
    parsed = corpus("handmade/lowercase-duplicate-headers.eml")
    assert parsed.subject == "First subject"  # the first of duplicate single headers
    assert [p.address for p in parsed.to] == ["a@example.org", "b@example.org"]  # all To
    assert parsed.internet_message_id == "dup-0001@ward.example.org"
    assert parsed.in_reply_to == "parent@example.org"
    assert parsed.sent_at is None  # "Yesterday at noon"
    assert parsed.text_body == "Lower-case headers.\n"


def test_missing_headers() -> None:
    parsed = corpus("handmade/no-headers.eml")
    assert parsed.subject == ""
    assert parsed.from_ is None
    assert parsed.to == []
    assert parsed.internet_message_id is None
    assert parsed.sent_at is None
    assert parsed.text_body == "Just a body, no headers at all.\n"


# --- ids and dates --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<Abc.123@Example.com>", "Abc.123@Example.com"),
        ("  <  abc@x >  (comment)", "abc@x"),
        ("abc@x", "abc@x"),
        ("<abc\n @x>", "abc@x"),
        ("", None),
        ("<>", None),
    ],
)
def test_message_id_normalisation(value: str, expected: str | None) -> None:
    assert normalise_message_id(value) == expected


def test_threading_headers() -> None:
    parsed = corpus("handmade/auto-reply.eml")
    assert parsed.internet_message_id == "OOF-0001@hospital.example.org"
    assert parsed.in_reply_to == "orig-0001@example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 08 Apr 2024 10:30:00 +0200", datetime(2024, 4, 8, 8, 30, tzinfo=UTC)),
        ("8 Apr 2024 10:30:00 -0000", datetime(2024, 4, 8, 10, 30, tzinfo=UTC)),
        ("Mon, 8 Apr 2024 10:30 EST", datetime(2024, 4, 8, 15, 30, tzinfo=UTC)),
        ("Thu, 01 Jan 1970 00:00:00 +0000", None),  # epoch zero: a broken clock
        ("not a date", None),
        ("Mon, 32 Foo 2024 99:99:99 +0000", None),
        ("", None),
    ],
)
def test_dates(value: str, expected: datetime | None) -> None:
    assert message(f"Date: {value}\n", "x").sent_at == expected


# --- bodies and attachments ------------------------------------------------------------


def test_nested_multiparts_give_bodies_and_real_attachments_only() -> None:
    parsed = corpus("handmade/nested-related-rfc822.eml")
    assert parsed.text_body == "Hello Ann,\n\nSee the chart: [chart]\nGrüße"
    assert parsed.html_body == (
        "<p>Hello <b>Ann</b>,</p><p>See the chart:</p>"
        '<img src="cid:chart-1@hospital.example.org" alt="chart">'
    )
    assert parsed.snippet == "Hello Ann, See the chart: [chart] Grüße"
    image, pdf, attached = parsed.attachments
    assert (image.filename, image.content_type, image.is_inline) == ("chart.png", "image/png", True)
    assert image.content_id == "chart-1@hospital.example.org"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.size == 67
    assert (pdf.filename, pdf.content_type, pdf.is_inline) == (
        "Befund Müller.pdf",  # RFC 2231 filename*
        "application/pdf",
        False,
    )
    assert pdf.content.startswith(b"%PDF-1.4")
    assert (attached.filename, attached.content_type) == ("Lab results ready.eml", "message/rfc822")
    assert [a.part_index for a in parsed.attachments] == [5, 6, 7]
    inner = parse_message(attached.content, body_limit_bytes=LIMIT)
    assert inner.internet_message_id == "inner-0001@lab.example.com"
    assert inner.text_body == "The results are ready."  # the CRLF before a boundary is its own
    assert parsed.cc == [Participant("Jürgen Müller", "juergen@partner.example.de")]


def test_text_parts_with_a_filename_are_attachments_not_bodies() -> None:
    parsed = message(
        'From: a@x.org\nContent-Type: multipart/mixed; boundary="b"\n',
        "--b\nContent-Type: text/plain\n\nbody\n"
        '--b\nContent-Type: text/plain; name="notes.txt"\n\nattached notes\n'
        "--b\nContent-Type: text/html\nContent-Disposition: attachment\n\n<p>page</p>\n"
        "--b--\n",
    )
    assert parsed.text_body == "body"
    assert parsed.html_body is None
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("notes.txt", "text/plain"),
        ("part-3.html", "text/html"),
    ]


def test_alternative_takes_the_last_of_each_kind() -> None:
    parsed = message(
        'From: a@x.org\nContent-Type: multipart/alternative; boundary="b"\n',
        "--b\nContent-Type: text/plain\n\nfirst\n"
        "--b\nContent-Type: text/plain\n\nsecond\n"
        "--b\nContent-Type: text/html\n\n<p>rich</p>\n--b--\n",
    )
    assert parsed.text_body == "second"
    assert parsed.html_body == "<p>rich</p>"


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("base64", base64.b64encode("Grüße aus Köln".encode()).decode()),
        ("base64", base64.b64encode("Grüße aus Köln".encode()).decode().rstrip("=")),
        ("quoted-printable", quopri.encodestring("Grüße aus Köln".encode()).decode()),
        ("8bit", "Grüße aus Köln"),
        ("binary", "Grüße aus Köln"),
        ("x-unknown", "Grüße aus Köln"),
    ],
)
def test_transfer_encodings(encoding: str, encoded: str) -> None:
    parsed = message(
        "From: a@x.org\nContent-Type: text/plain; charset=utf-8\n"
        f"Content-Transfer-Encoding: {encoding}\n",
        encoded,
    )
    assert parsed.text_body is not None
    assert parsed.text_body.strip() == "Grüße aus Köln"


def test_html_only_message_snippet_comes_from_the_html() -> None:
    parsed = corpus("handmade/html-dangerous.eml")
    assert parsed.text_body is None
    assert parsed.snippet == "Please pay pay here real link"
    assert parsed.html_body is not None
    for forbidden in (
        "<script",
        "javascript:",
        "onerror",
        "onload",
        "iframe",
        "evil.example/bg",
        "x.css",
        "refresh",
        "track.png",
        "t.gif",
        "srcset",
        "<form",
        "password",
    ):
        assert forbidden not in parsed.html_body
    assert '<a href="https://pay.example.com/inv?id=1" rel="noopener noreferrer nofollow">' in (
        parsed.html_body
    )


def test_snippet_is_collapsed_and_bounded() -> None:
    parsed = plain("  Hello\u200b\n\n\tworld  " + "x" * 500)
    assert parsed.snippet.startswith("Hello world xxx")
    assert len(parsed.snippet) == SNIPPET_LENGTH


def test_nul_bytes_never_reach_the_bodies() -> None:
    parsed = plain("a\x00b")
    assert parsed.text_body == "ab"


# --- truncation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "body", "truncated"),
    [
        (100, "a" * 99, False),
        (100, "a" * 100, False),  # exactly at the limit
        (100, "a" * 101, True),
        (10, "aaaaaaaaé", False),  # 8 + 2 bytes = 10
        (10, "aaaaaaaaaé", True),  # 9 + 2 bytes: é would straddle the limit
    ],
)
def test_text_truncation_at_the_limit(limit: int, body: str, truncated: bool) -> None:
    parsed = plain(body, limit=limit)
    assert parsed.truncated is truncated
    assert parsed.text_body is not None
    assert len(parsed.text_body.encode("utf-8")) <= limit
    if truncated:
        # Cut at the limit, or just before a character that would straddle it.
        assert parsed.text_body == ("a" * limit if body.isascii() else "a" * 9)
    else:
        assert parsed.text_body == body


def test_truncate_utf8_cuts_on_a_character_boundary() -> None:
    assert truncate_utf8("ab€", 5) == ("ab€", False)
    assert truncate_utf8("ab€", 4) == ("ab", True)
    assert truncate_utf8("ab€", 2) == ("ab", True)
    assert truncate_utf8("日本語", 7) == ("日本", True)
    assert truncate_utf8("", 0) == ("", False)


@pytest.mark.parametrize(("size", "truncated"), [(99, False), (100, False), (101, True)])
def test_html_truncation_at_the_limit(size: int, truncated: bool) -> None:
    html = "<p>" + "a" * (size - 7) + "</p>"  # sanitising leaves it unchanged
    assert len(html) == size
    parsed = message("From: a@x.org\nContent-Type: text/html; charset=utf-8\n", html, limit=100)
    assert parsed.truncated is truncated
    assert parsed.html_body is not None
    assert len(parsed.html_body.encode("utf-8")) <= 100
    if truncated:
        assert parsed.html_body.startswith("<p>aaa")
        assert parsed.html_body.endswith("</p>")
    else:
        assert parsed.html_body == html


def test_truncated_html_is_still_well_formed_and_safe() -> None:
    html = "<div>" + '<a href="https://x.example/very/long/link">link text</a> ' * 200 + "</div>"
    parsed = message("From: a@x.org\nContent-Type: text/html\n", html, limit=1000)
    assert parsed.truncated
    body = parsed.html_body
    assert body is not None
    assert len(body.encode()) <= 1000
    assert body.count("<a ") == body.count("</a>")
    assert body.endswith("</div>")


def test_either_body_cut_sets_the_flag() -> None:
    parsed = message(
        'From: a@x.org\nContent-Type: multipart/alternative; boundary="b"\n',
        "--b\nContent-Type: text/plain\n\nshort\n"
        "--b\nContent-Type: text/html\n\n<p>" + "x" * 500 + "</p>\n--b--\n",
        limit=100,
    )
    assert parsed.text_body == "short"
    assert parsed.truncated


# --- size and robustness ------------------------------------------------------------------


def test_multi_megabyte_html_parses_quickly() -> None:
    row = '<tr><td style="color:#333">Row &amp; text <a href="https://x.example/a">link</a></td></tr>\n'
    html = ("<table>" + row * (6_000_000 // len(row)) + "</table>").encode()
    raw = (
        b"From: a@x.org\nSubject: big\nContent-Type: text/html; charset=utf-8\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(html)
    )
    assert len(raw) > 8_000_000
    started = time.perf_counter()
    parsed = parse_message(raw, body_limit_bytes=500 * 1024)
    elapsed = time.perf_counter() - started
    assert elapsed < 15, elapsed
    assert parsed.truncated
    assert parsed.html_body is not None
    assert len(parsed.html_body.encode()) <= 500 * 1024
    assert parsed.snippet.startswith("Row & text link Row & text link")


def test_multi_megabyte_text_and_attachment() -> None:
    text = "Zeile mit Umlauten äöü und mehr Text.\n" * 150_000  # ~6 MB
    blob = os.urandom(3_000_000)
    raw = (
        (
            b'From: a@x.org\nContent-Type: multipart/mixed; boundary="b"\n\n'
            b"--b\nContent-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: quoted-printable\n\n"
        )
        + quopri.encodestring(text.encode())
        + (
            b'\n--b\nContent-Type: application/octet-stream; name="scan.dcm"\n'
            b"Content-Transfer-Encoding: base64\n\n"
        )
        + base64.encodebytes(blob)
        + b"\n--b--\n"
    )
    started = time.perf_counter()
    parsed = parse_message(raw, body_limit_bytes=2000 * 1024)
    assert time.perf_counter() - started < 15
    assert parsed.truncated
    assert parsed.text_body is not None
    assert len(parsed.text_body.encode()) <= 2000 * 1024
    (scan,) = parsed.attachments
    assert scan.content == blob
    assert scan.filename == "scan.dcm"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 100,
        b"\xff\xfe" * 5000,
        bytes(range(256)) * 100,
        b"Subject: only a header",
        b"From: \nTo: ,,,;;;<<<>>>\nSubject: =?utf-8?b?====?=\nDate: \n\n",
        b'Content-Type: multipart/mixed; boundary=""\n\n--\n\n--\n',
        b'Content-Type: text/plain; charset="utf-8\\""\n\nx',
        b"Content-Type: text/plain; charset=\xff\xfe\n\nx",
        b"Content-Type: multipart/mixed\n\nno boundary at all",
        b"Content-Type: message/rfc822\n\nnot really a message",
        b"Content-Type: message/delivery-status\n\nAction: failed\nFinal-Recipient: x",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=q\n\n--q\n",
        b"Content-Disposition: attachment; filename*=bogus''%%%\n\nx",
        b"From: =?utf-8?q?\xff?= <\xff@\xff>\nTo: \x80\x81\n\nx",
        b"Message-ID: <" + b"a" * 5000 + b">\nReferences: " + b"<x> " * 20000 + b"\n\nx",
        b"To: " + b", ".join(b"u%d@x.org" % i for i in range(3000)) + b"\n\nx",
        b"Subject: " + b"=?utf-8?q?a?= " * 20000 + b"\n\nx",
    ],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw, body_limit_bytes=1024)
    assert isinstance(parsed.subject, str)
    assert len(parsed.content_hash) == 64


def test_random_bytes_give_a_bounded_well_formed_result() -> None:
    rng = random.Random(7)
    for _ in range(50):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
        parsed = parse_message(raw, body_limit_bytes=512)
        assert isinstance(parsed.subject, str)
        assert len(parsed.snippet) <= SNIPPET_LENGTH
        assert "\n" not in parsed.snippet
        for body in (parsed.text_body, parsed.html_body):
            assert body is None or (len(body.encode("utf-8")) <= 512 and "\x00" not in body)
        assert re.fullmatch(r"[0-9a-f]{64}", parsed.content_hash)


def test_when_every_parser_fails_the_raw_text_and_its_hash_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RecursionError

    monkeypatch.setattr("app.messages.mime.parse.Extractor", broken)
    raw = b"Subject: lost\r\n\r\nHello \x00there " + "Grüße".encode() + b" x" * 600
    parsed = parse_message(raw, body_limit_bytes=100)
    assert parsed.subject == ""
    assert parsed.content_hash == hashlib.sha256(raw).hexdigest()
    assert parsed.text_body is not None
    assert parsed.text_body.startswith("Subject: lost\r\n\r\nHello there Grüße x x")
    assert len(parsed.text_body.encode("utf-8")) <= 100
    assert parsed.truncated
    assert parsed.snippet.startswith("Subject: lost Hello there Grüße x x")


def test_mime_tree_deeper_than_the_parser_recursion_limit() -> None:
    body = "".join(
        f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n" for i in range(3000)
    )
    parsed = message(
        "From: A <a@x.org>\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n", body
    )
    assert parsed.subject == "deep"  # headers survive the fallback
    assert parsed.from_ == Participant("A", "a@x.org")
    assert parsed.text_body is not None


# --- content hash -----------------------------------------------------------------------------


def _variants() -> list[bytes]:
    body = "Grüße,\nsee attached.\n"
    pdf = b"%PDF-1.4 tiny"
    common = (
        "Message-ID: <hash-1@x.org>\nDate: Mon, 08 Apr 2024 10:30:00 +0200\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{b}"\n'
    )
    first = (
        "From: Ann <ann@x.org>\nTo: b@y.org, c@y.org\nSubject: =?utf-8?q?Befund_f=C3=BCr_Sie?=\n"
        + common.format(b="one")
        + "\n--one\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(body.encode()).decode()
        + '--one\nContent-Type: application/pdf; name="a.pdf"\n'
        + "Content-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(pdf).decode()
        + "--one--\n"
    )
    # The same message as another provider returns it: other folding, encodings, order of
    # recipients, CRLF line ends, extra trace headers.
    second = (
        "Received: by mx.example; Mon, 8 Apr 2024 08:30:01 +0000\r\n"
        'From: "Ann" <ANN@x.org>\r\nTo: c@y.org,\r\n b@y.org\r\n'
        "Subject: =?UTF-8?B?QmVmdW5kIGbDvHIgU2ll?=\r\n"
        + common.format(b="two").replace("\n", "\r\n")
        + "\r\n--two\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + quopri.encodestring(body.encode()).decode().replace("\n", "\r\n")
        + "--two\r\nContent-Type: application/pdf\r\n"
        + 'Content-Disposition: attachment; filename="a.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(pdf).decode().replace("\n", "\r\n")
        + "--two--\r\n"
    )
    return [first.encode(), second.encode()]


def test_content_hash_is_stable_across_provider_encodings() -> None:
    first, second = (parse_message(raw, body_limit_bytes=LIMIT) for raw in _variants())
    assert first.subject == second.subject == "Befund für Sie"
    assert first.content_hash == second.content_hash


def test_content_hash_changes_with_content() -> None:
    raw = _variants()[0]
    changed = raw.replace(
        base64.encodebytes(b"%PDF-1.4 tiny"), base64.encodebytes(b"%PDF-1.4 TINY")
    )
    assert (
        parse_message(raw, body_limit_bytes=LIMIT).content_hash
        != parse_message(changed, body_limit_bytes=LIMIT).content_hash
    )
