"""The fast paths of ``parse_message`` give exactly what the general paths give.

* The MIME tree: ``parse_message`` reads every message through ``fast_tree`` first and
  falls back to ``BytesParser(policy=compat32)`` when it declines. The extractor only
  sees the tree, so node-by-node equality of the two trees (headers, payloads, preamble,
  epilogue, defects, default types) means identical parse results. Checked on the whole
  corpus, on generated messages of the shapes mail clients write, and on thousands of
  seeded mutations of both (line endings, delimiters, headers, truncation) that must
  either match or be declined.
* Address lists: plain ``Name <a@b.c>`` lists are read without the header registry; the
  participants must be the registry's, on the corpus and on generated lists.
* Snippets: made from a prefix of the body when that prefix is long enough.
* The charset hint for raw 8-bit headers is not looked for in an all-ASCII message.
"""

from __future__ import annotations

import random
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from app.messages.mime import SNIPPET_LENGTH, make_snippet, parse_message
from app.messages.mime.addresses import (
    _participant,
    _quote_bare_names,
    _registry_address_pairs,
    _simple_address_pairs,
)
from app.messages.mime.bodies import visible
from app.messages.mime.charsets import unsurrogate
from app.messages.mime.extract import Extractor
from app.messages.mime.fast_tree import fast_tree
from app.messages.mime.headers import collapse, merge_encoded_words, unfold

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")


def tree(message: Message) -> Any:
    payload = message._payload
    return (
        isinstance(message, Message),
        message.policy is policy.compat32,
        list(message._headers),
        message._unixfrom,
        message.preamble,
        message.epilogue,
        [(type(d).__name__, str(d)) for d in message.defects],
        message.get_default_type(),
        message._charset,
        [tree(p) for p in payload] if isinstance(payload, list) else payload,
    )


def stdlib_message(raw: bytes) -> Message:
    return BytesParser(policy=policy.compat32).parsebytes(raw)


def stdlib_tree(raw: bytes) -> Any:
    return tree(stdlib_message(raw))


def check(raw: bytes) -> bool:
    """True when the fast path took the message (and then built the stdlib's tree)."""
    fast = fast_tree(raw)
    if fast is None:
        return False
    assert tree(fast) == stdlib_tree(raw), raw[:300]
    return True


