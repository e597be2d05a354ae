"""The OpenAPI document: every error is documented as RFC 9457 problem+json, as served."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "examples": ["/problems/validation"]},
        "title": {"type": "string", "examples": ["Validation failed"]},
        "status": {"type": "integer", "examples": [422]},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}
# What any authenticated /v1 operation can answer besides its documented successes.
_COMMON_ERRORS = {
    "400": "Bad request",
    "401": "Missing, invalid or expired bearer token",
    "403": "Not allowed for this user",
    "404": "Not found (or another organisation's)",
    "422": "Validation failed",
    "500": "Internal error (no details are disclosed)",
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if path.startswith("/v1/") and not path.startswith("/v1/webhooks"):
                    for code, description in _COMMON_ERRORS.items():
                        responses.setdefault(code, {"description": description})
                else:
                    responses.setdefault("422", {"description": "Validation failed"})
                    responses.setdefault("500", {"description": "Internal error"})
                for code, response in responses.items():
                    if code[0] in "45" or code == "default":
                        response["content"] = _PROBLEM_CONTENT
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
