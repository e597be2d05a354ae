"""Error envelopes exactly as Google, Microsoft Graph and both token endpoints shape them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class SandboxError(Exception):
    """Raised anywhere in the sandbox; rendered verbatim (status, body, headers)."""

    def __init__(
        self,
        status: int,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        media_type: str = "application/json",
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.media_type = media_type


async def handle_sandbox_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxError)
    if exc.body is None:
        return Response(status_code=exc.status, headers=exc.headers)
    if isinstance(exc.body, (bytes, str)):
        return Response(exc.body, exc.status, headers=exc.headers, media_type=exc.media_type)
    return JSONResponse(exc.body, exc.status, headers=exc.headers)


# --------------------------------------------------------------------------- Google


def google_error(
    code: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    extra: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> SandboxError:
    detail = {"message": message, "domain": domain, "reason": reason, **(extra or {})}
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [detail],
            "status": _GOOGLE_STATUS.get(code, "UNKNOWN"),
        }
    }
    return SandboxError(code, body, headers=headers)


def google_not_found() -> SandboxError:
    return google_error(404, "Requested entity was not found.", "notFound")


def google_bad_request(message: str, reason: str = "invalidArgument") -> SandboxError:
    return google_error(400, message, reason)


def google_unauthenticated() -> SandboxError:
    return google_error(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential. "
        "See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "authError",
        extra={"location": "Authorization", "locationType": "header"},
        headers={
            "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        },
    )


def google_token_error(status: int, error: str, description: str) -> SandboxError:
    return SandboxError(
        status,
        {"error": error, "error_description": description},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


# --------------------------------------------------------------------------- Microsoft


def _graph_inner() -> dict[str, str]:
    request_id = str(uuid.uuid4())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": request_id,
    }


def graph_error(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> SandboxError:
    body = {"error": {"code": code, "message": message, "innerError": _graph_inner()}}
    return SandboxError(status, body, headers=headers)


def graph_not_found() -> SandboxError:
    return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def graph_bad_request(message: str, code: str = "BadRequest") -> SandboxError:
    return graph_error(400, code, message)


def graph_unauthenticated(message: str = "Access token is empty.") -> SandboxError:
    return graph_error(
        401,
        "InvalidAuthenticationToken",
        message,
        headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
    )


def aad_error(status: int, error: str, aadsts: int, text: str) -> SandboxError:
    """A Microsoft identity platform token endpoint error (AADSTS code in the text)."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{aadsts}: {text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
        f"\r\nTimestamp: {timestamp}"
    )
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [aadsts],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    return SandboxError(status, body, headers={"Cache-Control": "no-store"})
