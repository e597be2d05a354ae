"""The walk over a parsed MIME tree that makes a `ParsedMessage` (bodies, attachments,
headers). One class on purpose: the walk numbers parts, collects attachments and joins
bodies in one pre-order pass, and the header reads share the message's charset hint."""

from __future__ import annotations

import hashlib
import mimetypes
from email.message import Message

from app.messages.mime.addresses import parse_address_list
from app.messages.mime.bodies import (
    EXTENSIONS,
    META_CHARSET,
    Bodies,
    clean_filename,
    cut_sanitised_html,
    make_snippet,
    payload_bytes,
    safe_call,
    salvage_multipart,
    serialise,
    truncate_utf8,
    unflow,
)
from app.messages.mime.charsets import LATIN_LABELS, decode_bytes, strip_bad_chars
from app.messages.mime.hashing import normalised_content_hash
from app.messages.mime.headers import (
    collapse,
    decode_words,
    message_ids,
    normalise_message_id,
    parse_date,
    unfold,
)
from app.messages.mime.model import (
    MAX_DEPTH,
    MAX_HEADER_CHARS,
    MAX_PARTS,
    ParsedAttachment,
    ParsedMessage,
    Participant,
)
from app.messages.sanitize import html_to_text, sanitize_html


class Extractor:
    def __init__(
        self,
        message: Message,
        body_limit_bytes: int,
        *,
        walk_body: bool = True,
        eight_bit: bool = True,
    ):
        self.message = message
        self.walk_body = walk_body
        self.limit = max(0, body_limit_bytes)
        self.headers: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            if isinstance(name, str) and isinstance(value, str):
                self.headers.setdefault(name.strip().lower(), []).append(value)
        # The hint only ever decodes raw 8-bit bytes (surrogate escapes) in headers and
        # file names: a message that is ASCII throughout has none, so skip the walk.
        self.hint = self._body_charset_hint() if eight_bit else None
        self.attachments: list[ParsedAttachment] = []
        self.part_count = 0

    # headers

    def _first(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0][:MAX_HEADER_CHARS] if values else None

    def _text_header(self, name: str) -> str | None:
        value = self._first(name)
        return collapse(decode_words(unfold(value), self.hint)) if value is not None else None

    def _addresses(self, name: str) -> list[Participant]:
        return parse_address_list(self.headers.get(name, []), self.hint)

    def _body_charset_hint(self) -> str | None:
        # Raw 8-bit headers are most often in the charset of the body, when it isn't UTF-8.
        for part in safe_call(lambda: list(self.message.walk()), [])[:50]:
            charset = safe_call(part.get_content_charset)
            if charset and charset.lower() not in LATIN_LABELS and charset.lower() != "utf-8":
                return str(charset)
        return None

    # walk

    def _walk(self, part: Message, depth: int) -> Bodies:
        index = self.part_count
        self.part_count += 1
        bodies = Bodies()
        if depth > MAX_DEPTH or index >= MAX_PARTS:
            return bodies
        content_type = safe_call(part.get_content_type, "text/plain") or "text/plain"
        maintype, _, subtype = content_type.partition("/")
        payload = safe_call(lambda: part.get_payload(), None)
        if maintype == "multipart" and not isinstance(payload, list):
            # Missing or wrong boundary parameter: find the boundary in the body, else
            # show the body as text (what mail clients do).
            salvaged = salvage_multipart(payload, subtype)
            if salvaged is None:
                text = decode_bytes(payload_bytes(part), None)
                if text.strip():
                    bodies.texts.append(strip_bad_chars(text.replace("\r\n", "\n")))
                return bodies
            payload = salvaged
        if maintype == "multipart" and isinstance(payload, list):
            parts = [child for child in payload if isinstance(child, Message)]
            children = [self._walk(child, depth + 1) for child in parts]
            if subtype == "alternative":
                texts = [c.texts for c in children if c.texts]
                htmls = [c.htmls for c in children if c.htmls]
                bodies.texts = texts[-1] if texts else []
                bodies.htmls = htmls[-1] if htmls else []
            else:
                for child in children:
                    bodies.extend(child)
            return bodies
        if maintype == "message" and subtype in ("rfc822", "global"):
            self._add_attached_message(part, index)
            return bodies
        self._leaf(part, index, content_type, bodies)
        return bodies

    def _add_attached_message(self, part: Message, index: int) -> None:
        inner = safe_call(lambda: part.get_payload(0), None)
        content = b""
        name = clean_filename(decode_words(safe_call(part.get_filename, None) or "", self.hint))
        if isinstance(inner, Message):
            content = serialise(inner)
            if name is None:
                subjects = [str(v) for n, v in inner.raw_items() if n.lower() == "subject"]
                subject = collapse(decode_words(unfold(subjects[0]))) if subjects else ""
                name = clean_filename(subject[:100])
                name = f"{name}.eml" if name else None
        self._attach(part, index, "message/rfc822", content, name)

    def _leaf(self, part: Message, index: int, content_type: str, bodies: Bodies) -> None:
        disposition = safe_call(part.get_content_disposition, None)
        raw_name = safe_call(part.get_filename, None)
        filename = clean_filename(decode_words(str(raw_name), self.hint)) if raw_name else None
        data = payload_bytes(part)
        is_body = (
            content_type in ("text/plain", "text/html")
            and disposition != "attachment"
            and filename is None
        )
        if not is_body:
            self._attach(part, index, content_type, data, filename)
            return
        charset = safe_call(part.get_content_charset, None)
        if content_type == "text/html":
            if charset is None:
                sniffed = META_CHARSET.search(data[:2048])
                charset = sniffed.group(1).decode("ascii") if sniffed else None
            bodies.htmls.append(strip_bad_chars(decode_bytes(data, charset)))
            return
        text = strip_bad_chars(decode_bytes(data, charset))
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        fmt = safe_call(lambda: part.get_param("format"), None)
        if isinstance(fmt, str) and fmt.lower() == "flowed":
            delsp = safe_call(lambda: part.get_param("delsp"), None)
            text = unflow(text, delsp=isinstance(delsp, str) and delsp.lower() == "yes")
        bodies.texts.append(text)

    def _attach(
        self,
        part: Message,
        index: int,
        content_type: str,
        content: bytes,
        filename: str | None,
    ) -> None:
        content_ids = self.headers_of(part, "content-id")
        content_id = normalise_message_id(unfold(content_ids[0])) if content_ids else None
        if not content and filename is None and content_id is None:
            return  # an empty part with nothing to show (e.g. a blank alternative)
        disposition = safe_call(part.get_content_disposition, None)
        is_inline = disposition == "inline" or (disposition is None and content_id is not None)
        if filename is None:
            extension = EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type)
            extension = extension or ".bin"
            filename = f"part-{index}{extension}"
        self.attachments.append(
            ParsedAttachment(
                filename=filename,
                content_type=content_type,
                size=len(content),
                content_id=content_id,
                is_inline=is_inline,
                part_index=index,
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
            )
        )

    @staticmethod
    def headers_of(part: Message, name: str) -> list[str]:
        return [str(v) for n, v in part.raw_items() if isinstance(n, str) and n.lower() == name]

    # result

    def result(self) -> ParsedMessage:
        if self.walk_body:
            bodies = self._walk(self.message, 0)
        else:
            payload = safe_call(lambda: self.message.get_payload(), "")
            raw_body = (
                payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
            )
            bodies = Bodies(texts=[strip_bad_chars(decode_bytes(raw_body, None))])
        text_full = "\n\n".join(bodies.texts) if bodies.texts else None
        html_raw = "\n".join(bodies.htmls) if bodies.htmls else None

        truncated = False
        text_body = None
        if text_full is not None:
            text_body, cut = truncate_utf8(text_full, self.limit)
            truncated |= cut
        html_body = None
        safe = ""
        if html_raw is not None:
            # Bound the sanitiser's work on huge bodies: sanitising only shrinks mail HTML
            # in practice, so a raw prefix of 4x the limit still fills the limit.
            precut, cut_raw = truncate_utf8(html_raw, self.limit * 4 + 65536)
            safe = sanitize_html(precut)
            html_body, cut = cut_sanitised_html(safe, self.limit)
            truncated |= cut or cut_raw

        has_text = text_full is not None and text_full.strip() != ""
        if has_text and text_full is not None:
            body_text = text_full
        else:  # the text of the HTML only counts when there is no text body
            body_text = html_to_text(safe) if html_raw is not None else ""
        snippet = make_snippet(body_text)

        subject = self._text_header("subject") or ""
        senders = self._addresses("from")
        to, cc = self._addresses("to"), self._addresses("cc")
        bcc = self._addresses("bcc")
        message_id = normalise_message_id(unfold(self._first("message-id") or ""))
        in_reply_to_ids = message_ids(unfold(self._first("in-reply-to") or ""))
        sent_at = parse_date(self._first("date"))

        content_hash = normalised_content_hash(
            message_id=message_id,
            subject=subject,
            sender=senders[0].address if senders else None,
            recipients=[p.address for p in (*to, *cc)],
            sent_at=sent_at,
            body=body_text,
            attachments=self.attachments,
        )
        return ParsedMessage(
            internet_message_id=message_id,
            in_reply_to=in_reply_to_ids[0] if in_reply_to_ids else None,
            subject=subject,
            from_=senders[0] if senders else None,
            to=to,
            cc=cc,
            bcc=bcc,
            sent_at=sent_at,
            text_body=text_body,
            html_body=html_body,
            snippet=snippet,
            truncated=truncated,
            attachments=self.attachments,
            content_hash=content_hash,
        )
