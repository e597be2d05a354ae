"""Connecting mailboxes (OAuth code + PKCE) and managing connected accounts."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository
from app.accounts.oauth_state import (
    InvalidReturnTo,
    InvalidState,
    StateClaims,
    sign_state,
    validate_return_to,
    verify_state,
    with_query,
)
from app.accounts.repository import ConnectedAccount, PendingAuthorization
from app.accounts.schemas import VISIBILITY_ORDER, Account, Visibility
from app.auth.deps import Caller
from app.auth.repository import membership_role
from app.context import ServiceContext
from app.db.rls import acting_for_the_service
from app.errors import BadRequest, Conflict, Forbidden, NotFound
from app.providers.base import MailboxProfile, PushChannel, TokenSet
from app.providers.errors import ProviderError
from app.providers.oauth import StaticTokenSource
from app.retention.service import purge_mailbox

logger = logging.getLogger(__name__)

# Provider `error=` values passed on to the frontend as they are; anything else is generic.
KNOWN_PROVIDER_ERRORS = {
    "access_denied",
    "consent_required",
    "interaction_required",
    "login_required",
    "invalid_scope",
    "temporarily_unavailable",
    "server_error",
}


class CallbackRefused(BadRequest):
    """A callback we cannot trust enough to redirect anywhere (no valid state)."""

    problem_type = "/problems/oauth-state"
    title = "Invalid OAuth state"


async def start_authorization(
    ctx: ServiceContext,
    caller: Caller,
    provider: str,
    return_to: str,
    login_hint: str | None = None,
) -> str:
    settings = ctx.settings
    try:
        validate_return_to(return_to, settings.allowed_frontend_origins)
    except InvalidReturnTo as exc:
        raise BadRequest(str(exc), field="return_to") from None
    verifier = secrets.token_urlsafe(64)
    expires = datetime.now(UTC) + timedelta(seconds=settings.oauth_state_ttl_seconds)
    state_id = await repository.insert_state(
        caller.session,
        org_id=caller.org_id,
        user_id=caller.user_id,
        provider=provider,
        code_verifier=verifier,
        return_to=return_to,
        expires_at=expires,
    )
    state = sign_state(
        settings.oauth_state_secret.get_secret_value(),
        StateClaims(state_id, caller.org_id, int(expires.timestamp())),
    )
    return ctx.oauth_client(provider).authorization_url(state, verifier, login_hint)


def read_callback_state(ctx: ServiceContext, provider: str, state: str | None) -> StateClaims:
    """The callback's signed state, checked before anything else is trusted."""
    try:
        return verify_state(ctx.settings.oauth_state_secret.get_secret_value(), state or "")
    except InvalidState as exc:
        logger.warning("oauth callback refused", extra={"kind": str(exc), "provider": provider})
        raise CallbackRefused("The sign-in link is invalid or has expired; start again.") from None


@dataclass(frozen=True)
class ConsumedState:
    claims: StateClaims
    pending: PendingAuthorization
    is_member: bool


async def consume_callback_state(
    session: AsyncSession, provider: str, claims: StateClaims
) -> ConsumedState:
    """Marks the state used in the caller's transaction (in the org the state names), so
    once that commits the state never works again, whatever happens next."""
    pending = await repository.consume_state(session, claims.state_id, provider)
    if pending is None:
        logger.warning(
            "oauth callback refused",
            extra={"kind": "unknown, used or expired", "provider": provider},
        )
        raise CallbackRefused("The sign-in link was already used or has expired; start again.")
    role = await membership_role(session, pending.user_id)
    return ConsumedState(claims, pending, is_member=role is not None)


@dataclass(frozen=True)
class GrantedMailbox:
    """Tokens and profile of a mailbox whose owner consented; not stored yet."""

    tokens: TokenSet
    profile: MailboxProfile


