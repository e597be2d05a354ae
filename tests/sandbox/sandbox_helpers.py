"""Helpers for driving the sandbox over HTTP like a real client would."""

from __future__ import annotations

import base64
import hashlib
import secrets
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from app.config import Settings
from sandbox import SandboxState

BASE_URL = "http://127.0.0.1:8000"
SANDBOX = "/_sandbox"
GMAIL_API = f"{SANDBOX}/gmail/gmail/v1/users/me"
GRAPH_API = f"{SANDBOX}/outlook/v1.0"
GMAIL_USER = "sandbox.user@example.com"
OUTLOOK_USER = "sandbox.user@example.onmicrosoft.com"
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.modify openid email"
OUTLOOK_SCOPE = "offline_access openid profile User.Read Mail.ReadWrite Mail.Send"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class PushReceiver:
    """A stand-in for the service's webhook endpoints."""

    gmail: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    graph: list[dict[str, Any]] = field(default_factory=list)
    validations: list[str] = field(default_factory=list)
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        @self.app.post("/v1/webhooks/gmail")
        async def gmail_push(request: Request) -> Response:
            self.gmail.append((dict(request.query_params), await request.json()))
            return Response(status_code=204)

        @self.app.post("/v1/webhooks/graph")
        async def graph_push(request: Request) -> Response:
            token = request.query_params.get("validationToken")
            if token is not None:
                self.validations.append(token)
                return PlainTextResponse(token)
            self.graph.append(await request.json())
            return Response(status_code=202)

        @self.app.post("/v1/webhooks/graph-broken")
        async def broken(request: Request) -> Response:
            return Response("nope", status_code=500)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))


@dataclass
class Sandbox:
    client: httpx.AsyncClient
    state: SandboxState
    settings: Settings
    clock: FakeClock
    receiver: PushReceiver


# --------------------------------------------------------------------------- messages


def make_message(
    *,
    subject: str = "Quarterly report",
    sender: str = "Alice Example <alice@partner.example>",
    to: str = GMAIL_USER,
    cc: str | None = None,
    text: str = "Hello,\nthe report is attached.\n",
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2025, 2, 28, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="partner.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    for name, content_type, data in attachments or []:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


async def seed(
    sandbox: Sandbox,
    provider: str,
    raw: bytes,
    *,
    mailbox: str | None = None,
    folder: str = "inbox",
    received_at: str | None = None,
) -> str:
    mailbox = mailbox or (GMAIL_USER if provider == "gmail" else OUTLOOK_USER)
    params = {"folder": folder}
    if received_at:
        params["received_at"] = received_at
    response = await sandbox.client.post(
        f"{SANDBOX}/{provider}/mailboxes/{mailbox}/messages",
        params=params,
        content=raw,
        headers={"Content-Type": "message/rfc822"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_fault(sandbox: Sandbox, provider: str, kind: str, **extra: Any) -> None:
    body = {"kind": kind, "count": extra.pop("count", 1), **extra}
    response = await sandbox.client.post(f"{SANDBOX}/{provider}/faults", json=body)
    assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- OAuth


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def authorize_params(
    settings: Settings, provider: str, challenge: str, **overrides: str
) -> dict[str, str]:
    gmail = provider == "gmail"
    params = {
        "client_id": settings.gmail_client_id if gmail else settings.outlook_client_id,
        "redirect_uri": f"{settings.public_base_url}/v1/oauth/{provider}/callback",
        "response_type": "code",
        "scope": GMAIL_SCOPE if gmail else OUTLOOK_SCOPE,
        "state": "opaque-state-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if gmail:
        params.update(access_type="offline", prompt="consent")
    params.update(overrides)
    return params


async def authorize(
    sandbox: Sandbox, provider: str, challenge: str, **overrides: str
) -> httpx.Response:
    params = authorize_params(sandbox.settings, provider, challenge, **overrides)
    url = getattr(sandbox.settings, f"{provider}_auth_url").replace(BASE_URL, "")
    return await sandbox.client.get(url, params=params)


def redirect_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response.headers["location"]).query))


def client_form(settings: Settings, provider: str) -> dict[str, str]:
    gmail = provider == "gmail"
    return {
        "client_id": settings.gmail_client_id if gmail else settings.outlook_client_id,
        "client_secret": (
            settings.gmail_client_secret if gmail else settings.outlook_client_secret
        ).get_secret_value(),
    }


async def token_call(sandbox: Sandbox, provider: str, **form: str) -> httpx.Response:
    body = {**client_form(sandbox.settings, provider), **form}
    if provider == "outlook":
        body.setdefault("scope", OUTLOOK_SCOPE)
    url = getattr(sandbox.settings, f"{provider}_token_url").replace(BASE_URL, "")
    return await sandbox.client.post(url, data=body)


async def connect(sandbox: Sandbox, provider: str, mailbox: str | None = None) -> dict[str, Any]:
    """The whole code + PKCE flow; returns the token response."""
    verifier, challenge = pkce_pair()
    extra = {"login_hint": mailbox} if mailbox else {}
    query = redirect_query(await authorize(sandbox, provider, challenge, **extra))
    redirect_uri = f"{sandbox.settings.public_base_url}/v1/oauth/{provider}/callback"
    response = await token_call(
        sandbox,
        provider,
        grant_type="authorization_code",
        code=query["code"],
        redirect_uri=redirect_uri,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
