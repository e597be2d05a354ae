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


_ACCOUNT = {
    "id": "8c654c0b-b487-47c1-a631-fee6f892fb63",
    "provider": "gmail",
    "email_address": "dr.smith@riverside-clinic.test",
    "display_name": None,
    "status": "active",
    "status_reason": None,
    "visibility": "org",
    "owner_user_id": "a3245a25-3c46-4087-b659-7a07415c5f6b",
    "last_synced_at": "2026-11-24T16:14:13Z",
    "last_error": None,
    "push_expires_at": "2026-11-27T16:14:13Z",
    "created_at": "2026-11-24T16:13:49Z",
}
_ITEM = {
    "id": "5e94c256-d4a8-4502-a568-dc2f16814c7c",
    "account_id": _ACCOUNT["id"],
    "direction": "inbound",
    "status": "received",
    "subject": "Referral",
    "snippet": "Please see the patient.",
    "from": {"name": "Dr Lee", "address": "lee@cardio.hospital.org"},
    "to": [{"name": None, "address": "dr.smith@riverside-clinic.test"}],
    "cc": [],
    "sent_at": "2026-11-24T10:00:00Z",
    "occurred_at": "2026-11-24T10:00:02Z",
    "contact_ids": ["94fe79ea-6ab9-4c4d-a973-aac65c582ee1"],
    "partner_ids": ["31c2e37c-0691-4404-9d9f-33ddd855fc6b"],
    "has_attachments": False,
}
# Examples for the schemas clients see most (one place, so models stay plain).
SCHEMA_EXAMPLES: dict[str, Any] = {
    "Account": _ACCOUNT,
    "AccountList": {"items": [_ACCOUNT]},
    "AccountPatch": {"visibility": "private"},
    "SyncStatus": {
        "state": "running",
        "phase": "backfill:inbox",
        "processed": 1200,
        "estimate": 5000,
        "started_at": "2026-11-24T16:14:13Z",
        "finished_at": None,
        "last_synced_at": None,
        "last_error": None,
    },
    "SyncRequested": {"state": "queued", "coalesced": False},
    "EmailListItem": _ITEM,
    "EmailPage": {"items": [_ITEM], "next_cursor": None},
    "SendRequest": {
        "account_id": _ACCOUNT["id"],
        "to": ["jordan.patel@example.net"],
        "subject": "Your care plan",
        "html": "<p>Hello Jordan, your care plan is attached.</p>",
        "text": "Hello Jordan, your care plan is attached.",
        "contact_id": "94fe79ea-6ab9-4c4d-a973-aac65c582ee1",
        "document_ids": ["0b7f3a52-1d1e-4c55-9c6b-2f4a1e0b9d11"],
        "track_opens": True,
        "track_clicks": True,
    },
    "SendResponse": {
        "id": "1459b1da-a8f2-48f3-9af8-607b2f03ffb4",
        "status": "queued",
        "warnings": [{"type": "date_of_birth", "field": "text", "start": 12, "end": 22}],
    },
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
        for name, example in SCHEMA_EXAMPLES.items():
            if name in components and "examples" not in components[name]:
                components[name]["examples"] = [example]
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
