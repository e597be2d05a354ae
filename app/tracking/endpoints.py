"""GET /t/o/{token} (the pixel) and GET /t/c/{token} (a link), reached by anyone.

Nothing in the request is trusted: the token is verified (org and target come only from a
valid signature), the org's RLS transaction is opened from it, and hits are rate-limited
per client address and per token with the `limits` library (in memory, or Redis when
REDIS_URL is set, so several API instances share the counts). Over a limit the GIF or the
redirect is still served, but nothing is recorded. Every pixel answer is the same 43 bytes.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.responses import RedirectResponse
from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.errors import NotFound
from app.tracking.classify import classify
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

_PIXEL_RAW = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(GIF)).encode()),
    *((k.lower().encode(), v.encode()) for k, v in PIXEL_HEADERS.items()),
]

router = APIRouter(prefix="/t", tags=["tracking"])
TokenPath = Annotated[str, Path(max_length=128)]


class TrackingLimiter:
    def __init__(self, settings: Settings) -> None:
        storage: Storage = (
            RedisStorage(f"async+{settings.redis_url}") if settings.redis_url else MemoryStorage()
        )
        # fixed windows: O(1) per hit (a moving window keeps every hit of the window)
        self.limiter = FixedWindowRateLimiter(storage)
        self.per_client = parse(settings.tracking_rate_limit)
        self.per_token = parse(settings.tracking_token_rate_limit)
        self.trusted = {p.strip() for p in settings.trusted_proxies.split(",") if p.strip()}

    def client_of(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded and peer in self.trusted:
            return forwarded.split(",")[0].strip()[:64]
        return peer

    async def allow(self, request: Request, token: str) -> bool:
        try:
            by_client = await self.limiter.hit(self.per_client, "track-ip", self.client_of(request))
            by_token = await self.limiter.hit(self.per_token, "track-token", token)
        except Exception as exc:  # a limiter outage must not break the pixel
            logger.warning("tracking limiter failed", extra={"error_type": type(exc).__name__})
            return False
        return by_client and by_token


def _limiter(request: Request) -> TrackingLimiter:
    limiter = getattr(request.app.state, "tracking_limiter", None)
    if limiter is None:
        limiter = TrackingLimiter(request.app.state.settings)
        request.app.state.tracking_limiter = limiter
    return limiter  # type: ignore[no-any-return]


def _recorder(request_app: FastAPI) -> OpenRecorder:
    recorder = getattr(request_app.state, "open_recorder", None)
    if recorder is None:
        recorder = OpenRecorder(
            request_app.state.db.engine, request_app.state.settings.tracking_flush_ms
        )
        request_app.state.open_recorder = recorder
    return recorder  # type: ignore[no-any-return]


async def serve_pixel(app: FastAPI, request: Request, token: str) -> None:
    """Verify, rate-limit and hand the open to the recorder; never raises."""
    settings = app.state.settings
    found = read_token(settings.tracking_token_secret.get_secret_value(), "o", token)
    if found is None or not await _limiter(request).allow(request, token):
        return
    try:
        machine = classify(request.headers.get("user-agent"), None) == "machine"
        await _recorder(app).add(found[0], found[1], machine)
    except Exception as exc:  # the recipient always gets the GIF
        logger.error("open not recorded", extra={"error_type": type(exc).__name__})


class PixelFastPath:
    """GET /t/o/{token} answered in front of FastAPI's routing: the pixel is the hottest
    path of the service and needs none of it (no auth, no body, no validation)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/t/o/") or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        token = path[5:]
        if "/" not in token and 0 < len(token) <= 128:
            await serve_pixel(self.fastapi_app, Request(scope, receive), token)
        await send({"type": "http.response.start", "status": 200, "headers": _PIXEL_RAW})
        await send({"type": "http.response.body", "body": GIF if scope["method"] == "GET" else b""})


@router.get(
    "/o/{token}",
    summary="Open pixel: always the same 1x1 GIF",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "43-byte transparent GIF"}},
)
async def open_pixel(request: Request, token: TokenPath) -> Response:
    # Normally answered by PixelFastPath before routing; this route documents it and
    # serves it when the app runs without the fast path.
    await serve_pixel(request.app, request, token)
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
    allowed = await _limiter(request).allow(request, token)
    url = await record_click(
        request.app.state.db.engine,
        found[0],
        found[1],
        user_agent=request.headers.get("user-agent"),
        record=allowed,
    )
    if url is None:
        raise NotFound("Unknown link")
    return RedirectResponse(
        url,
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def register(app: FastAPI) -> None:
    if not getattr(app.state, "tracking_routes_registered", False):
        app.include_router(router)
        app.add_middleware(PixelFastPath, fastapi_app=app)
        app.state.tracking_routes_registered = True
