"""What the audit endpoints answer (DESIGN §3, §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "0b5e3c1e-7f36-4f0e-9a51-2f7c3f1d9a10",
                            "user_id": "6d1f4a0e-2b7c-4c55-8f0a-1e2d3c4b5a69",
                            "action": "download",
                            "email_ids": ["9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"],
                            "attachment_id": "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b",
                            "occurred_at": "2026-12-06T14:03:11.482913Z",
                            "request_id": "4f1c0d2a9b8e4e7f8a6b5c4d3e2f1a0b",
                            "sealed": True,
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )
