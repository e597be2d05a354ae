from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.responses import RedirectResponse

from app.accounts import service
from app.accounts.schemas import Account, AccountList, AccountPatch, AuthorizationUrl
from app.auth.deps import CallerDep
from app.context import ServiceContext
from app.db.rls import org_transaction
from app.errors import Unauthorized
from app.platform.documents import document_storage
from app.retention.jobs import remove_files_of_org
from app.security.ratelimit import limited

ProviderPath = Literal["gmail", "outlook"]

oauth_router = APIRouter(prefix="/v1/oauth", tags=["oauth"])
accounts_router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


@oauth_router.get(
    "/{provider}/authorize",
    summary="The provider's consent URL for connecting a mailbox",
    responses={400: {"description": "return_to is not an allowed frontend origin"}},
)
async def authorize(
    request: Request,
    provider: ProviderPath,
    caller: CallerDep,
    return_to: Annotated[str, Query(max_length=2048, description="frontend URL to come back to")],
    login_hint: Annotated[str | None, Query(max_length=320)] = None,
) -> AuthorizationUrl:
    url = await service.start_authorization(_ctx(request), caller, provider, return_to, login_hint)
    return AuthorizationUrl(authorization_url=url)


@oauth_router.get(
    "/{provider}/callback",
    summary="Where the provider sends the browser back; redirects to the frontend",
    response_class=RedirectResponse,
    status_code=302,
    responses={
        302: {"description": "to return_to with account_id, or with error"},
        400: {"description": "invalid, used or expired state"},
        429: {"description": "too many requests from this address"},
    },
    dependencies=[limited("oauth-callback")],
)
async def callback(
    request: Request,
    provider: ProviderPath,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=1024)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> RedirectResponse:
    bearer_user = None
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        try:
            bearer = await request.app.state.token_verifier.verify(authorization[7:])
            bearer_user = bearer.user_id
        except Unauthorized:
            bearer_user = None
    ctx = _ctx(request)
    claims = service.read_callback_state(ctx, provider, state)
    # Two transactions, both in the org the verified state names (this endpoint is their
    # edge): the state is consumed and committed first, so whatever happens next it never
    # works again; the account is stored after the provider calls, which hold none open.
    async with org_transaction(ctx.engine, claims.org_id) as session:
        consumed = await service.consume_callback_state(session, provider, claims)
    granted = await service.exchange_callback_code(
        ctx, provider, consumed, code=code, error=error, bearer_user_id=bearer_user
    )
    if isinstance(granted, str):
        target = granted
    else:
        async with org_transaction(ctx.engine, claims.org_id, consumed.pending.user_id) as session:
            target = await service.store_granted_mailbox(ctx, session, provider, consumed, granted)
    return RedirectResponse(
        target,
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@accounts_router.get("", summary="Connected mailboxes visible to the caller")
async def list_accounts(caller: CallerDep) -> AccountList:
    return AccountList(items=await service.list_accounts(caller))


@accounts_router.get(
    "/{account_id}",
    summary="One connected mailbox",
    responses={404: {"description": "No such account"}},
)
async def get_account(account_id: UUID, caller: CallerDep) -> Account:
    return await service.get_account(caller, account_id)


@accounts_router.patch(
    "/{account_id}",
    summary="Change who sees the mailbox (owner or admin)",
    responses={403: {"description": "Not owner or admin"}, 404: {"description": "No such account"}},
)
async def patch_account(account_id: UUID, patch: AccountPatch, caller: CallerDep) -> Account:
    return await service.set_visibility(caller, account_id, patch.visibility)


@accounts_router.delete(
    "/{account_id}",
    status_code=204,
    summary="Disconnect: revoke, stop push, delete secrets; keep or purge the emails",
    responses={403: {"description": "Not owner or admin"}, 404: {"description": "No such account"}},
)
async def delete_account(
    request: Request,
    account_id: UUID,
    caller: CallerDep,
    purge: Annotated[bool, Query(description="true: delete the account's emails too")],
    background: BackgroundTasks,
) -> Response:
    ctx = _ctx(request)
    await service.disconnect_account(ctx, caller, account_id, purge=purge)
    if purge:
        # after the response, hence after the request's transaction committed: a rolled-back
        # purge never loses a document's bytes; what this misses, the periodic job removes
        background.add_task(
            remove_files_of_org, ctx.engine, document_storage(ctx.settings), caller.org_id
        )
    return Response(status_code=204)
