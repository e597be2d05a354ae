"""From the RFC 822 message the send service built to a Graph draft (JSON).

Graph drafts are JSON: one body (HTML preferred, else text), recipients, custom `x-`
headers and file attachments. Graph assigns its own Message-ID; the sent copy's
`internetMessageId` comes back with the draft. Threading a reply goes through
`createReply` on the original message (Graph sets In-Reply-To/References itself).
"""

from __future__ import annotations

import base64
import email
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.utils import getaddresses
from typing import Any


@dataclass(frozen=True)
class DraftAttachment:
    name: str
    content_type: str
    content: bytes = field(repr=False)
    is_inline: bool
    content_id: str | None

    @property
    def size(self) -> int:
        return len(self.content)

    def file_attachment(self) -> dict[str, Any]:
        """The `#microsoft.graph.fileAttachment` JSON (content inline, base64)."""
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.content).decode("ascii"),
            "isInline": self.is_inline,
        }
        if self.content_id:
            body["contentId"] = self.content_id
        return body

    def upload_item(self) -> dict[str, Any]:
        """The `AttachmentItem` of createUploadSession."""
        item: dict[str, Any] = {
            "attachmentType": "file",
            "name": self.name,
            "size": self.size,
            "contentType": self.content_type,
            "isInline": self.is_inline,
        }
        if self.content_id:
            item["contentId"] = self.content_id
        return item


@dataclass(frozen=True)
class GraphDraft:
    message: dict[str, Any] = field(repr=False)
    """subject, body, recipients, x- headers: the JSON of the draft without attachments."""
    attachments: list[DraftAttachment] = field(repr=False)
    message_id: str | None
    """The Message-ID of the MIME we were given (Graph will assign its own)."""


def _recipients(message: Message, header: str) -> list[dict[str, Any]]:
    values = [str(v) for v in message.get_all(header, [])]
    out: list[dict[str, Any]] = []
    for name, address in getaddresses(values):
        if not address:
            continue
        entry: dict[str, str] = {"address": address}
        if name:
            entry["name"] = name
        out.append({"emailAddress": entry})
    return out


def _decoded(part: Message) -> bytes:
    content = part.get_payload(decode=True)
    return content if isinstance(content, bytes) else b""


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment" or part.get_filename():
        return True
    # An inline image of multipart/related; text parts are the body's alternatives.
    return part.get_content_maintype() != "text"


def parse_for_graph(mime: bytes) -> GraphDraft:
    parsed = email.message_from_bytes(mime, _class=EmailMessage, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    body_part = parsed.get_body(preferencelist=("html", "plain"))
    if body_part is not None:
        content = body_part.get_content()
        body = {
            "contentType": "html" if body_part.get_content_subtype() == "html" else "text",
            "content": content if isinstance(content, str) else "",
        }
    else:
        body = {"contentType": "text", "content": ""}

    attachments: list[DraftAttachment] = []
    for part in parsed.walk():
        if part.is_multipart() or part is body_part or not _is_attachment(part):
            continue
        content_id = part.get("Content-ID")
        disposition = (part.get_content_disposition() or "").lower()
        attachments.append(
            DraftAttachment(
                name=part.get_filename() or "attachment",
                content_type=part.get_content_type(),
                content=_decoded(part),
                is_inline=disposition == "inline" or (bool(content_id) and disposition == ""),
                content_id=str(content_id).strip().strip("<>") if content_id else None,
            )
        )

    message: dict[str, Any] = {"subject": str(parsed.get("Subject", "")), "body": body}
    for header, key in (
        ("To", "toRecipients"),
        ("Cc", "ccRecipients"),
        ("Bcc", "bccRecipients"),
        ("Reply-To", "replyTo"),
    ):
        found = _recipients(parsed, header)
        if found:
            message[key] = found
    custom = [
        {"name": name, "value": str(value)}
        for name, value in parsed.items()
        if name.lower().startswith("x-")
    ]
    if custom:
        message["internetMessageHeaders"] = custom
    message_id = parsed.get("Message-ID")
    return GraphDraft(
        message=message,
        attachments=attachments,
        message_id=str(message_id).strip() if message_id else None,
    )
