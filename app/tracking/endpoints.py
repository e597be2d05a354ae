"""GET /t/o/{token} (the pixel) and GET /t/c/{token} (a link), reached by anyone.

Nothing in the request is trusted: the token is verified (org and target come only from a
valid signature), the org's RLS transaction is opened from it, and hits are rate-limited
per client address and per token (app/tracking/limiter.py). Over a limit the GIF or the
redirect is still served, but nothing is recorded. Every pixel answer is the same 43 bytes,
so the pixel only notes the hit and answers; the recorder does the rest in batches
(app/tracking/recorder.py).
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.responses import RedirectResponse
from starlette.types import Scope, Send

from app.db.rls import org_transaction
from app.errors import NotFound
from app.tracking.limiter import TrackingLimiter
from app.tracking.recorder import OpenRecorder
from app.tracking.service import record_click
from app.tracking.tokens import read_token

logger = logging.getLogger(__name__)

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
PIXEL_HEADERS = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Expires": "0",
}

_PIXEL_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"image/gif"),
        (b"content-length", str(len(GIF)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in PIXEL_HEADERS.items()),
    ],
}
_PIXEL_BODY = {"type": "http.response.body", "body": GIF}
_PIXEL_HEAD_BODY = {"type": "http.response.body", "body": b""}
_TOKEN_LENGTH = 64  # app/tracking/tokens.py: base64url of 48 bytes

router = APIRouter(prefix="/t", tags=["tracking"])
TokenPath = Annotated[str, Path(max_length=128)]


def tracking_limiter(app: FastAPI) -> TrackingLimiter:
    limiter: TrackingLimiter | None = getattr(app.state, "tracking_limiter", None)
    if limiter is None:
        limiter = app.state.tracking_limiter = TrackingLimiter(app.state.settings)
    return limiter


def open_recorder(app: FastAPI) -> OpenRecorder:
    recorder: OpenRecorder | None = getattr(app.state, "open_recorder", None)
    if recorder is None:
        settings = app.state.settings
        recorder = app.state.open_recorder = OpenRecorder(
            app.state.db.engine,
            settings.tracking_token_secret.get_secret_value(),
            tracking_limiter(app),
            settings.tracking_flush_ms,
        )
    return recorder


async def take_open(
    app: FastAPI, token: str, peer: str | None, forwarded_for: str | None, agent: str | None
) -> None:
    """Hand the hit to the recorder; never raises (the recipient always gets the GIF)."""
    if len(token) != _TOKEN_LENGTH:
        return  # not a token of ours; a signed one is checked by the recorder
    try:
        recorder = open_recorder(app)
        client = recorder.limiter.client_address(peer, forwarded_for)
        if recorder.inline:
            await recorder.record_now(token, client, agent, time.time())
        elif pace := recorder.note(token, client, agent, time.time()):
            await recorder.pace(pace)
    except Exception as exc:
        logger.error("open not recorded", extra={"error_type": type(exc).__name__})


async def answer_pixel(app: FastAPI, scope: Scope, send: Send) -> bool:
    """GET/HEAD /t/o/{token} answered in front of FastAPI and its middleware: the hottest
    path of the service needs none of it (no auth, no body, no validation, no routing).
    False when the request is not one for the pixel."""
    method = scope["method"]
    if method != "GET" and method != "HEAD":
        return False
    token = scope["path"][5:]
    agent = forwarded = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            agent = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
    client = scope.get("client")
    await take_open(app, token, client[0] if client else None, forwarded, agent)
    await send(_PIXEL_START)
    await send(_PIXEL_BODY if method == "GET" else _PIXEL_HEAD_BODY)
    return True


@router.get(
    "/o/{token}",
    summary="Open pixel: always the same 1x1 GIF",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "43-byte transparent GIF"}},
)
async def open_pixel(request: Request, token: TokenPath) -> Response:
    # Normally answered by answer_pixel before FastAPI; this route documents it and
    # serves it when the app is mounted inside another one.
    peer = request.client.host if request.client else None
    await take_open(
        request.app,
        token,
        peer,
        request.headers.get("x-forwarded-for"),
        request.headers.get("user-agent"),
    )
    return Response(GIF, media_type="image/gif", headers=PIXEL_HEADERS)


@router.get(
    "/c/{token}",
    summary="Tracked link: redirect to the stored URL of the sent email",
    response_class=RedirectResponse,
    status_code=302,
    responses={
        302: {"description": "to the link as it was in the sent email"},
        404: {"description": "unknown or forged token"},
    },
)
async def click(request: Request, token: TokenPath) -> RedirectResponse:
    settings = request.app.state.settings
    found = read_token(settings.tracking_token_secret.get_secret_value(), "c", token)
    if found is None:
        raise NotFound("Unknown link")
    limiter = tracking_limiter(request.app)
    client = limiter.client_address(
        request.client.host if request.client else None, request.headers.get("x-forwarded-for")
    )
    allowed = await limiter.allow(client, token)
    org_id, link_id = found
    async with org_transaction(request.app.state.db.engine, org_id) as session:
        url = await record_click(
            session, org_id, link_id, user_agent=request.headers.get("user-agent"), record=allowed
        )
    if url is None:
        raise NotFound("Unknown link")
    return RedirectResponse(
        url,
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
