"""create_app(): routers, middleware, exception handlers, and the resources they share."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.accounts.endpoints import accounts_router, oauth_router
from app.audit.endpoints import router as audit_router
from app.auth.tokens import TokenVerifier
from app.config import Settings, check_production_safety, get_settings
from app.context import ServiceContext
from app.db.engine import create_database
from app.db.urls import ensure_database_url
from app.errors import install_error_handlers
from app.health.endpoints import router as health_router
from app.jobs.worker import run_worker
from app.logs import request_id_var
from app.messages.endpoints import router as email_router
from app.observability.endpoints import router as metrics_router
from app.observability.metrics import install as install_metrics
from app.openapi import install_openapi
from app.reconcile.endpoints import reconcile_router
from app.retention.endpoints import router as retention_router
from app.sandbox_mount import mount_sandbox
from app.send.endpoints import router as send_router
from app.settings.endpoints import router as settings_router
from app.sync.endpoints import sync_router, webhooks_router
from app.sync.service import enqueue_sync
from app.tracking.endpoints import answer_pixel
from app.tracking.endpoints import router as tracking_router

logger = logging.getLogger("app.http")


class RequestContextMiddleware:
    """Request id (X-Request-ID, echoed or made) for the logs, and one access-log line with
    the route template, never the concrete path (paths carry tokens and ids). Plain ASGI:
    Starlette's BaseHTTPMiddleware costs more than the tracking pixel itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        if not request_id or len(request_id) > 64 or not request_id.replace("-", "").isalnum():
            request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            if logger.isEnabledFor(logging.INFO):
                route = scope.get("route")
                logger.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": getattr(route, "path", "unmatched"),
                        "status_code": status,
                        "request_id": request_id,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )


class CeEmailApp(FastAPI):
    """The service's ASGI app. The open pixel is answered here, before FastAPI's own
    middleware stack (error, telemetry and body-limit layers) and ours: it is the hottest
    path of the service, the same 43 bytes for every request, and needs none of them."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith("/t/o/")
            and await answer_pixel(self, scope, send)
        ):
            return
        await super().__call__(scope, receive, send)


async def _queue_first_sync(session: AsyncSession, org_id: UUID, account_id: UUID) -> None:
    # a backfill: behind push-triggered syncs and sends (priority 10)
    await enqueue_sync(session, org_id, account_id, reason="connect", priority=0)


def create_app(
    settings: Settings | None = None, *, http_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """`http_transport` carries every outgoing provider call and sandbox push (tests route it
    into the app itself with httpx.ASGITransport; by default it is real HTTP)."""
    settings = ensure_database_url(settings or get_settings())
    check_production_safety(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything loaded at start-up lives as long as the process: keep it out of the
        # collector's full passes, which otherwise pause the event loop for ~100 ms every
        # few seconds under load (the tracking pixel's p99).
        gc.freeze()
        app.state.db = create_database(settings)
        ctx = ServiceContext.build(
            settings, app.state.db.engine, transport=app.state.http_transport
        )
        app.state.ctx = ctx
        ctx.connect_hooks.append(_queue_first_sync)
        worker = None
        if settings.run_worker_in_process:
            worker = asyncio.create_task(
                run_worker(settings, ctx, install_signal_handlers=False), name="job-worker"
            )
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
            recorder = getattr(app.state, "open_recorder", None)
            if recorder is not None:
                await recorder.close()  # opens still buffered are written, not dropped
            await ctx.aclose()
            await app.state.db.dispose()

    app = CeEmailApp(
        title="ce-email",
        version="0.1.0",
        summary="CE-07 email integration: connect mailboxes, sync, link, send, track.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.http_transport = http_transport
    app.state.token_verifier = TokenVerifier(settings)
    install_error_handlers(app)
    install_openapi(app)

    app.add_middleware(RequestContextMiddleware)

    app.include_router(health_router)
    app.include_router(metrics_router)
    install_metrics()
    app.include_router(settings_router)
    app.include_router(oauth_router)
    app.include_router(accounts_router)
    app.include_router(sync_router)
    app.include_router(reconcile_router)
    app.include_router(webhooks_router)
    app.include_router(email_router)
    app.include_router(audit_router)
    app.include_router(retention_router)
    app.include_router(send_router)
    app.include_router(tracking_router)

    def sandbox_push_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=app.state.http_transport, timeout=10)

    mount_sandbox(app, settings, push_client_factory=sandbox_push_client)
    return app
