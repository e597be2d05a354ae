"""HTML sanitising for email bodies shown in the CRM.

Email HTML is hostile input rendered inside our own frontend, so the policy is an
allow-list (``nh3``, the Python binding of the Rust ``ammonia`` sanitiser):

* no active content: ``script``, ``style``, ``iframe``, ``object``, ``embed``, ``form``
  and friends are dropped (the first group together with their content), and no
  event-handler attribute survives because no attribute outside the list does;
* links may only point to ``http(s)``, ``mailto`` or ``tel`` (relative URLs and
  fragments mean nothing outside the sender's page and are removed) and always carry
  ``rel="noopener noreferrer nofollow"``;
* the only thing that can make the reader's browser fetch anything is ``<img src>``
  with an ``http(s)`` URL (expected: remote images are how HTML mail looks), a ``cid:``
  reference to an inline attachment (the frontend rewrites those), or an inline
  ``data:image/...`` raster. Everything else that fetches (``background``, ``srcset``,
  ``poster``, ``<link>``, ``<base>``, ``<meta http-equiv=refresh>``, CSS ``url()``,
  ``@import``, ``image-set()``) is removed;
* ``class``/``id``/``name`` are dropped so a message can neither pick up the app's own
  CSS classes (to look like app UI) nor clobber DOM ids.
"""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser

import nh3

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo", "big",
        "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup", "dd",
        "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "font",
        "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "i", "img", "ins",
        "kbd", "li", "main", "mark", "nav", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s",
        "samp", "section", "small", "span", "strike", "strong", "sub", "summary", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul",
        "var", "wbr",
    }
)  # fmt: skip

# Removed together with everything inside them: their text is code, metadata or form
# chrome, never part of what the sender meant the reader to see.
REMOVED_WITH_CONTENT: frozenset[str] = frozenset(
    {
        "script", "style", "title", "noscript", "template", "iframe", "frame", "frameset",
        "noframes", "object", "embed", "applet", "svg", "math", "select", "textarea",
        "button", "xmp", "plaintext", "head", "audio", "video", "canvas", "map",
    }
)  # fmt: skip

_GENERIC_ATTRIBUTES = {"align", "valign", "dir", "lang", "title", "style", "width", "height"}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": _GENERIC_ATTRIBUTES,
    "a": {"href"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "bgcolor", "summary"},
    "td": {"colspan", "rowspan", "bgcolor", "nowrap", "abbr", "headers", "scope"},
    "th": {"colspan", "rowspan", "bgcolor", "nowrap", "abbr", "headers", "scope"},
    "tr": {"bgcolor"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "hr": {"size", "noshade", "color"},
    "time": {"datetime"},
    "details": {"open"},
    "bdo": {"dir"},
}

# CSS properties kept in ``style`` attributes: layout and typography only. None of them
# takes a url() value (background, background-image, list-style, border-image, cursor,
# content, filter, mask, clip-path, behavior, -moz-binding all can, so none is here).
ALLOWED_CSS_PROPERTIES: frozenset[str] = frozenset(
    {
        "background-color", "border", "border-bottom", "border-bottom-color",
        "border-bottom-style", "border-bottom-width", "border-collapse", "border-color",
        "border-left", "border-left-color", "border-left-style", "border-left-width",
        "border-radius", "border-right", "border-right-color", "border-right-style",
        "border-right-width", "border-spacing", "border-style", "border-top",
        "border-top-color", "border-top-style", "border-top-width", "border-width",
        "clear", "color", "direction", "display", "float", "font", "font-family",
        "font-size", "font-style", "font-variant", "font-weight", "height", "letter-spacing",
        "line-height", "margin", "margin-bottom", "margin-left", "margin-right",
        "margin-top", "max-height", "max-width", "min-height", "min-width", "padding",
        "padding-bottom", "padding-left", "padding-right", "padding-top", "table-layout",
        "text-align", "text-decoration", "text-indent", "text-transform", "vertical-align",
        "white-space", "width", "word-break", "word-spacing", "word-wrap", "overflow-wrap",
    }
)  # fmt: skip

