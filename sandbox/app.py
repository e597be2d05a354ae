"""Build the sandbox ASGI app (routes relative to the sandbox root) and its standalone host."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

import sandbox.control as control
import sandbox.gmail as gmail
import sandbox.gmail_send as gmail_send
import sandbox.graph as graph
import sandbox.graph_compose as graph_compose
import sandbox.graph_subscriptions as graph_subscriptions
import sandbox.oauth as oauth
from sandbox.config import SANDBOX_PREFIX, SandboxConfig
from sandbox.errors import SandboxError, handle_sandbox_error
from sandbox.gate import GRAPH_USER_SCOPE_KEY
from sandbox.state import SandboxState

_GRAPH_SEGMENTS = {
    name.lower(): name
    for name in (
        "me",
        "users",
        "messages",
        "mailFolders",
        "attachments",
        "delta",
        "sendMail",
        "send",
        "createReply",
        "createUploadSession",
        "subscriptions",
        "$value",
        "$batch",
    )
}
_KEYED = re.compile(r"(?P<name>[A-Za-z]+)\('(?P<key>[^']*)'\)")


def normalise_graph_path(path: str) -> tuple[str, str | None]:
    """Graph accepts `mailfolders('inbox')`, `delta()`, any case for segment names and
    `/users/{id}` for `/me`; reduce all of that to the one form the routes declare."""
    head, _, rest = path.partition("/outlook/v1.0/")
    segments: list[str] = []
    user: str | None = None
    for index, segment in enumerate(rest.split("/")):
        keyed = _KEYED.fullmatch(segment)
        if keyed:
            segments += [_GRAPH_SEGMENTS.get(keyed["name"].lower(), keyed["name"]), keyed["key"]]
            continue
        if segment.endswith("()"):
            segment = segment[:-2]
        segments.append(_GRAPH_SEGMENTS.get(segment.lower(), segment))
        if index == 1 and segments[0] == "users":
            user = segments.pop()
            segments[0] = "me"
    return f"{head}/outlook/v1.0/" + "/".join(segments), user


class GraphPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "/outlook/v1.0/" in scope["path"]:
            root = scope.get("root_path", "")
            path: str = scope["path"]
            relative = path[len(root) :] if root and path.startswith(root) else path
            if relative.startswith("/outlook/v1.0/"):
                normalised, user = normalise_graph_path(relative)
                if normalised != relative or user:
                    full = (root if path.startswith(root) else "") + normalised
                    scope = dict(scope)
                    scope["path"] = full
                    scope["raw_path"] = urllib.parse.quote(full, safe="/$()'=,:@!*+;~").encode()
                    if user:
                        scope[GRAPH_USER_SCOPE_KEY] = user
        await self.app(scope, receive, send)


def create_sandbox_app(config: SandboxConfig, state: SandboxState | None = None) -> FastAPI:
    """The fake providers, routes relative to the sandbox root: a host mounts it at
    `SANDBOX_PREFIX` (the service does when CE_SANDBOX=1). `state.sandbox` is the state."""
    state = state or SandboxState()
    state.config = config
    app = FastAPI(
        title="ce-email provider sandbox",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sandbox = state
    app.add_exception_handler(SandboxError, handle_sandbox_error)
    for module in (oauth, gmail, gmail_send, graph, graph_compose, graph_subscriptions, control):
        app.include_router(module.router)
    app.add_middleware(GraphPathMiddleware)
    return app


def create_standalone_app(config: SandboxConfig, state: SandboxState | None = None) -> FastAPI:
    """`ce-email sandbox`: the same sandbox under `/_sandbox`, so every path is identical."""
    sandbox = create_sandbox_app(config, state)
    parent = FastAPI(title="ce-email provider sandbox", docs_url=None, redoc_url=None)
    parent.state.sandbox = sandbox.state.sandbox

    @parent.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "sandbox": SANDBOX_PREFIX}

    parent.mount(SANDBOX_PREFIX, sandbox)
    return parent
