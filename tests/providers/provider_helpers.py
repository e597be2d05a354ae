"""Helpers for provider client tests: a sleep that records instead of sleeping, a token
source whose tokens are easy to spot in logs, MockTransport clients, error bodies.

A uniquely named module (not conftest) so other test folders' conftests cannot shadow it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

SECRET_MARK = "SECRETTOKEN"

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeTokenSource:
    """Access tokens `SECRETTOKEN-access-<n>`; refresh() moves to the next one."""

    def __init__(self) -> None:
        self.generation = 1
        self.refreshes = 0

    @property
    def current(self) -> str:
        return f"{SECRET_MARK}-access-{self.generation}"

    async def access_token(self) -> str:
        return self.current

    async def refresh(self) -> str:
        self.refreshes += 1
        self.generation += 1
        return self.current


class Recorder:
    """A MockTransport handler wrapper that keeps every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        result = self.handler(request)
        if isinstance(result, Awaitable):
            return await result
        return result


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )


def gmail_error(status: int, reason: str, message: str = "error") -> httpx.Response:
    return json_response(
        status,
        {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}},
    )


def graph_error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return json_response(status, {"error": {"code": code, "message": "error"}}, headers)


def mock_client(handler: Handler) -> tuple[httpx.AsyncClient, Recorder]:
    recorder = Recorder(handler)
    return httpx.AsyncClient(transport=httpx.MockTransport(recorder)), recorder