async def exchange_callback_code(
    ctx: ServiceContext,
    provider: str,
    consumed: ConsumedState,
    *,
    code: str | None,
    error: str | None,
    bearer_user_id: UUID | None,
) -> GrantedMailbox | str:
    """The provider calls of a callback (no transaction is open meanwhile). Returns the
    granted mailbox, or where to send the browser with `error=` when the flow failed."""
    pending = consumed.pending

    def fail(reason: str) -> str:
        logger.info(
            "oauth callback failed",
            extra={
                "error_code": reason,
                "provider": provider,
                "org_id": str(consumed.claims.org_id),
            },
        )
        return with_query(pending.return_to, error=reason, provider=provider)

    if not consumed.is_member:
        return fail("not_a_member")
    if bearer_user_id is not None and bearer_user_id != pending.user_id:
        return fail("wrong_user")
    if error:
        return fail(error if error in KNOWN_PROVIDER_ERRORS else "provider_error")
    if not code:
        return fail("missing_code")

    oauth = ctx.oauth_client(provider)
    try:
        tokens = await oauth.exchange_code(code, pending.code_verifier)
    except ProviderError as exc:
        logger.warning(
            "oauth code exchange failed",
            extra={"provider": provider, "error_type": type(exc).__name__},
        )
        return fail("exchange_failed")
    if not tokens.refresh_token:
        return fail("no_refresh_token")
    try:
        profile = await ctx.provider(provider, StaticTokenSource(tokens.access_token)).get_profile()
    except ProviderError as exc:
        logger.warning(
            "mailbox profile failed", extra={"provider": provider, "error_type": type(exc).__name__}
        )
        return fail("profile_failed")
    return GrantedMailbox(tokens, profile)


async def store_granted_mailbox(
    ctx: ServiceContext,
    session: AsyncSession,
    provider: str,
    consumed: ConsumedState,
    granted: GrantedMailbox,
) -> str:
    """Stores the account and its secrets in the caller's transaction (in the org, as the
    user that started the flow); returns where to send the browser."""
    org_id, owner = consumed.claims.org_id, consumed.pending.user_id
    tokens, profile = granted.tokens, granted.profile
    refresh_token = tokens.refresh_token
    if refresh_token is None:  # exchange_callback_code refuses a grant without one
        raise ValueError("a granted mailbox has a refresh token")
    account_id, created = await repository.upsert_connected_account(
        session,
        org_id=org_id,
        owner_user_id=owner,
        provider=provider,
        email_address=profile.email_address.strip().lower(),
        display_name=profile.display_name,
        token_expires_at=tokens.expires_at,
        scopes=tokens.scope,
    )
    access_id = await ctx.vault.put(session, account_id, "access_token", tokens.access_token)
    refresh_id = await ctx.vault.put(session, account_id, "refresh_token", refresh_token)
    await repository.set_secret_ids(session, account_id, access_id, refresh_id)
    await after_connect(ctx, session, org_id, account_id)
    logger.info(
        "mailbox connected",
        extra={
            "account_id": str(account_id),
            "provider": provider,
            "org_id": str(org_id),
            "status": "created" if created else "reconnected",
        },
    )
    return with_query(consumed.pending.return_to, account_id=str(account_id), provider=provider)


async def after_connect(
    ctx: ServiceContext, session: AsyncSession, org_id: UUID, account_id: UUID
) -> None:
    """Hook for what follows a connect in the same transaction (the first sync is queued
    here once the sync engine exists)."""
    for hook in ctx.connect_hooks:
        await hook(session, org_id, account_id)


def _visible(caller: Caller, account: ConnectedAccount) -> bool:
    """Admins see every account and its sync status (not its mail); members see the
    mailboxes that are not private."""
    return (
        caller.is_admin
        or account.visibility != "private"
        or account.owner_user_id == caller.user_id
    )


async def list_accounts(caller: Caller) -> list[Account]:
    accounts = await repository.list_accounts(caller.session)
    return [Account.from_account(a) for a in accounts if _visible(caller, a)]


