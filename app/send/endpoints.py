from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from app.auth.deps import CallerDep
from app.send import service
from app.send.schemas import SendRequest, SendResponse

router = APIRouter(prefix="/v1", tags=["emails"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not the mailbox's owner"},
    404: {"description": "Account, contact, partner, document or email not found in the org"},
    409: {"description": "The mailbox is not connected"},
    413: {"description": "Larger than the mailbox's provider accepts"},
    422: {"description": "Invalid request, or an Idempotency-Key reused for another email"},
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes a retried request return the first result and send once",
    ),
]


@router.post(
    "/emails",
    status_code=202,
    summary="Send an email from a connected mailbox (queued; sent by a job)",
    responses=_PROBLEMS,
)
async def send_email(
    body: SendRequest,
    caller: CallerDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SendResponse:
    result = await service.create_send(caller, body, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/emails/{result.id}"
    return result
