"""Module settings (DESIGN.md §4): what GET returns and what PATCH accepts."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


def _between(low: int, high: int) -> AfterValidator:
    """A range check with our own message (pydantic's ge/le would word it otherwise)."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


def _range_schema(low: int, high: int) -> Any:
    return Field(json_schema_extra={"minimum": low, "maximum": high})


def _hostname(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    if not _HOSTNAME.match(host):
        raise ValueError("must be a host name such as track.example.org (no scheme, path or port)")
    return host


HistoryDays = Annotated[StrictInt, _between(7, 90), _range_schema(7, 90)]
BodyLimitKb = Annotated[StrictInt, _between(100, 2000), _range_schema(100, 2000)]
IntervalMinutes = Annotated[StrictInt, _between(5, 60), _range_schema(5, 60)]
# Six years (HIPAA's record keeping, 45 CFR 164.316) to ten.
# Null keeps mail; never shorter than the sync window (checked with both values, service).
RetentionDays = Annotated[StrictInt, _between(30, 3650), _range_schema(30, 3650)]
AuditRetentionDays = Annotated[StrictInt, _between(2190, 3650), _range_schema(2190, 3650)]
ReconcileHours = Annotated[StrictInt, _between(1, 168), _range_schema(1, 168)]
DefaultVisibility = Literal["org", "subject", "metadata", "private"]
"""The level a newly connected mailbox starts at (the accounts' `visibility`)."""
TrackingDomain = Annotated[str, AfterValidator(_hostname), Field(max_length=253)]


class ModuleSettings(BaseModel):
    """Effective settings of an org: stored values, defaults where unset."""

    email_sync_history_days: int = Field(30, ge=7, le=90)
    email_body_size_limit_kb: int = Field(500, ge=100, le=2000)
    email_sync_interval_minutes: int = Field(15, ge=5, le=60)
    email_tracking_enabled: bool = True
    email_custom_tracking_domain: str | None = None
    email_audit_retention_days: int = Field(2190, ge=2190, le=3650)
    """Access-audit rows are kept this long (sealed blocks, oldest first)."""
    email_reconcile_interval_hours: int = Field(24, ge=1, le=168)
    email_retention_days: int | None = Field(None, ge=30, le=3650)
    """Mail older than this many days is purged daily (null: kept)."""
    email_default_visibility: DefaultVisibility = "metadata"
    """New mailboxes start here: the minimum necessary until the owner widens it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email_sync_history_days": 30,
                    "email_body_size_limit_kb": 500,
                    "email_sync_interval_minutes": 15,
                    "email_tracking_enabled": True,
                    "email_custom_tracking_domain": None,
                    "email_audit_retention_days": 2190,
                    "email_reconcile_interval_hours": 24,
                    "email_retention_days": None,
                    "email_default_visibility": "metadata",
                }
            ]
        }
    )


class ModuleSettingsPatch(BaseModel):
    """Fields left out stay as they are; an explicit null resets a field to its default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email_sync_history_days": 60}]},
    )

    email_sync_history_days: HistoryDays | None = None
    email_body_size_limit_kb: BodyLimitKb | None = None
    email_sync_interval_minutes: IntervalMinutes | None = None
    email_tracking_enabled: StrictBool | None = None
    email_custom_tracking_domain: TrackingDomain | None = None
    email_audit_retention_days: AuditRetentionDays | None = None
    email_reconcile_interval_hours: ReconcileHours | None = None
    email_retention_days: RetentionDays | None = None
    email_default_visibility: DefaultVisibility | None = None
