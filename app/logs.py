"""Structured JSON logs that cannot carry mail content or tokens by construction.

Only an allow-list of record attributes is emitted; `extra` values pass only when their
key is on the list of id/count fields. Messages are fixed strings written by us.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)

SAFE_EXTRA_KEYS = frozenset(
    {
        "org_id",
        "user_id",
        "account_id",
        "email_id",
        "job_id",
        "request_id",
        "provider",
        "status",
        "status_code",
        "method",
        "path",
        "route",
        "duration_ms",
        "count",
        "processed",
        "attempt",
        "retry_after",
        "error_type",
        "error_code",
        "phase",
        "kind",
        "pgdata",
        "host",
        "port",
        "queue",
        "task",
        "fetched",
        "stored",
        "deleted",
        "pages",
        "held",
        "dropped",
        "worker_id",
        "restart",
    }
)


class ContentFreeFilter(logging.Filter):
    """Drops every extra attribute that is not an allow-listed id or count."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.safe_extra = {k: v for k, v in record.__dict__.items() if k in SAFE_EXTRA_KEYS}
        # Arguments interpolated into messages could carry anything: refuse them.
        if record.args:
            record.msg = f"{record.msg} (arguments withheld)"
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": str(record.msg),
        }
        if rid := request_id_var.get():
            payload["request_id"] = rid
        if jid := job_id_var.get():
            payload["job_id"] = jid
        payload.update(getattr(record, "safe_extra", {}))
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages and tracebacks may hold tokens or content.
            payload["exc_type"] = record.exc_info[0].__name__
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContentFreeFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = False
    # Libraries that log what passes through them (SQL parameters, full URLs with tokens,
    # HTTP headers) stay at WARNING whatever LOG_LEVEL says: DEBUG must not mean leaks.
    for chatty in (
        "sqlalchemy.engine",
        "sqlalchemy.pool",
        "asyncpg",
        "httpx",
        "httpcore",
        "hpack",
        "psycopg",
        "multipart",
        "python_multipart",
    ):
        logging.getLogger(chatty).setLevel(logging.WARNING)
