"""What GET /v1/purges answers (DESIGN §3, §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class PurgeCountsOut(BaseModel):
    """Rows deleted per table; `documents` are PF-11 documents that sync created, their
    files deleted from the document store with them."""

    emails: int
    links: int
    activities: int
    participants: int
    attachments: int
    tracking_events: int
    tracked_links: int
    documents: int


class PurgeReceipt(BaseModel):
    id: UUID
    scope: Literal["retention", "disconnect"]
    account_id: UUID | None
    """The mailbox purged (a disconnected one no longer exists)."""
    counts: PurgeCountsOut
    cutoff: datetime | None
    """Retention: mail that occurred before this time was deleted. Disconnect: null (all)."""
    created_at: datetime


class PurgePage(BaseModel):
    items: list[PurgeReceipt]
    next_cursor: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "5d0c9b8a-7f6e-4d5c-8b4a-3f2e1d0c9b8a",
                            "scope": "retention",
                            "account_id": "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
                            "counts": {
                                "emails": 120,
                                "links": 95,
                                "activities": 95,
                                "participants": 410,
                                "attachments": 12,
                                "tracking_events": 3,
                                "tracked_links": 0,
                                "documents": 12,
                            },
                            "cutoff": "2026-11-06T03:41:00Z",
                            "created_at": "2026-12-06T03:41:02.118Z",
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )
