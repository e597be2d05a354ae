"""The one log filter: only allow-listed id/count fields pass, arguments are withheld,
exception text and tracebacks never reach the output."""

from __future__ import annotations

import io
import json
import logging

from app.logs import ContentFreeFilter, JsonFormatter, job_id_var, request_id_var


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContentFreeFilter())
    logger = logging.getLogger("tests.observability.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_only_ids_and_counts_pass_and_context_ids_are_added() -> None:
    logger, stream = _capture()
    request_token = request_id_var.set("req-1")
    job_token = job_id_var.set("42")
    try:
        logger.info(
            "stored",
            extra={
                "account_id": "a1",
                "count": 3,
                "subject": "Referral",
                "body": "Dear Dr",
                "to": "pat@example.net",
                "access_token": "ya29.SANDBOXTOKEN.x",
            },
        )
    finally:
        request_id_var.reset(request_token)
        job_id_var.reset(job_token)
    line = json.loads(stream.getvalue())
    assert line["account_id"] == "a1"
    assert line["count"] == 3
    assert line["request_id"] == "req-1"
    assert line["job_id"] == "42"
    for leaked in ("Referral", "Dear Dr", "pat@example.net", "SANDBOXTOKEN"):
        assert leaked not in stream.getvalue()


def test_interpolated_arguments_and_exception_text_are_withheld() -> None:
    logger, stream = _capture()
    logger.warning("failed for %s", "pat@example.net")
    try:
        raise ValueError("token ya29.SANDBOXTOKEN.y in subject Referral")
    except ValueError:
        logger.exception("boom")
    out = stream.getvalue()
    assert "pat@example.net" not in out
    assert "SANDBOXTOKEN" not in out
    assert "Referral" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["msg"] == "failed for %s (arguments withheld)"
    assert lines[1]["exc_type"] == "ValueError"
