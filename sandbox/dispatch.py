"""Inner calls of the batch endpoints are dispatched through the sandbox app itself, so
each one is authenticated, counted, throttled and faulted exactly like a direct call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import Request


def sandbox_base(request: Request) -> str:
    """Absolute URL of the sandbox root for this request (works mounted or standalone)."""
    root = request.scope.get("root_path", "")
    return f"{request.url.scheme}://{request.url.netloc}{root}"


@asynccontextmanager
async def inner_client(request: Request) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests land in this sandbox app under the same root path."""
    root = request.scope.get("root_path", "")
    transport = httpx.ASGITransport(app=request.app, root_path=root)
    base = f"{request.url.scheme}://{request.url.netloc}{root}"
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        yield client