def generated(rng: random.Random, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Dr Who {n} <doc{n}@dept.hospital.org>"
    msg["To"] = "a@example.org, B <b@example.org>"
    msg["Subject"] = rng.choice(["plain", "Grüße aus Köln", "x" * 200])
    msg["Message-ID"] = f"<m{n}@bench.test>"
    body = " ".join(rng.choices(["alpha", "beta", "Grüße", "line\n", "=", "--"], k=300))
    msg.set_content(body)
    if rng.random() < 0.7:
        msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    if rng.random() < 0.5:
        msg.add_attachment(
            rng.randbytes(rng.randint(10, 3000)),
            maintype="application",
            subtype="pdf",
            filename=f"scan-{n}.pdf",
        )
    if rng.random() < 0.2:
        msg.add_attachment("inline text\n", subtype="plain", filename="note.txt")
    policy_ = policy.SMTP if rng.random() < 0.5 else policy.default
    return msg.as_bytes(policy=policy_)


def mutate(raw: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(12)
    if choice == 0:
        return raw.replace(b"\r\n", b"\n")
    if choice == 1:  # mixed line endings
        lines = raw.split(b"\n")
        return b"\n".join(line + b"\r" if rng.random() < 0.3 else line for line in lines)
    if choice == 2:  # a bare CR somewhere
        at = rng.randrange(len(raw))
        return raw[:at] + b"\r" + raw[at:]
    if choice == 3:  # truncated anywhere
        return raw[: rng.randrange(len(raw))]
    if choice == 4:  # a line removed
        lines = raw.split(b"\n")
        del lines[rng.randrange(len(lines))]
        return b"\n".join(lines)
    if choice == 5:  # a line duplicated (delimiters twice, headers twice, ...)
        lines = raw.split(b"\n")
        at = rng.randrange(len(lines))
        lines.insert(at, lines[at])
        return b"\n".join(lines)
    if choice == 6:  # whitespace or dashes after a delimiter
        return raw.replace(b"==\r\n", rng.choice([b"== \r\n", b"==\t--\r\n", b"==x\r\n"]), 1)
    if choice == 7:  # a header line broken
        return raw.replace(b"Subject:", rng.choice([b"Subject :", b" Subject:", b":", b"From "]))
    if choice == 8:  # preamble and epilogue text
        return raw.replace(b"\n--", b"\npreamble\n\n--", 1) + b"epilogue\r\n"
    if choice == 9:  # 8-bit bytes and control characters
        at = rng.randrange(len(raw))
        return raw[:at] + rng.choice([b"\xe9", b"\x00", b"\x0b", b"\x1c", b"\x85"]) + raw[at:]
    if choice == 10:  # no blank line after the headers
        return raw.replace(b"\r\n\r\n", b"\r\n", 1).replace(b"\n\n", b"\n", 1)
    return raw.replace(b"multipart/mixed", rng.choice([b"multipart/digest", b"message/rfc822"]))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_message_tree_is_the_stdlib_tree(path: Path) -> None:
    check(path.read_bytes())


def test_generated_messages_take_the_fast_path_and_match() -> None:
    rng = random.Random(4)
    taken = sum(check(generated(rng, n)) for n in range(300))
    assert taken == 300  # well-formed client output is never left to the slow parser


def test_mutated_messages_match_or_are_declined() -> None:
    rng = random.Random(11)
    sources = [generated(rng, n) for n in range(60)] + [p.read_bytes() for p in FILES]
    declined = 0
    for _ in range(4000):
        raw = rng.choice(sources)
        for _ in range(rng.randint(1, 3)):
            if raw:
                raw = mutate(raw, rng)
        declined += not check(raw)
    assert 0 < declined < 4000


def test_parse_results_are_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    samples = [generated(rng, n) for n in range(40)] + [p.read_bytes() for p in FILES]
    fast = [parse_message(raw, body_limit_bytes=64 * 1024) for raw in samples]
    monkeypatch.setattr("app.messages.mime.parse.fast_tree", lambda raw: None)
    slow = [parse_message(raw, body_limit_bytes=64 * 1024) for raw in samples]
    assert fast == slow


# --- address lists ------------------------------------------------------------------

_ADDRESSES = [
    "a@example.org", "Bob.Smith@Example.COM", "x+tag@sub.domain.org", "o'neil@x.ie",
    "a.@x.org", ".a@x.org", "a@x.org.", "a@b..c", "a@[1.2.3.4]", "a@x", "a@-x.org",
    "q=1@x.org", "a?b@x.org", "{x}@x.org", "@x.org", "a@", "mailto:a@x.org", "a b@x.org",
]  # fmt: skip
_NAMES = [
    "", "Dr Who", "Dr  Who", "\tTab", "Alice", "'Jane Doe'", "Jane.Doe", '"Doe, Jane"',
    "=?utf-8?q?J=C3=B6rg?=", "Jörg", "(comment)", "a@b.org", "O'Neil", "x-y_z", "#1",
]  # fmt: skip
_JUNK = [",", ";", ":", "group:", "undisclosed-recipients:;", "<", ">", "(c)", " ", "\t"]


def _address_list(rng: random.Random) -> str:
    items = []
    for _ in range(rng.randint(1, 4)):
        address, name = rng.choice(_ADDRESSES), rng.choice(_NAMES)
        form = rng.randrange(5)
        if form == 0:
            item = address
        elif form == 1:
            item = f"{name} <{address}>"
        elif form == 2:
            item = f"{name}<{address}>{rng.choice(['', ' ', '  '])}"
        elif form == 3:
            item = f" <{address}>"
        else:
            item = rng.choice([address, f"{name} <{address}>"]) + rng.choice(_JUNK)
        items.append(item)
    return rng.choice([",", ", ", " ,", ",\t"]).join(items)


def _participants(pairs: list[tuple[str, str]]) -> list[Any]:
    return [_participant(name, address, None) for name, address in pairs]


def test_simple_address_lists_read_as_the_registry_reads_them() -> None:
    values = []
    for path in FILES:
        message = BytesParser(policy=policy.compat32).parsebytes(path.read_bytes())
        for name in ("from", "to", "cc", "bcc", "reply-to", "sender"):
            values.extend(str(v) for v in message.get_all(name) or [])
    rng = random.Random(3)
    for _ in range(20000):
        values.append(_address_list(rng))
    taken = 0
    for raw in values:
        value = _quote_bare_names(merge_encoded_words(unsurrogate(unfold(raw))))
        simple = _simple_address_pairs(value)
        if simple is not None:
            taken += 1
            assert _participants(simple) == _participants(_registry_address_pairs(value)), value
    assert taken > 2000


# --- snippets -----------------------------------------------------------------------


def test_snippet_from_a_prefix_is_the_snippet_of_the_whole_text() -> None:
    def whole(text: str) -> str:
        return collapse(visible(text[: SNIPPET_LENGTH * 50]))[:SNIPPET_LENGTH].rstrip()

    rng = random.Random(5)
    pieces = ["a", "bb", " ", "  ", "\n", "\t", "\u200b", "\xa0", "word ", "x" * 50, " " * 300]
    for _ in range(20000):
        text = "".join(rng.choices(pieces, k=rng.randint(0, 400)))
        assert make_snippet(text) == whole(text), repr(text)


# --- the header charset hint ----------------------------------------------------------


def test_ascii_messages_parse_the_same_without_the_charset_hint() -> None:
    rng = random.Random(9)
    samples = [generated(rng, n) for n in range(40)] + [p.read_bytes() for p in FILES]
    ascii_samples = [raw for raw in samples if raw.isascii()]
    assert len(ascii_samples) > 40
    for raw in ascii_samples:
        with_hint = Extractor(stdlib_message(raw), 64 * 1024, eight_bit=True).result()
        without = Extractor(stdlib_message(raw), 64 * 1024, eight_bit=False).result()
        assert with_hint == without
