"""Push channels: registering a mailbox's, and checking that a notice came through ours.

Parsing a notification is the provider's (`app.providers.registry.push_format`); what a
verified notice queues is `app.sync.service.accept_notice`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.context import ServiceContext
from app.providers.base import MailProvider, PushChannel, PushNotice
from app.providers.errors import ProviderError
from app.sync import repository

logger = logging.getLogger(__name__)

# The Graph notification URL is the contract's path (Gmail's comes from the Pub/Sub
# subscription configured on the topic).
CALLBACK_PATH = "/v1/webhooks/outlook"


def push_client_state(ctx: ServiceContext, account_id: UUID) -> str:
    """The secret a push channel echoes back (Graph's clientState): an HMAC of the account
    id, so a notification is checked without storing a secret per account."""
    key = ctx.settings.outlook_client_state_secret.get_secret_value().encode()
    return hmac.new(key, str(account_id).encode(), hashlib.sha256).hexdigest()[:64]


def client_state_matches(ctx: ServiceContext, account_id: UUID, notice: PushNotice) -> bool:
    return hmac.compare_digest(
        (notice.client_state or "").encode(), push_client_state(ctx, account_id).encode()
    )


async def register_push(
    ctx: ServiceContext,
    provider: MailProvider,
    account_id: UUID,
    expires_at: datetime | None,
    *,
    force: bool = False,
) -> PushChannel | None:
    """Register (or renew) push for the mailbox when it expires within a day (or `force`);
    the new channel to store, or None. A failure leaves polling as the fallback."""
    if not force and expires_at and expires_at > datetime.now(UTC) + timedelta(days=1):
        return None
    callback = f"{ctx.settings.public_base_url}{CALLBACK_PATH}"
    try:
        return await provider.watch(callback, push_client_state(ctx, account_id))
    except ProviderError as exc:
        logger.warning(
            "push registration failed",
            extra={"account_id": str(account_id), "error_type": type(exc).__name__},
        )
        return None


async def store_push_channel(session: AsyncSession, account_id: UUID, channel: PushChannel) -> None:
    await repository.set_push_channel(
        session, account_id, channel.channel_id, channel.expires_at, channel.resource_cursor
    )
