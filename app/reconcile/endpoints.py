"""POST /v1/accounts/{id}/reconcile: queue a reconciliation (its outcome is in the sync
status, GET /v1/accounts/{id}/sync, as `completeness`)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from app.accounts import service as accounts_service
from app.auth.deps import CallerDep
from app.reconcile.queue import enqueue_reconcile
from app.sync.schemas import ReconcileRequested

reconcile_router = APIRouter(prefix="/v1/accounts", tags=["sync"])


@reconcile_router.post(
    "/{account_id}/reconcile",
    status_code=202,
    summary="Queue a reconciliation: provider ids against stored (coalesces)",
    responses={
        403: {"description": "Only the account's owner or an org admin"},
        404: {"description": "No such account"},
        409: {"description": "The mailbox must be connected again"},
    },
)
async def request_reconcile(account_id: UUID, caller: CallerDep) -> ReconcileRequested:
    await accounts_service.account_to_act_on(caller, account_id, "be reconciled")
    job = await enqueue_reconcile(caller.session, caller.org_id, account_id)
    return ReconcileRequested(coalesced=job is None)
