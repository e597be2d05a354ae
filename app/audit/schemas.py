"""What the audit endpoints answer (DESIGN §3, §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel

AuditAction = Literal["read", "download", "list"]


class AuditEntryOut(BaseModel):
    """One read of email content: who, what, when, and in which request."""

    id: UUID
    user_id: UUID
    action: AuditAction
    email_ids: list[UUID]
    """The email read or downloaded, or the emails a timeline page showed."""
    attachment_id: UUID | None = None
    occurred_at: datetime
    request_id: str | None = None
    sealed: bool
    """Sealed into the hash chain (`ce-email audit verify` checks it)."""


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = None
