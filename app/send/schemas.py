"""POST /v1/emails: the send request and its answer (DESIGN §3 "send request")."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.matching.normalize import normalize_address

MAX_RECIPIENTS = 100
"""To, Cc and Bcc together (providers allow more; a CRM message to more people is a
mailing, not an email)."""
MAX_SUBJECT_CHARS = 998  # RFC 5322's line limit
MAX_BODY_CHARS = 1024 * 1024
"""Per body (text, HTML). Bodies are stored whole on the row: the send job builds the
message from them."""
MAX_DOCUMENTS = 20
MAX_NAME_CHARS = 200

# RFC 5322 dot-atom local part, ASCII (quoted local parts and SMTPUTF8 are refused).
_LOCAL_PART = re.compile(
    r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class Recipient(BaseModel):
    """An address, with an optional display name. A plain string is accepted too."""

    model_config = ConfigDict(extra="forbid")

    address: str
    name: str | None = Field(default=None, max_length=MAX_NAME_CHARS)

    @model_validator(mode="after")
    def _check(self) -> Recipient:
        self.address = valid_address(self.address)
        if self.name is not None:
            if _CONTROL.search(self.name):
                raise ValueError("a recipient name may not contain control characters")
            self.name = self.name.strip() or None
        return self


def valid_address(value: str) -> str:
    """`local@domain` with the domain in lower-case ASCII (IDNA); ValueError otherwise.
    The error never repeats the value (it may be personal data)."""
    address = value.strip()
    if not address or len(address) > 254 or _CONTROL.search(address):
        raise ValueError("not a valid email address")
    local, at, domain = address.rpartition("@")
    if not at or len(local) > 64 or not _LOCAL_PART.match(local):
        raise ValueError("not a valid email address")
    normalized = normalize_address(f"{local}@{domain}")
    if normalized is None:
        raise ValueError("not a valid email address")
    return f"{local}@{normalized.rpartition('@')[2]}"


def _recipient(value: Any) -> Any:
    return {"address": value} if isinstance(value, str) else value


RecipientIn = Annotated[Recipient, BeforeValidator(_recipient)]
RecipientList = Annotated[list[RecipientIn], Field(max_length=MAX_RECIPIENTS)]


class SendRequest(BaseModel):
    """What the compose dialog sends. Recipients default from `contact_id` (its first
    address) when none are given; a partner has no address, so recipients are required
    with `partner_id`. `track_opens` / `track_clicks` can only turn tracking off: it is on
    when the org's `email_tracking_enabled` is. `check_phi` (default on) returns PHI/PII
    hints as `warnings`; they never block the send."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "account_id": "6f1c2d9e-6a43-4b59-9f0e-6c1f0a6b2d11",
                    "to": ["pat@example.net"],
                    "subject": "Your appointment",
                    "html": "<p>See you on Monday.</p>",
                    "contact_id": "0b8f3c1a-2f4e-4a7b-8f3d-2b9c5e7a1d44",
                    "document_ids": [],
                }
            ]
        },
    )

    account_id: UUID
    to: RecipientList = Field(default_factory=list)
    cc: RecipientList = Field(default_factory=list)
    bcc: RecipientList = Field(default_factory=list)
    subject: str = Field(default="", max_length=MAX_SUBJECT_CHARS)
    html: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    text: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    contact_id: UUID | None = None
    partner_id: UUID | None = None
    document_ids: list[UUID] = Field(default_factory=list, max_length=MAX_DOCUMENTS)
    reply_to_email_id: UUID | None = None
    track_opens: bool | None = None
    track_clicks: bool | None = None
    check_phi: bool = True

    @model_validator(mode="after")
    def _check(self) -> SendRequest:
        if _CONTROL.search(self.subject):
            raise ValueError("the subject may not contain line breaks or control characters")
        if not (self.html and self.html.strip()) and not (self.text and self.text.strip()):
            raise ValueError("an html or a text body is required")
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
        if len(set(self.document_ids)) != len(self.document_ids):
            raise ValueError("document_ids lists a document twice")
        return self

    @property
    def has_recipients(self) -> bool:
        return bool(self.to or self.cc or self.bcc)


class PhiWarning(BaseModel):
    """A likely identifier: its kind and where it is (never the value). For `html` the
    positions refer to the HTML's visible text (`app.send.phi.html_to_text`)."""

    type: str
    field: Literal["subject", "text", "html"]
    start: int
    end: int


class SendResponse(BaseModel):
    id: UUID
    status: Literal["queued", "sent", "failed", "bounced"]
    warnings: list[PhiWarning] = Field(default_factory=list)
