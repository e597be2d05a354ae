from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.db.rls import system_transaction
from app.errors import Unauthorized
from app.observability.metrics import render

router = APIRouter(tags=["ops"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (ids and counts only)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "exposition format"},
        401: {"description": "METRICS_TOKEN set and not presented"},
    },
)
async def metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise Unauthorized("A metrics token is required")
    # An edge: the scrape's own read-only transaction, with no org (the gauges' functions
    # aggregate across orgs and return ids and counts only).
    async with system_transaction(request.app.state.db.engine) as session:
        body = await render(session)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
