from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from app.accounts import service as accounts_service
from app.auth.deps import CallerDep
from app.context import ServiceContext
from app.db.rls import org_transaction, system_transaction
from app.errors import BadRequest, Conflict, Forbidden, PayloadTooLarge
from app.jobs.queue import QUEUE_MAINTENANCE, enqueue
from app.security.ratelimit import limited
from app.sync.schemas import SyncRequested, SyncStatus
from app.sync.service import enqueue_sync, push_client_state

logger = logging.getLogger(__name__)

sync_router = APIRouter(prefix="/v1/accounts", tags=["sync"])
webhooks_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

PUSH_PRIORITY = 10  # new mail ahead of polling and backfills
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
    account = await accounts_service.get_account(caller, account_id)
    if not (caller.is_admin or account.owner_user_id == caller.user_id):
        raise Forbidden("Only the account's owner or an org admin may do this")
    if account.status in ("reauth_required", "disconnected"):
        raise Conflict("The mailbox must be connected again before it can sync")
    job = await enqueue_sync(
        caller.session, caller.org_id, account_id, reason="manual", priority=PUSH_PRIORITY
    )
    return SyncRequested(coalesced=job is None)


@sync_router.get(
    "/{account_id}/sync",
    summary="Sync progress and outcome of the account",
    responses={404: {"description": "No such account"}},
)
async def sync_status(account_id: UUID, caller: CallerDep) -> SyncStatus:
    await accounts_service.get_account(caller, account_id)  # visibility and 404
    row = (
        await caller.session.execute(
            text(
                "SELECT sync_state, sync_phase, sync_processed, sync_estimate, sync_started_at, "
                "sync_finished_at, last_synced_at, last_error FROM ce_email_accounts WHERE id = :id"
            ),
            {"id": account_id},
        )
    ).one()
    return SyncStatus(
        state=row.sync_state,
        phase=row.sync_phase,
        processed=row.sync_processed,
        estimate=row.sync_estimate,
        started_at=row.sync_started_at,
        finished_at=row.sync_finished_at,
        last_synced_at=row.last_synced_at,
        last_error=row.last_error,
    )


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge("Notification too large")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("Body is not JSON") from None


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
    envelope = await _body(request)
    try:
        data = json.loads(
            base64.urlsafe_b64decode(
                envelope["message"]["data"] + "=" * (-len(envelope["message"]["data"]) % 4)
            )
        )
        address = str(data["emailAddress"])
        history_id = int(str(data["historyId"]))
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise BadRequest("Not a Gmail push notification") from None
    async with system_transaction(ctx.engine) as session:
        accounts = (
            await session.execute(
                text("SELECT org_id, account_id FROM ce_find_accounts_by_address('gmail', :a)"),
                {"a": address},
            )
        ).all()
    for org_id, account_id in accounts:
        async with org_transaction(ctx.engine, org_id) as session:
            stored = (
                await session.execute(
                    text("SELECT sync_cursor->>'history_id' FROM ce_email_accounts WHERE id = :id"),
                    {"id": account_id},
                )
            ).scalar_one_or_none()
            if stored and stored.isdigit() and history_id <= int(stored):
                continue  # an older or repeated push: nothing new
            await enqueue_sync(session, org_id, account_id, reason="push", priority=PUSH_PRIORITY)
    logger.info("gmail push", extra={"count": len(accounts)})
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
    body = await _body(request)
    items = body.get("value") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadRequest("Not a Graph notification")
    accepted = 0
    for item in items[:100]:
        if not isinstance(item, dict):
            continue
        subscription = str(item.get("subscriptionId", ""))[:256]
        async with system_transaction(ctx.engine) as session:
            found = (
                await session.execute(
                    text(
                        "SELECT org_id, account_id "
                        "FROM ce_find_account_by_push_channel('outlook', :s)"
                    ),
                    {"s": subscription},
                )
            ).first()
        if found is None:
            continue
        org_id, account_id = found
        client_state = str(item.get("clientState") or "")
        if not hmac.compare_digest(
            client_state.encode(), push_client_state(ctx, account_id).encode()
        ):
            logger.warning(
                "graph notification with a wrong clientState", extra={"account_id": str(account_id)}
            )
            continue
        accepted += 1
        lifecycle = item.get("lifecycleEvent")
        async with org_transaction(ctx.engine, org_id) as session:
            if lifecycle in ("reauthorizationRequired", "subscriptionRemoved"):
                await enqueue(
                    session,
                    "ce:renew_push",
                    {"org_id": str(org_id), "account_id": str(account_id), "provider": "outlook"},
                    queue=QUEUE_MAINTENANCE,
                    queueing_lock=f"renew:{account_id}",
                )
            if lifecycle != "reauthorizationRequired":
                # created/updated/deleted, `missed` and a removed subscription: catch up
                await enqueue_sync(
                    session, org_id, account_id, reason="push", priority=PUSH_PRIORITY
                )
    logger.info("graph notifications", extra={"count": len(items), "processed": accepted})
    return Response(status_code=202)
