"""Adding the open pixel and rewriting links in the HTML of an email we send.

The HTML is re-emitted token by token by the standard library's HTML parser, so only the
`href` of http(s) links and the pixel change; mailto:, tel: and anchors stay as they are.
Calling it again for the same email (a retried send) gives the same links and tokens.
"""

from __future__ import annotations

import html as html_lib
from html.parser import HTMLParser
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.tracking.tokens import make_token


def tracking_base_url(settings: Settings, module_settings: Any) -> str:
    domain = getattr(module_settings, "email_custom_tracking_domain", None)
    return f"https://{domain}" if domain else settings.public_base_url


class _Rewriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.links: list[str] = []
        self._placeholders: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, closing=True)

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], *, closing: bool) -> None:
        href = dict(attrs).get("href") if tag == "a" else None
        if href and href.strip().lower().startswith(("http://", "https://")):
            self.links.append(html_lib.unescape(href.strip()))
            marker = f"\x00LINK{len(self.links) - 1}\x00"
            parts = [tag] + [
                f'{name}="{marker}"'
                if name == "href"
                else (name if value is None else f'{name}="{html_lib.escape(value, quote=True)}"')
                for name, value in attrs
            ]
            self.out.append(f"<{' '.join(parts)}{' /' if closing else ''}>")
        else:
            self.out.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.out.append(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{data}]>")


async def instrument_html(
    session: AsyncSession,
    *,
    org_id: UUID,
    email_id: UUID,
    html: str,
    track_opens: bool,
    track_clicks: bool,
    base_url: str,
) -> str:
    secret = get_settings().tracking_token_secret.get_secret_value()
    base = base_url.rstrip("/")
    rewriter = _Rewriter()
    rewriter.feed(html)
    rewriter.close()
    body = "".join(rewriter.out)
    if track_clicks:
        for position, url in enumerate(rewriter.links):
            link_id = (
                await session.execute(
                    text(
                        "INSERT INTO ce_email_tracked_links (org_id, email_id, position, url) "
                        "VALUES (:org, :email, :pos, :url) "
                        "ON CONFLICT (org_id, email_id, position) "
                        "DO UPDATE SET url = EXCLUDED.url RETURNING id"
                    ),
                    {"org": org_id, "email": email_id, "pos": position, "url": url},
                )
            ).scalar_one()
            token = make_token(secret, "c", org_id, UUID(str(link_id)))
            body = body.replace(f"\x00LINK{position}\x00", f"{base}/t/c/{token}", 1)
    else:
        for position, url in enumerate(rewriter.links):
            body = body.replace(f"\x00LINK{position}\x00", html_lib.escape(url, quote=True), 1)
    if track_opens:
        token = make_token(secret, "o", org_id, email_id)
        pixel = (
            f'<img src="{base}/t/o/{token}" width="1" height="1" alt="" '
            'style="display:none;border:0">'
        )
        lower = body.lower()
        at = lower.rfind("</body>")
        body = body[:at] + pixel + body[at:] if at != -1 else body + pixel
    return body
