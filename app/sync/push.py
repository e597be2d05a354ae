"""Push channels: registering a mailbox's, renewing it before it expires, re-arming it when
it went silent, and checking that a notice came through ours.

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
from app.providers.errors import NotFound, ProviderError
from app.sync import repository
from app.sync.repository import PushRecord

logger = logging.getLogger(__name__)

# The Graph notification URL is the contract's path (Gmail's comes from the Pub/Sub
# subscription configured on the topic).
CALLBACK_PATH = "/v1/webhooks/outlook"
RENEW_MARGIN = timedelta(days=1)
# Gmail delivers at most one notification per second per user (extra ones are dropped):
# one notification may stand for the mail of the second after it. Not silence.
NOTIFICATION_BURST_SECONDS = 1.0


def push_client_state(ctx: ServiceContext, account_id: UUID) -> str:
    """The secret a push channel echoes back (Graph's clientState): an HMAC of the account
    id, so a notification is checked without storing a secret per account."""
    key = ctx.settings.outlook_client_state_secret.get_secret_value().encode()
    return hmac.new(key, str(account_id).encode(), hashlib.sha256).hexdigest()[:64]


def client_state_matches(ctx: ServiceContext, account_id: UUID, notice: PushNotice) -> bool:
    return hmac.compare_digest(
        (notice.client_state or "").encode(), push_client_state(ctx, account_id).encode()
    )


def renewal_due(expires_at: datetime | None, registered_at: datetime | None) -> bool:
    """Whether a channel should be renewed now: within a day of its expiry, or within half
    the lifetime the provider granted when that is shorter (Graph's mail subscription
    lifetime is not a constant; the expiry is the one the provider returned)."""
    if expires_at is None:
        return True
    margin = RENEW_MARGIN
    if registered_at is not None and expires_at > registered_at:
        margin = min(margin, (expires_at - registered_at) / 2)
    return expires_at - datetime.now(UTC) < margin


async def register_push(
    ctx: ServiceContext,
    provider: MailProvider,
    account_id: UUID,
    current: PushRecord | None,
    *,
    force: bool = False,
    replace: bool = False,
) -> PushChannel | None:
    """Register (or renew) push for the mailbox when its channel is due for renewal (or
    `force`); the channel to store, or None. A failure leaves polling as the fallback.

    A channel the account holds is renewed in place (Graph: PATCH the subscription's
    expiry; Gmail: watch again), so renewals never pile up subscriptions at the provider
    (Graph allows 1,000 per mailbox); one the provider no longer knows, or `replace`, is
    registered anew."""
    if (
        not force
        and current is not None
        and current.channel_id is not None
        and not renewal_due(current.expires_at, current.registered_at)
    ):
        return None
    callback = f"{ctx.settings.public_base_url}{CALLBACK_PATH}"
    held = (
        None
        if replace or current is None or current.channel_id is None or current.expires_at is None
        else PushChannel(current.channel_id, current.expires_at, current.resource)
    )
    try:
        if held is not None:
            try:
                return await provider.renew(held)
            except NotFound:
                pass  # gone at the provider: register anew
        return await provider.watch(callback, push_client_state(ctx, account_id))
    except ProviderError as exc:
        logger.warning(
            "push registration failed",
            extra={"account_id": str(account_id), "error_type": type(exc).__name__},
        )
        return None


async def rearm_push(
    ctx: ServiceContext, provider: MailProvider, account_id: UUID, current: PushRecord
) -> PushChannel | None:
    """Register a silent mailbox's push again: the old channel is stopped first (best
    effort: it may be gone already), so re-arming never piles up subscriptions at the
    provider (Graph allows 1,000 per mailbox); the new channel, or None."""
    if current.channel_id is not None and current.expires_at is not None:
        old = PushChannel(current.channel_id, current.expires_at, current.resource)
        try:
            await provider.stop(old)
        except ProviderError as exc:
            logger.info(
                "stopping a silent push channel failed",
                extra={"account_id": str(account_id), "error_type": type(exc).__name__},
            )
    return await register_push(ctx, provider, account_id, current, force=True, replace=True)


async def store_push_channel(session: AsyncSession, account_id: UUID, channel: PushChannel) -> None:
    await repository.set_push_channel(
        session, account_id, channel.channel_id, channel.expires_at, channel.resource_cursor
    )


async def push_went_silent(
    ctx: ServiceContext, session: AsyncSession, account_id: UUID, stored_since: datetime
) -> bool:
    """Whether the mailbox holds mail its push should have announced and did not (see
    `repository.unannounced_mail`; the periods come from the settings)."""
    return await repository.unannounced_mail(
        session,
        account_id,
        stored_since=stored_since,
        grace_seconds=ctx.settings.push_grace_seconds,
        burst_seconds=NOTIFICATION_BURST_SECONDS,
        quiet_seconds=ctx.settings.push_quiet_period_seconds,
    )
