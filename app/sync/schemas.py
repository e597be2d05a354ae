from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class PushStatus(BaseModel):
    """The health of the mailbox's push channel (Gmail watch, Graph subscription)."""

    state: Literal["active", "silent", "expired", "off"] = Field(
        description="off: none registered; expired: past its expiry; silent: mail arrived "
        "that push never announced (re-armed, polled at the minimum interval until a "
        "notification arrives); active otherwise"
    )
    expires_at: datetime | None = None
    last_notification_at: datetime | None = None
    rearmed: int = Field(0, description="times re-registered because push was silent")
    poll_interval_seconds: int = Field(
        examples=[900], description="how often the mailbox is polled now"
    )


class Completeness(BaseModel):
    """The last reconciliation: the provider's ids in the sync window against ours. Every
    field is null until the first one; `verified_at` is when its listing began."""

    verified_at: datetime | None = None
    provider_count: int | None = Field(None, examples=[1530])
    stored_count: int | None = Field(None, examples=[1530])
    missing_fetched: int | None = Field(None, examples=[3])
    stale_removed: int | None = Field(None, examples=[1])


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
    push: PushStatus | None = None
    completeness: Completeness = Field(default_factory=Completeness)


class SyncRequested(BaseModel):
    state: Literal["queued"] = "queued"
    coalesced: bool = Field(description="true when a sync was already waiting")


class ReconcileRequested(BaseModel):
    state: Literal["queued"] = "queued"
    coalesced: bool = Field(description="true when a reconciliation was already waiting")
