"""Domain errors and the one place that turns every error into RFC 9457 problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import asyncpg
import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """Base of the domain errors; each subclass is one HTTP status and problem type."""

    status_code: int = 500
    problem_type: str = "about:blank"
    title: str = "Internal Server Error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra


class BadRequest(AppError):
    status_code = 400
    problem_type = "/problems/bad-request"
    title = "Bad request"


class Unauthorized(AppError):
    status_code = 401
    problem_type = "/problems/unauthorized"
    title = "Authentication required"


class Forbidden(AppError):
    status_code = 403
    problem_type = "/problems/forbidden"
    title = "Forbidden"


class NotFound(AppError):
    status_code = 404
    problem_type = "/problems/not-found"
    title = "Not found"


class Conflict(AppError):
    status_code = 409
    problem_type = "/problems/conflict"
    title = "Conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    problem_type = "/problems/payload-too-large"
    title = "Payload too large"


class UnprocessableEntity(AppError):
    status_code = 422
    problem_type = "/problems/validation"
    title = "Validation failed"


class TooManyRequests(AppError):
    status_code = 429
    problem_type = "/problems/rate-limited"
    title = "Too many requests"


class ServiceUnavailable(AppError):
    status_code = 503
    problem_type = "/problems/unavailable"
    title = "Service unavailable"


DATABASE_RETRY_AFTER_SECONDS = 5
"""What a client is told to wait when PostgreSQL does not answer (a restart takes seconds)."""

_UNAVAILABLE_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    asyncpg.OperatorInterventionError,  # 57: admin shutdown, cannot connect now (starting)
    asyncpg.InterfaceError,  # "connection is closed"
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection within pool_timeout
    ConnectionError,  # refused / reset while connecting (an OSError)
    TimeoutError,  # the connect timeout
)


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) says PostgreSQL is unreachable, restarting or
    dropped the connection: a transient outage, not a fault of the request."""
    seen: BaseException | None = exc
    for _ in range(6):  # the driver error, SQLAlchemy's wrapper and a re-raise or two
        if seen is None:
            return False
        if isinstance(seen, _UNAVAILABLE_DRIVER_ERRORS):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        orig = getattr(seen, "orig", None)
        seen = orig if isinstance(orig, BaseException) else (seen.__cause__ or seen.__context__)
    return False


def database_unavailable_error() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is not reachable; try again shortly.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    problem_type: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": problem_type, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "email_sync_history_days") -> "email_sync_history_days"; keep query/path names.
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors without the rejected input (it may be mail content or a token)."""
    out = []
    for err in errors:
        message = str(err["msg"]).removeprefix("Value error, ")
        item: dict[str, Any] = {"field": _field_path(err.get("loc", ())), "message": message}
        ctx = err.get("ctx") or {}
        for key in ("ge", "le", "gt", "lt", "min_length", "max_length", "pattern"):
            if key in ctx:
                item[key] = ctx[key] if isinstance(ctx[key], int | float | str) else str(ctx[key])
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = exc.extra.pop("headers", None) if exc.extra else None
        return problem_response(
            exc.status_code,
            exc.title,
            exc.detail,
            exc.problem_type,
            instance=request.url.path,
            headers=headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(
            422,
            "Validation failed",
            detail or "Invalid request",
            "/problems/validation",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(
            exc.status_code,
            title,
            detail,
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def _driver_error(request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):
            return await _app_error(request, database_unavailable_error())
        return await _unexpected(request, exc)

    # Handled here rather than by the catch-all: Starlette gives a handler of an Exception
    # subclass the request before its server-error layer would answer 500.
    for error_class in (
        sqlalchemy.exc.DBAPIError,
        sqlalchemy.exc.DisconnectionError,
        sqlalchemy.exc.TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        psycopg.Error,
        OSError,
    ):
        app.add_exception_handler(error_class, _driver_error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type only: an exception's text may hold content we must not log.
        logger.error("unhandled error", extra={"error_type": type(exc).__name__})
        return problem_response(500, "Internal Server Error", instance=request.url.path)
