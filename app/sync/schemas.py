from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class SyncStatus(BaseModel):
    """What a progress bar needs."""

    state: Literal["idle", "queued", "running", "failed"]
    phase: str | None = Field(None, examples=["backfill:inbox"])
    processed: int = Field(examples=[1200])
    estimate: int | None = Field(None, examples=[5000])
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_synced_at: datetime | None = None
    last_error: str | None = None


class SyncRequested(BaseModel):
    state: Literal["queued"] = "queued"
    coalesced: bool = Field(description="true when a sync was already waiting")
