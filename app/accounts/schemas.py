from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from app.accounts.repository import ConnectedAccount

Provider = Literal["gmail", "outlook"]
Visibility = Literal["org", "subject", "metadata", "private"]
"""Widest first: `org` shows everything to the org, `subject` no bodies or attachments,
`metadata` participants, times, direction and links only, `private` nothing."""
VISIBILITY_ORDER: tuple[str, ...] = ("org", "subject", "metadata", "private")


class AuthorizationUrl(BaseModel):
    authorization_url: str = Field(
        examples=["https://accounts.google.com/o/oauth2/v2/auth?client_id=...&state=..."]
    )


class Account(BaseModel):
    """A connected mailbox. Never carries a token."""

    id: UUID
    provider: Provider
    email_address: str
    display_name: str | None = None
    status: Literal["active", "syncing", "reauth_required", "error", "disconnected"]
    status_reason: str | None = None
    visibility: Visibility
    owner_user_id: UUID
    last_synced_at: datetime | None = None
    last_error: str | None = None
    push_expires_at: datetime | None = None
    created_at: datetime

    @classmethod
    def from_account(cls, account: ConnectedAccount) -> Account:
        return cls.model_validate(account, from_attributes=True)


class AccountList(BaseModel):
    items: list[Account]


class AccountPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"visibility": "private"}]}
    )

    visibility: Visibility
