"""Sync endpoints (queue a sync, its progress) and the push webhooks.

A webhook verifies the notification and queues work, nothing more: the provider's push
format reads the body (`app.providers.registry.push_format`), `app.sync.service` queues.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse

from app.accounts import service as accounts_service
from app.auth.deps import CallerDep
from app.context import ServiceContext
from app.db.rls import org_transaction, system_transaction
from app.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from app.providers.base import InvalidPush, PushNotice
from app.providers.registry import push_format
from app.reconcile import repository as reconcile_repository
from app.security.ratelimit import limited
from app.sync import repository
from app.sync.push import client_state_matches
from app.sync.schemas import Completeness, PushStatus, SyncRequested, SyncStatus
from app.sync.service import PUSH_PRIORITY, accept_notice, enqueue_sync

logger = logging.getLogger(__name__)

sync_router = APIRouter(prefix="/v1/accounts", tags=["sync"])
webhooks_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

MAX_WEBHOOK_BYTES = 256 * 1024


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


@sync_router.post(
    "/{account_id}/sync",
    status_code=202,
    summary="Queue a sync now (coalesces with one already waiting)",
    responses={
        404: {"description": "No such account"},
        409: {"description": "The mailbox must be connected again"},
    },
)
async def request_sync(account_id: UUID, caller: CallerDep) -> SyncRequested:
    await accounts_service.account_to_act_on(caller, account_id, "sync")
    job = await enqueue_sync(
        caller.session, caller.org_id, account_id, reason="manual", priority=PUSH_PRIORITY
    )
    return SyncRequested(coalesced=job is None)


@sync_router.get(
    "/{account_id}/sync",
    summary="Sync progress and outcome of the account",
    responses={404: {"description": "No such account"}},
)
async def sync_status(account_id: UUID, caller: CallerDep, request: Request) -> SyncStatus:
    await accounts_service.get_account(caller, account_id)  # visibility and 404
    progress = await repository.sync_progress(caller.session, account_id)
    if progress is None:
        raise NotFound("No such account")
    outcome = await reconcile_repository.last_outcome(caller.session, account_id)
    completeness = Completeness.model_validate(outcome._asdict()) if outcome else Completeness()
    status = SyncStatus.model_validate({**progress._asdict(), "completeness": completeness})
    push = await repository.push_status(
        caller.session, account_id, _ctx(request).settings.poll_min_interval_seconds
    )
    if push is not None:
        status.push = PushStatus.model_validate(push._asdict())
    return status


async def _notices(request: Request, provider: str) -> list[PushNotice]:
    raw = await request.body()
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge("Notification too large")
    try:
        return push_format(provider).parse_push(raw)
    except InvalidPush as exc:
        raise BadRequest(str(exc)) from None


@webhooks_router.post(
    "/gmail",
    status_code=204,
    summary="Gmail Pub/Sub push",
    responses={
        400: {"description": "Not a Pub/Sub push envelope"},
        403: {"description": "Push secret missing or wrong"},
        413: {"description": "Body too large"},
        429: {"description": "Too many requests from this address"},
    },
    dependencies=[limited("webhook-gmail")],
)
async def gmail_push(
    request: Request, token: Annotated[str | None, Query(max_length=256)] = None
) -> Response:
    ctx = _ctx(request)
    expected = ctx.settings.gmail_push_secret.get_secret_value()
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("Push not authenticated")
    notices = await _notices(request, "gmail")
    accounts = 0
    for notice in notices:
        if notice.address is None:
            continue
        async with system_transaction(ctx.engine) as session:
            targets = await repository.accounts_by_address(session, "gmail", notice.address)
        accounts += len(targets)
        for org_id, account_id in targets:
            async with org_transaction(ctx.engine, org_id) as session:
                await accept_notice(
                    session, push_format("gmail"), "gmail", org_id, account_id, notice
                )
    logger.info("gmail push", extra={"count": accounts})
    return Response(status_code=204)


@webhooks_router.post(
    "/outlook",
    summary="Microsoft Graph change and lifecycle notifications",
    responses={
        200: {"description": "validationToken echoed", "content": {"text/plain": {}}},
        202: {"description": "accepted"},
        400: {"description": "Not a Graph notification"},
        413: {"description": "Body too large"},
        429: {"description": "Too many requests from this address"},
    },
    dependencies=[limited("webhook-outlook")],
)
async def outlook_push(
    request: Request,
    validation_token: Annotated[str | None, Query(alias="validationToken", max_length=1024)] = None,
) -> Response:
    if validation_token is not None:
        # Subscription validation: echo the (URL-decoded) token as text/plain, at once.
        return PlainTextResponse(validation_token, status_code=200)
    ctx = _ctx(request)
    notices = await _notices(request, "outlook")
    accepted = 0
    for notice in notices:
        if notice.channel_id is None:
            continue
        async with system_transaction(ctx.engine) as session:
            target = await repository.account_by_push_channel(session, "outlook", notice.channel_id)
        if target is None:
            continue
        if not client_state_matches(ctx, target.account_id, notice):
            logger.warning(
                "graph notification with a wrong clientState",
                extra={"account_id": str(target.account_id)},
            )
            continue
        accepted += 1
        async with org_transaction(ctx.engine, target.org_id) as session:
            await accept_notice(
                session, push_format("outlook"), "outlook", target.org_id, target.account_id, notice
            )
    logger.info("graph notifications", extra={"count": len(notices), "processed": accepted})
    return Response(status_code=202)
