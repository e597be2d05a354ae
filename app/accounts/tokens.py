"""The TokenSource of a connected account: tokens live in the vault, refresh is server-side.

Refreshes happen ahead of expiry (TOKEN_REFRESH_MARGIN_SECONDS) and on a 401. The account
row is locked (SELECT ... FOR UPDATE) for the whole refresh, so two workers refreshing one
account serialise: the second finds the new token and does not refresh again. That matters
for Microsoft, which rotates the refresh token on every use: the new one is stored in the
same transaction that holds the lock, so it is never lost. `invalid_grant` marks the account
`reauth_required` and notifies its owner; nothing retries it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts import repository
from app.accounts.repository import INACTIVE
from app.accounts.vault import Vault
from app.db.rls import org_transaction
from app.platform.notifications import notify
from app.providers.base import OAuthClient
from app.providers.errors import AuthRevoked, ProviderError
from app.providers.failures import Outcome, mailbox_action

logger = logging.getLogger(__name__)


class AccountTokenSource:
    def __init__(
        self,
        engine: AsyncEngine,
        vault: Vault,
        oauth: OAuthClient,
        *,
        org_id: UUID,
        account_id: UUID,
        margin_seconds: float = 300,
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._oauth = oauth
        self.org_id = org_id
        self.account_id = account_id
        self._margin = timedelta(seconds=margin_seconds)
        self._token: str | None = None
        self._expires_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"AccountTokenSource(account_id={self.account_id})"

    def _fresh(self, expires_at: datetime | None) -> bool:
        return expires_at is not None and expires_at - datetime.now(UTC) > self._margin

    async def access_token(self) -> str:
        if self._token is not None and self._fresh(self._expires_at):
            return self._token
        async with org_transaction(self._engine, self.org_id) as session:
            row = await repository.get_account(session, self.account_id)
            if row is None or row.status in INACTIVE:
                raise AuthRevoked("account needs re-authorisation", provider=None)
            token = await self._vault.get(session, self.account_id, "access_token")
        if token is None or not self._fresh(row.token_expires_at):
            return await self._refresh(stale=token, forced=False)
        self._token, self._expires_at = token, row.token_expires_at
        return token

    async def refresh(self) -> str:
        """Forced (after a 401): refresh unless another caller already replaced the token."""
        stale = self._token
        if stale is None:
            async with org_transaction(self._engine, self.org_id) as session:
                stale = await self._vault.get(session, self.account_id, "access_token")
        return await self._refresh(stale=stale, forced=True)

    async def _refresh(self, *, stale: str | None, forced: bool) -> str:
        async with self._lock:
            revoked: ProviderError | None = None
            async with org_transaction(self._engine, self.org_id) as session:
                row = await repository.get_account(session, self.account_id, lock=True)
                if row is None or row.status in INACTIVE:
                    raise AuthRevoked("account needs re-authorisation")
                current = await self._vault.get(session, self.account_id, "access_token")
                # Another worker refreshed while we waited for the row lock (or since we
                # looked): use its token; refreshing again would only burn a rotation.
                # Unforced, a fresh expiry also says so: the account row and the token
                # were read by two statements, and a refresh committed between them gives
                # the new token with the old expiry.
                if current is not None and (
                    current != stale or (not forced and self._fresh(row.token_expires_at))
                ):
                    self._token, self._expires_at = current, row.token_expires_at
                    return current
                refresh_token = await self._vault.get(session, self.account_id, "refresh_token")
                try:
                    if not refresh_token:
                        raise AuthRevoked("no refresh token stored", provider=row.provider)
                    tokens = await self._oauth.refresh(refresh_token)
                except ProviderError as exc:
                    # From the token endpoint, a refused grant (invalid_grant) is final.
                    if mailbox_action(exc, grant_refused=True).outcome is not Outcome.REAUTH:
                        raise
                    revoked = exc
                    await repository.mark_reauth_required(
                        session,
                        self.account_id,
                        "The mailbox authorisation was revoked or expired; connect it again.",
                    )
                    await notify(
                        session,
                        org_id=self.org_id,
                        user_id=row.owner_user_id,
                        type="email_account_reauth_required",
                        data={"account_id": str(self.account_id), "provider": row.provider},
                    )
                else:
                    await self._vault.put(
                        session, self.account_id, "access_token", tokens.access_token
                    )
                    if tokens.refresh_token and tokens.refresh_token != refresh_token:
                        await self._vault.put(
                            session, self.account_id, "refresh_token", tokens.refresh_token
                        )
                    await repository.set_token_expiry(session, self.account_id, tokens.expires_at)
            if revoked is not None:
                logger.warning(
                    "account needs re-authorisation", extra={"account_id": str(self.account_id)}
                )
                raise revoked
            self.refreshes += 1
            self._token, self._expires_at = tokens.access_token, tokens.expires_at
            logger.info("access token refreshed", extra={"account_id": str(self.account_id)})
            return tokens.access_token
