"""``sanitize_html``: each dangerous construct is removed, ordinary email HTML is kept."""

from __future__ import annotations

import pytest

from app.messages.sanitize import html_to_text, sanitize_html

REL = 'rel="noopener noreferrer nofollow"'


def test_none_and_empty() -> None:
    assert sanitize_html(None) == ""
    assert sanitize_html("") == ""


@pytest.mark.parametrize(
    ("html", "forbidden"),
    [
        ("<script>alert(1)</script>", "alert"),
        ("<SCRIPT SRC=https://evil.example/x.js></SCRIPT>", "evil"),
        ("<style>p{color:red}</style>", "color"),
        ("<iframe src='https://evil.example'></iframe>", "evil"),
        ("<object data='x.swf'></object>", "x.swf"),
        ("<embed src='x.swf'>", "x.swf"),
        ("<applet code='x'></applet>", "applet"),
        ("<form action='https://evil.example/login'><input name=p></form>", "evil"),
        ("<svg><script>alert(1)</script></svg>", "alert"),
        ("<math><mi xlink:href='javascript:alert(1)'>x</mi></math>", "javascript"),
        ("<template><img src=x onerror=alert(1)></template>", "onerror"),
        ("<noscript><p title='</noscript><img src=x onerror=alert(1)>'></noscript>", "onerror"),
        ("<title>Secret title</title>", "Secret"),
        ("<textarea>typed</textarea>", "typed"),
    ],
)
def test_active_content_is_removed_with_its_content(html: str, forbidden: str) -> None:
    result = sanitize_html(f"<p>keep</p>{html}")
    assert forbidden.lower() not in result.lower()
    assert "<p>keep</p>" in result


@pytest.mark.parametrize(
    "attribute",
    [
        'onclick="x()"',
        'onload="x()"',
        'onerror="x()"',
        'onmouseover="x()"',
        'ONFOCUS="x()"',
        'onanimationstart="x()"',
        'formaction="https://evil.example"',
    ],
)
def test_event_handler_attributes_are_removed(attribute: str) -> None:
    result = sanitize_html(f"<div {attribute}>text</div>")
    assert result == "<div>text</div>"


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java&#x09;script:alert(1)",
        "&#106;avascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "file:///etc/passwd",
        "/relative/path",
        "//evil.example/protocol-relative",
    ],
)
def test_dangerous_and_relative_link_targets_are_removed(href: str) -> None:
    assert sanitize_html(f'<a href="{href}">x</a>') == f"<a {REL}>x</a>"


@pytest.mark.parametrize(
    "href",
    ["https://hospital.example/a?b=1&amp;c=2", "http://x.example/", "mailto:a@b.org", "tel:+4412"],
)
def test_safe_links_keep_their_target_and_get_rel(href: str) -> None:
    result = sanitize_html(f'<a href="{href}" target="_top" rel="opener">x</a>')
    assert result == f'<a href="{href}" {REL}>x</a>'


@pytest.mark.parametrize(
    "src",
    [
        "https://img.example/logo.png",
        "http://img.example/logo.png",
        "cid:image001.png@01D9ABCD.12345670",
        "data:image/png;base64,iVBORw0KGgo=",
        "data:image/jpeg;base64,/9j/4AAQ",
    ],
)
def test_allowed_image_sources(src: str) -> None:
    assert sanitize_html(f'<img src="{src}" alt="a">') == f'<img src="{src}" alt="a">'


@pytest.mark.parametrize(
    "src",
    [
        "javascript:alert(1)",
        "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
        "data:text/html,<script>alert(1)</script>",
        "ftp://files.example/x.png",
        "/relative.png",
        "file:///c:/x.png",
    ],
)
def test_other_image_sources_are_removed(src: str) -> None:
    assert sanitize_html(f'<img src="{src}">') == "<img>"


