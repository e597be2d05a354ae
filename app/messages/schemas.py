from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Direction = Literal["inbound", "outbound"]
EmailStatus = Literal["queued", "sent", "failed", "bounced", "received"]


class Address(BaseModel):
    name: str | None = None
    address: str


class EmailListItem(BaseModel):
    """One email in a timeline (DESIGN §3)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: UUID
    account_id: UUID
    direction: Direction
    status: EmailStatus
    subject: str | None = None
    snippet: str | None = None
    from_: Address | None = Field(default=None, alias="from")
    to: list[Address] = Field(default_factory=list)
    cc: list[Address] = Field(default_factory=list)
    sent_at: datetime | None = None
    received_at: datetime | None = None
    occurred_at: datetime
    """The timeline's order: sent time for outbound, received time for inbound."""
    thread_id: str | None = None
    contact_ids: list[UUID] = Field(default_factory=list)
    partner_ids: list[UUID] = Field(default_factory=list)
    has_attachments: bool = False


class EmailPage(BaseModel):
    items: list[EmailListItem]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )


class ParticipantOut(BaseModel):
    role: Literal["from", "to", "cc", "bcc"]
    name: str | None = None
    address: str
    contact_id: UUID | None = None
    partner_id: UUID | None = None


class AttachmentOut(BaseModel):
    id: UUID
    filename: str | None = None
    content_type: str
    size: int
    is_inline: bool
    content_id: str | None = None
    document_id: UUID | None = Field(
        default=None, description="PF-11 document; null when the content is not stored"
    )


class Tracking(BaseModel):
    opens: int = 0
    clicks: int = 0
    bounced: bool = False
    bounced_at: datetime | None = None
    first_opened_at: datetime | None = None
    last_opened_at: datetime | None = None


class EmailDetail(EmailListItem):
    bcc: list[Address] = Field(default_factory=list)
    internet_message_id: str | None = None
    in_reply_to: str | None = None
    text_body: str | None = None
    html_body: str | None = Field(default=None, description="Sanitised HTML")
    body_truncated: bool = False
    participants: list[ParticipantOut] = Field(default_factory=list)
    attachments: list[AttachmentOut] = Field(default_factory=list)
    tracking: Tracking = Field(default_factory=Tracking)


class ThreadShare(BaseModel):
    """A thread shared at `org` level: its messages, later ones too, show to the org."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"level": "org"}]})

    level: Literal["org"] = "org"