LINK_REL = "noopener noreferrer nofollow"
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_IMAGE_SCHEMES = ("http:", "https:", "cid:")
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpe?g|webp|bmp);base64,[a-z0-9+/=\s]*\Z", re.I)
# Characters browsers ignore inside a URL scheme ("java\tscript:") and around a URL.
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]+")
# Anything in a style value that could fetch or execute, after undoing CSS escapes.
_CSS_DANGER = re.compile(r"url\(|image\(|image-set\(|expression\(|@import|javascript:|behavior")
_CSS_ESCAPE = re.compile(r"\\([0-9a-f]{1,6})\s?|\\(.)", re.I)
_CSS_COMMENT = re.compile(r"/\*.*?(\*/|\Z)", re.S)


def _url_allowed(value: str, schemes: tuple[str, ...]) -> bool:
    url = _URL_IGNORED.sub("", html_lib.unescape(value)).lower()
    return url.startswith(schemes)


def _css_is_safe(value: str) -> bool:
    def unescape(match: re.Match[str]) -> str:
        if match.group(1):
            try:
                return chr(int(match.group(1), 16))
            except (ValueError, OverflowError):
                return ""
        return match.group(2)

    text = _CSS_COMMENT.sub("", html_lib.unescape(value))
    text = _CSS_ESCAPE.sub(unescape, text)
    text = re.sub(r"\s+", "", text).lower()
    return _CSS_DANGER.search(text) is None


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "href":
        return value if _url_allowed(value, _LINK_SCHEMES) else None
    if attribute == "src":
        if tag != "img":
            return None
        if _url_allowed(value, _IMAGE_SCHEMES):
            return value
        return value if _DATA_IMAGE.match(value.strip()) else None
    if attribute == "style":
        # Drop only the declarations that could fetch; the property allow-list then
        # keeps the harmless rest ("color:red; background:url(...)" keeps its colour).
        kept = [decl for decl in value.split(";") if _css_is_safe(decl)]
        return ";".join(kept) or None
    return value


_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(REMOVED_WITH_CONTENT),
    attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
    attribute_filter=_filter_attribute,
    strip_comments=True,
    link_rel=LINK_REL,
    url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
    url_relative="deny",
    filter_style_properties=set(ALLOWED_CSS_PROPERTIES),
)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(text: str) -> str:
    # PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded as UTF-8.
    text = text.replace("\x00", "")
    return _LONE_SURROGATE.sub("\ufffd", text)


def sanitize_html(html: str | None) -> str:
    """Return ``html`` made safe to render in the CRM (see the module docstring)."""
    if not html:
        return ""
    # A style attribute emptied by the filters is left as style=""; drop it. Literal
    # text can't match: the sanitiser escapes quotes outside attribute values.
    return _CLEANER.clean(_scrub(html)).replace(' style=""', "")


def html_to_text(html: str | None) -> str:
    """The visible text of an HTML fragment: entities decoded, script/style dropped.

    Block elements and `<br>` become a newline and table cells a space, so that text from
    adjacent elements never runs together ("DOB:</td><td>01/02/1980" → "DOB: 01/02/1980").
    The send path's PHI hints give positions in this text, and its plain-text alternative
    is this text: keep both in mind when changing it.
    """
    if not html:
        return ""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; keep what was read from broken markup
        pass
    return "".join(parser.pieces)


_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "thead", "tfoot", "tr", "ul",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_HIDDEN_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        self._separate(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._separate(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS and self._hidden:
            self._hidden -= 1
        self._separate(tag)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.pieces.append(data)

    def _separate(self, tag: str) -> None:
        if self._hidden:
            return
        if tag in _BLOCK_TAGS:
            self.pieces.append("\n")
        elif tag in _CELL_TAGS:
            self.pieces.append(" ")