async def _visible_account(
    caller: Caller, account_id: UUID, lock: bool = False
) -> ConnectedAccount:
    account = await repository.get_account(caller.session, account_id, lock=lock)
    if account is None or not _visible(caller, account):
        raise NotFound("No such account")
    return account


async def get_account(caller: Caller, account_id: UUID) -> Account:
    return Account.from_account(await _visible_account(caller, account_id))


async def account_to_act_on(caller: Caller, account_id: UUID, doing: str) -> Account:
    """The account, for its owner or an org admin to order work on (a sync, a
    reconciliation): 404 unknown, 403 someone else's, 409 when it must be reconnected."""
    account = await _visible_account(caller, account_id)
    _require_owner_or_admin(caller, account)
    if account.status in repository.INACTIVE:
        raise Conflict(f"The mailbox must be connected again before it can {doing}")
    return Account.from_account(account)


def _require_owner_or_admin(caller: Caller, account: ConnectedAccount) -> None:
    if not (caller.is_admin or account.owner_user_id == caller.user_id):
        raise Forbidden("Only the account's owner or an org admin may do this")


def _widens(current: str, new: str) -> bool:
    return VISIBILITY_ORDER.index(new) < VISIBILITY_ORDER.index(current)


async def set_visibility(caller: Caller, account_id: UUID, visibility: Visibility) -> Account:
    """The owner sets any level; an admin may only narrow it (widening would show the
    owner's mail to more people than the owner chose)."""
    account = await _visible_account(caller, account_id, lock=True)
    _require_owner_or_admin(caller, account)
    if account.owner_user_id != caller.user_id and _widens(account.visibility, visibility):
        raise Forbidden("Only the mailbox's owner may widen its visibility")
    await repository.set_visibility(caller.session, account_id, visibility)
    updated = await repository.get_account(caller.session, account_id)
    if updated is None:  # locked above, in this transaction
        raise NotFound("No such account")
    return Account.from_account(updated)


async def disconnect_account(
    ctx: ServiceContext, caller: Caller, account_id: UUID, *, purge: bool
) -> None:
    """Revoke at the provider, stop push, delete the secrets; then keep the account and its
    emails (status disconnected) or purge both, with a `disconnect` purge receipt. Provider
    failures do not stop a disconnect: our copy of the tokens is deleted either way. The
    purged documents' files are queued for removal in this transaction (sql/190)."""
    account = await _visible_account(caller, account_id, lock=True)
    _require_owner_or_admin(caller, account)
    provider_name = account.provider
    refresh_token = await ctx.vault.get(caller.session, account_id, "refresh_token")
    access_token = await ctx.vault.get(caller.session, account_id, "access_token")
    if access_token and account.push_channel_id:
        try:
            provider = ctx.provider(provider_name, StaticTokenSource(access_token))
            await provider.stop(
                PushChannel(
                    channel_id=account.push_channel_id,
                    expires_at=account.push_expires_at or datetime.now(UTC),
                    resource_cursor=account.push_resource,
                )
            )
        except ProviderError as exc:
            logger.warning(
                "push stop failed on disconnect",
                extra={"account_id": str(account_id), "error_type": type(exc).__name__},
            )
    if refresh_token:
        try:
            await ctx.oauth_client(provider_name).revoke(refresh_token)
        except ProviderError as exc:
            logger.warning(
                "revoke failed on disconnect",
                extra={"account_id": str(account_id), "error_type": type(exc).__name__},
            )
    await ctx.vault.delete_all(caller.session, account_id)
    if purge:
        # the caller is the owner or an admin; the purge must see every row of the mailbox
        async with acting_for_the_service(caller.session, caller.org_id, caller.user_id):
            await purge_mailbox(caller.session, caller.org_id, account_id)
        await repository.delete_account(caller.session, account_id)
    else:
        await repository.mark_disconnected(caller.session, account_id)
    logger.info(
        "mailbox disconnected",
        extra={"account_id": str(account_id), "status": "purged" if purge else "kept"},
    )
