"""Just enough multipart and `application/http` handling for Google batch and uploads.

The stdlib parser would re-serialise embedded messages; here part bodies stay byte-exact,
and both CRLF and bare LF line endings are accepted (Google's Python client sends LF).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from http import HTTPStatus

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def boundary_of(content_type: str) -> str | None:
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    return match.group(1) if match else None


def split_parts(body: bytes, boundary: str) -> list[bytes]:
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    )
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
        if match.group(1):
            break
        start = match.end()
    return parts


def split_head(part: bytes) -> tuple[dict[str, str], bytes]:
    """Headers (lower-cased names) and the body of one part or one HTTP message."""
    if part.startswith((b"\r\n", b"\n")):
        return {}, part[2:] if part.startswith(b"\r\n") else part[1:]
    match = _BLANK_LINE.search(part)
    head, body = (part[: match.start()], part[match.end() :]) if match else (part, b"")
    return parse_header_lines(head), body


def parse_header_lines(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    name: str | None = None
    for line in head.decode("utf-8", "replace").splitlines():
        if line[:1] in (" ", "\t") and name:
            headers[name] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if sep:
            name = key.strip().lower()
            headers[name] = value.strip()
    return headers


@dataclass(slots=True)
class InnerRequest:
    content_id: str | None
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


def parse_batch_part(part: bytes) -> InnerRequest:
    """One `application/http` part: its MIME headers, then a request line, headers, body."""
    outer, http_message = split_head(part)
    http_message = http_message.lstrip(b"\r\n")
    line_end = http_message.find(b"\n")
    request_line = (http_message if line_end < 0 else http_message[:line_end]).decode().strip()
    rest = b"" if line_end < 0 else http_message[line_end + 1 :]
    headers, body = split_head(rest) if rest.strip() else ({}, b"")
    pieces = request_line.split()
    if len(pieces) < 2:
        raise ValueError("bad request line")
    content_id = outer.get("content-id")
    return InnerRequest(
        content_id=content_id.strip() if content_id else None,
        method=pieces[0].upper(),
        target=pieces[1],
        headers=headers,
        body=body,
    )


def render_batch_response(
    parts: list[tuple[str, int, dict[str, str], bytes]],
) -> tuple[bytes, str]:
    """(content id, status, headers, body) per part → multipart/mixed body, content type."""
    boundary = "batch_" + secrets.token_hex(12)
    chunks: list[bytes] = []
    for content_id, status, headers, body in parts:
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        head = [
            f"--{boundary}",
            "Content-Type: application/http",
            f"Content-ID: {content_id}",
            "",
            f"HTTP/1.1 {status} {reason}",
            *(f"{k}: {v}" for k, v in headers.items()),
            f"Content-Length: {len(body)}",
            "",
            "",
        ]
        chunks.append("\r\n".join(head).encode() + body + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/mixed; boundary={boundary}"
