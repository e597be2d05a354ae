"""Every real-world and hand-made message in ``corpus/`` parses, and known ones parse right.

Sources and licences of the files: ``corpus/SOURCES.md``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.messages.mime import SNIPPET_LENGTH, ParsedMessage, Participant, parse_message

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")
LIMIT = 500 * 1024


def parse(name: str, limit: int = LIMIT) -> ParsedMessage:
    return parse_message((CORPUS / name).read_bytes(), body_limit_bytes=limit)


def test_corpus_is_not_empty() -> None:
    assert len(FILES) >= 70
    for folder in ("cpython", "mail-parser", "flanker", "handmade"):
        assert any(p.parent.name == folder for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_every_corpus_message_parses(path: Path) -> None:
    message = parse_message(path.read_bytes(), body_limit_bytes=LIMIT)

    assert isinstance(message.subject, str)
    assert len(message.snippet) <= SNIPPET_LENGTH
    assert "  " not in message.snippet
    assert "\n" not in message.snippet
    assert re.fullmatch(r"[0-9a-f]{64}", message.content_hash)
    for participant in [
        *([message.from_] if message.from_ else []),
        *message.to,
        *message.cc,
        *message.bcc,
    ]:
        assert "@" in participant.address
        assert participant.address == participant.address.strip().lower()
        assert participant.name is None or participant.name.strip() == participant.name != ""
    if message.sent_at is not None:
        assert message.sent_at.utcoffset() is not None
        assert message.sent_at.tzinfo == UTC
    for body in (message.text_body, message.html_body):
        if body is not None:
            assert "\x00" not in body
            assert len(body.encode("utf-8")) <= LIMIT
    if message.html_body:
        lowered = message.html_body.lower()
        assert "<script" not in lowered
        assert "javascript:" not in lowered
        assert not re.search(r"\son[a-z]+\s*=", lowered)
    for attachment in message.attachments:
        assert attachment.filename
        assert attachment.size == len(attachment.content)
        assert "/" in attachment.content_type
    for message_id in [message.internet_message_id, message.in_reply_to]:
        assert message_id is None or ("<" not in message_id and " " not in message_id)


def _addresses(participants: list[Participant]) -> list[str]:
    return [p.address for p in participants]


# Expected values for samples from the wild: what a person reading the message sees.
EXPECTED: dict[str, dict[str, Any]] = {
    "mail-parser/mail_test_12.eml": {
        "subject": "代开各地增值税发票",
        "from_": Participant("张先生", "baoguan@hotmail.com"),
        "sent_at": datetime(2018, 5, 13, 4, 32, 22, tzinfo=UTC),
    },
    "mail-parser/mail_test_5.eml": {
        "subject": "Je prépare mon été zéro complexe !",
        "from_": Participant("Marina de Carlance", "contact@carlance.fr"),
    },
    "mail-parser/mail_test_6.eml": {
        "subject": "Быстрее вкладывайте в золото!",  # folded right after "Subject:"
        "from_": Participant("Время пришло", "noreply@ggg.com"),
        "text_body": None,
    },
    "mail-parser/mail_test_18.eml": {
        "from_": Participant("LastßlName, FirstName", "comma.name@example.com"),
    },
    "mail-parser/mail_test_17.eml": {
        "subject": "Transferencia Interbancaria Banca en Línea",
    },
    "mail-parser/mail_test_10.eml": {
        "from_": Participant("Nicoletta Bernasconi", "nicoletta_bernasconi@it.ibm.com"),
    },
    "flanker/charset-gb2312.eml": {
        "subject": "提示：您的企业成员暂时无法登录邮件客户端",  # noqa: RUF001
        "from_": Participant("腾讯企业邮箱", "10000@qq.com"),
        "internet_message_id": None,
        "sent_at": None,
        "text_body": None,
    },
    "flanker/broken-headers.eml": {
        "subject": "Forget Asking For A Link Exchange…",
        "to": [Participant(None, "user@example.com")],
        "internet_message_id": "d3de01cd60c6$1491c120$a8557053@admin",
    },
    "flanker/enclosed.eml": {
        "to": [Participant("Александр Клижентас☯", "bob@example.com")],
        "text_body": "Hello\n",
    },
    "flanker/missing-final-boundary.eml": {
        "text_body": "Some body",
        "to": [Participant(None, "bob@example.com"), Participant(None, "hithere@example.com")],
    },
    "cpython/msg_07.txt": {"subject": "Here is your dingus fish"},
    "cpython/msg_41.txt": {"text_body": "Blah blah blah\n"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_known_samples_decode_as_a_reader_sees_them(name: str) -> None:
    message = parse(name)
    for field, expected in EXPECTED[name].items():
        assert getattr(message, field) == expected, field


def test_display_name_that_is_an_address_does_not_hide_the_real_mailbox() -> None:
    # From: alice@example.com <bob@example.com> — clients show and answer Bob.
    message = parse("mail-parser/mail_test_19.eml")
    assert message.from_ == Participant("alice@example.com", "bob@example.com")
    assert _addresses(message.to) == ["charlie@example.com", "dave@example.com"]
    assert message.to[0].name == "Charlie Brown"
    assert _addresses(message.cc) == ["frank@example.com"]


def test_multipart_report_dsn_from_the_wild() -> None:
    message = parse("mail-parser/mail_malformed_2.eml")
    assert message.text_body is not None
    assert "quota exceeded" in message.text_body
    # The report's parts are kept as attachments (its reading is `mime.dsn`'s job).
    assert [a.content_type for a in message.attachments] == [
        "message/delivery-status",
        "message/rfc822-headers",
    ]


def test_report_with_a_broken_boundary_parameter_is_still_read() -> None:
    message = parse("cpython/msg_25.txt")  # boundary="bo" cut short by the sender
    assert message.text_body is not None
    assert message.text_body.startswith("The original message was received at")
    assert [a.content_type for a in message.attachments] == [
        "message/delivery-status",
        "text/rfc822-headers",
    ]


def test_non_mime_gmail_bounce() -> None:
    message = parse("flanker/gmail-invalid-address.eml")
    assert message.attachments == []
    assert message.text_body is not None
    assert "awfawfawfawfawfaw@someserverhere.com" in message.text_body


def test_attached_message_is_one_eml_attachment() -> None:
    message = parse("flanker/enclosed.eml")
    (attachment,) = message.attachments
    assert attachment.filename == "thanks.eml"
    assert attachment.content_type == "message/rfc822"
    inner = parse_message(attachment.content, body_limit_bytes=LIMIT)
    assert inner.subject == "Thanks!"
    assert inner.from_ == Participant("Kirk Douglas", "dan@example.com")
    assert inner.text_body is not None
    assert inner.text_body.startswith("dudes... you're kicking")


def test_large_real_message_with_pdf_and_inline_images() -> None:
    message = parse("mail-parser/mail_test_2.eml")
    names = [a.filename for a in message.attachments]
    assert names == ["intestazione.jpg", "logometeo.jpg", "Bollettino.pdf"]
    pdf = message.attachments[2]
    assert pdf.content.startswith(b"%PDF")
    assert pdf.size > 1_000_000
    assert message.text_body
    assert message.html_body


def test_outlook_forward_keeps_att_htm_parts_as_attachments() -> None:
    message = parse("mail-parser/mail_test_7.eml")
    htm = [a for a in message.attachments if a.filename.endswith(".htm")]
    assert len(htm) >= 2
    assert all(a.content_type == "text/html" for a in htm)
    assert message.html_body
    assert message.text_body