@pytest.mark.parametrize(
    ("html", "forbidden"),
    [
        ('<body background="https://t.example/bg.png">x</body>', "t.example"),
        ('<table background="https://t.example/bg.png"><tr><td>x</td></tr></table>', "t.example"),
        ('<td background="https://t.example/bg.png">x</td>', "t.example"),
        ('<img src="https://ok.example/a.png" srcset="https://t.example/2x.png 2x">', "t.example"),
        ('<img src="https://ok.example/a.png" lowsrc="https://t.example/l.png">', "t.example"),
        ('<img src="https://ok.example/a.png" dynsrc="https://t.example/d.avi">', "t.example"),
        ('<link rel="stylesheet" href="https://t.example/x.css">', "t.example"),
        ('<base href="https://t.example/">', "t.example"),
        ('<meta http-equiv="refresh" content="0;url=https://t.example/">', "t.example"),
        ('<video poster="https://t.example/p.png"></video>', "t.example"),
        ('<audio src="https://t.example/a.mp3"></audio>', "t.example"),
        ('<picture><source srcset="https://t.example/s.webp"></picture>', "t.example"),
        ('<input type="image" src="https://t.example/i.png">', "t.example"),
        ('<a href="https://ok.example/" ping="https://t.example/ping">x</a>', "t.example"),
        ('<div style="background:url(https://t.example/bg.png)">x</div>', "t.example"),
        (
            '<div style="background-image: url(&quot;https://t.example/x&quot;)">x</div>',
            "t.example",
        ),
        ("<div style=\"list-style-image:url('https://t.example/l.png')\">x</div>", "t.example"),
        ('<div style="border-image: url(https://t.example/b.png) 30">x</div>', "t.example"),
        (
            '<div style="color: red; background: u\\72l(https://t.example/e.png)">x</div>',
            "t.example",
        ),
        ('<div style="width: expression(alert(1))">x</div>', "expression"),
        ('<div style="behavior: url(x.htc)">x</div>', "htc"),
        ("<style>@import url(https://t.example/i.css);</style>", "t.example"),
        (
            "<div style=\"background-image: image-set('https://t.example/a.png' 1x)\">x</div>",
            "t.example",
        ),
    ],
)
def test_no_other_external_fetches(html: str, forbidden: str) -> None:
    assert forbidden not in sanitize_html(html)


def test_harmless_styles_survive_dangerous_declarations() -> None:
    result = sanitize_html(
        '<p style="color: red; background: url(https://t.example/x.png); font-size: 12px;'
        ' position: fixed; z-index: 9999">x</p>'
    )
    assert result == '<p style="color:red;font-size:12px">x</p>'


def test_classes_ids_and_names_are_dropped() -> None:
    result = sanitize_html('<div class="btn btn-danger" id="login" name="x">x</div>')
    assert result == "<div>x</div>"


def test_typical_email_markup_is_kept() -> None:
    html = (
        '<table width="600" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff">'
        '<tbody><tr><td align="center" valign="top" style="padding:10px;color:#333333">'
        '<font face="Arial" color="#ff0000" size="2">Hello</font><br>'
        "<b>bold</b> <i>it</i> <u>u</u> <blockquote>quoted</blockquote>"
        '<ul><li>one</li></ul><ol start="3"><li>three</li></ol><hr></td></tr></tbody></table>'
    )
    assert sanitize_html(html) == html


def test_comments_and_conditional_comments_are_removed() -> None:
    html = (
        '<!--[if mso]><v:rect fill="https://t.example/x"></v:rect><![endif]--><p>ok</p><!-- c -->'
    )
    assert sanitize_html(html) == "<p>ok</p>"


def test_text_is_escaped_not_interpreted() -> None:
    assert sanitize_html("&lt;script&gt;alert(1)&lt;/script&gt;") == (
        "&lt;script&gt;alert(1)&lt;/script&gt;"
    )


def test_nul_and_lone_surrogates_do_not_break_it() -> None:
    assert sanitize_html("<p>a\x00b\ud800c</p>") == "<p>ab\ufffdc</p>"


def test_html_to_text() -> None:
    assert html_to_text("<p>Hello&nbsp;<b>Ann</b></p><p>line<br>two</p><style>p{}</style>") == (
        "\nHello\xa0Ann\n\nline\ntwo\n"
    )
    assert html_to_text(None) == ""
