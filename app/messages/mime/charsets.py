"""Charset labels to Python codecs, and decoding that never raises nor leaves surrogates."""

from __future__ import annotations

import codecs
import re

# Labels that mail software uses for a smaller charset than it actually writes; decoding
# with the superset is what mail clients and browsers (WHATWG Encoding) do.
SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "euc-cn": ("gb18030",),
    "gb_2312-80": ("gb18030",),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "shift-jis": ("cp932", "shift_jis_2004"),
    "sjis": ("cp932", "shift_jis_2004"),
    "x-sjis": ("cp932", "shift_jis_2004"),
    "ms_kanji": ("cp932",),
    "windows-31j": ("cp932",),
    "csshiftjis": ("cp932",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004"),
    "csiso2022jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2"),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "euc-kr": ("cp949",),
    "ks_c_5601-1987": ("cp949",),
    "ksc5601": ("cp949",),
    "ks_c_5601": ("cp949",),
    "big5": ("cp950", "big5hkscs"),
    "tis-620": ("cp874",),
    "iso-8859-11": ("cp874",),
    "iso-8859-9": ("cp1254",),
}
# Labels under which UTF-8 is very often sent by mistake: try UTF-8 first, then cp1252
# (a superset of ISO-8859-1 and ASCII that decodes all but five byte values).
LATIN_LABELS = frozenset(
    {
        "us-ascii", "ascii", "ansi_x3.4-1968", "iso-8859-1", "iso8859-1", "iso_8859-1",
        "latin1", "latin-1", "l1", "cp819", "windows-1252", "cp1252", "x-user-defined",
        "unknown-8bit", "x-unknown", "unknown", "default", "8bit", "7bit", "us",
    }
)  # fmt: skip
# Python text codecs that are not charsets anyone may choose for us.
_REFUSED_CODECS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined", "charmap"}
)


def _codec(name: str) -> str | None:
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def declared_codecs(charset: str | None) -> tuple[str, list[str]]:
    label = (charset or "").strip().strip("\"'").lower().split(";", 1)[0].strip()
    if not label or label in LATIN_LABELS:
        return label, []
    codecs_ = [c for c in (_codec(n) for n in SUPERSETS.get(label, (label,))) if c]
    return label, list(dict.fromkeys(codecs_))


def decode_bytes(data: bytes, charset: str | None, *, utf8_first: bool = False) -> str:
    """Decode ``data`` declared as ``charset``; never raises, never returns surrogates.

    A declared charset (or its usual superset: gb2312 → gb18030, shift_jis → cp932, ...)
    is tried strictly, then UTF-8, then the declared charset with replacement characters.
    ASCII/Latin-1/cp1252 labels, no label and unknown labels try UTF-8 (so often sent
    under those labels by mistake), then windows-1252 (a superset of both) with
    replacement. ``utf8_first`` tries UTF-8 before the declared charset (raw headers).
    """
    _, declared = declared_codecs(charset)
    candidates = ["utf-8", *declared] if utf8_first else [*declared, "utf-8"]
    for name in dict.fromkeys(candidates):
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError, ValueError):
            continue
    fallback = declared[0] if declared else "cp1252"
    return data.decode(fallback, "replace")


_SURROGATE_RUN = re.compile("[\udc80-\udcff]+")


def unsurrogate(text: str, hint_charset: str | None = None) -> str:
    """Turn bytes the parser kept as surrogate escapes into text (UTF-8, hint, cp1252)."""
    if text.isascii() or not _SURROGATE_RUN.search(text):
        return strip_bad_chars(text)

    def decode_run(match: re.Match[str]) -> str:
        data = match.group(0).encode("ascii", "surrogateescape")
        return decode_bytes(data, hint_charset, utf8_first=True)

    return strip_bad_chars(_SURROGATE_RUN.sub(decode_run, text))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def strip_bad_chars(text: str) -> str:
    text = text.replace("\x00", "")
    if text.isascii():  # surrogates are not ASCII: skip the scan of most bodies
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)
