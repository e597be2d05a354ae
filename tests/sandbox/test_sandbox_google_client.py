"""The fake Gmail against Google's own artefacts: the published discovery document (field
names and types of every response) and the real `google-api-python-client` over HTTP."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import googleapiclient
import httpx
import pytest
import uvicorn
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build_from_document
from googleapiclient.http import MediaIoBaseUpload

from app.config import Settings
from app.sandbox_mount import standalone_sandbox_app
from sandbox import SandboxState
from tests.fixtures.standalone_sandbox import (
    GMAIL_API,
    GMAIL_USER,
    SANDBOX,
    Sandbox,
    authorize_params,
    bearer,
    client_form,
    connect,
    make_message,
    pkce_pair,
    redirect_query,
    seed,
)

DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache/documents/gmail.v1.json"
_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
}


@pytest.fixture(scope="module")
def discovery() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DISCOVERY.read_text())
    return document


def conforms(value: Any, schema: dict[str, Any], schemas: dict[str, Any], where: str) -> list[str]:
    """Every field is declared in the discovery schema and has the declared JSON type."""
    if "$ref" in schema:
        return conforms(value, schemas[schema["$ref"]], schemas, where)
    kind = schema.get("type")
    if kind and not isinstance(value, _TYPES[kind]):
        return [f"{where}: {type(value).__name__} is not {kind}"]
    problems: list[str] = []
    if kind == "array":
        for index, item in enumerate(value):
            problems += conforms(item, schema["items"], schemas, f"{where}[{index}]")
    elif "properties" in schema:
        for key, item in value.items():
            declared = schema["properties"].get(key)
            if declared is None:
                problems.append(f"{where}.{key}: not in the discovery schema")
            else:
                problems += conforms(item, declared, schemas, f"{where}.{key}")
    return problems


@pytest.mark.asyncio
async def test_responses_use_only_fields_of_the_discovery_document(
    sandbox: Sandbox, discovery: dict[str, Any]
) -> None:
    schemas = discovery["schemas"]
    headers = bearer(await connect(sandbox, "gmail"))
    start = (await sandbox.client.get(f"{GMAIL_API}/profile", headers=headers)).json()["historyId"]
    pdf = b"%PDF" + bytes(300)
    message_id = await seed(
        sandbox,
        "gmail",
        make_message(html="<p>hi</p>", attachments=[("a.pdf", "application/pdf", pdf)]),
    )
    await seed(sandbox, "gmail", make_message(subject="second"))
    await sandbox.client.delete(f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages/{message_id}")
    kept = await seed(
        sandbox, "gmail", make_message(attachments=[("b.pdf", "application/pdf", pdf)])
    )

    async def fetch(path: str, **params: Any) -> Any:
        response = await sandbox.client.get(f"{GMAIL_API}{path}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    full = await fetch(f"/messages/{kept}")
    attachment_id = full["payload"]["parts"][1]["body"]["attachmentId"]
    sent = await sandbox.client.post(
        f"{GMAIL_API}/messages/send",
        json={"raw": base64.urlsafe_b64encode(make_message(to="x@partner.example")).decode()},
        headers=headers,
    )
    watch = await sandbox.client.post(
        f"{GMAIL_API}/watch", json={"topicName": "projects/p/topics/t"}, headers=headers
    )
    checks = [
        ("Profile", await fetch("/profile")),
        ("ListMessagesResponse", await fetch("/messages", maxResults=1)),
        ("Message", full),
        ("Message", await fetch(f"/messages/{kept}", format="raw")),
        ("Message", await fetch(f"/messages/{kept}", format="metadata")),
        ("Message", await fetch(f"/messages/{kept}", format="minimal")),
        ("MessagePartBody", await fetch(f"/messages/{kept}/attachments/{attachment_id}")),
        ("ListHistoryResponse", await fetch("/history", startHistoryId=start, maxResults=2)),
        ("Message", sent.json()),
        ("WatchResponse", watch.json()),
    ]
    history = checks[7][1]
    assert {"messagesAdded", "messagesDeleted"} <= {k for h in history["history"] for k in h} | {
        k for h in (await fetch("/history", startHistoryId=start))["history"] for k in h
    }
    problems = [p for name, body in checks for p in conforms(body, schemas[name], schemas, name)]
    assert problems == []
    assert conforms({"surprise": 1}, schemas["Profile"], schemas, "Profile")  # the check bites


# --------------------------------------------------------------------------- the real client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def live_sandbox() -> Iterator[tuple[str, Settings, SandboxState]]:
    """The standalone sandbox served over real HTTP (the Google client speaks httplib2)."""
    settings = Settings(ce_sandbox=True).with_sandbox_urls()
    state = SandboxState()
    port = _free_port()
    config = uvicorn.Config(
        standalone_sandbox_app(settings, state), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}", settings, state
    server.should_exit = True
    thread.join(timeout=5)


def _credentials(base: str, settings: Settings) -> Credentials:
    """Only a refresh token: the Google auth library fetches the access token itself."""
    verifier, challenge = pkce_pair()
    params = authorize_params(settings, "gmail", challenge)
    with httpx.Client(base_url=base) as client:
        code = redirect_query(client.get(f"{SANDBOX}/gmail/oauth/authorize", params=params))["code"]
        tokens = client.post(
            f"{SANDBOX}/gmail/oauth/token",
            data={
                **client_form(settings, "gmail"),
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": params["redirect_uri"],
                "code_verifier": verifier,
            },
        ).json()
    form = client_form(settings, "gmail")
    return Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=tokens["refresh_token"],
        token_uri=f"{base}{SANDBOX}/gmail/oauth/token",
        client_id=form["client_id"],
        client_secret=form["client_secret"],
    )


def test_google_api_python_client_drives_the_sandbox(
    live_sandbox: tuple[str, Settings, SandboxState], discovery: dict[str, Any]
) -> None:
    base, settings, state = live_sandbox
    credentials = _credentials(base, settings)
    document = {
        **discovery,
        "rootUrl": f"{base}{SANDBOX}/gmail/",
        "mtlsRootUrl": f"{base}{SANDBOX}/gmail/",
    }
    gmail = build_from_document(document, credentials=credentials)
    raw = make_message(attachments=[("r.pdf", "application/pdf", b"%PDF-1.4 data")])
    with httpx.Client(base_url=base) as client:
        for subject in ("one", "two"):
            client.post(
                f"{SANDBOX}/gmail/mailboxes/{GMAIL_USER}/messages",
                content=raw.replace(b"Quarterly report", subject.encode()),
            )

    profile = gmail.users().getProfile(userId="me").execute()
    assert profile["emailAddress"] == GMAIL_USER
    assert credentials.token
    assert "SANDBOXTOKEN" in credentials.token

    listed = gmail.users().messages().list(userId="me", q="in:inbox", maxResults=1).execute()
    assert len(listed["messages"]) == 1
    assert "nextPageToken" in listed
    rest = (
        gmail.users()
        .messages()
        .list_next(gmail.users().messages().list(userId="me", q="in:inbox", maxResults=1), listed)
        .execute()
    )
    assert rest["messages"][0]["id"] != listed["messages"][0]["id"]

    message = gmail.users().messages().get(userId="me", id=listed["messages"][0]["id"]).execute()
    pdf_part = message["payload"]["parts"][1]
    attachment = (
        gmail.users()
        .messages()
        .attachments()
        .get(userId="me", messageId=message["id"], id=pdf_part["body"]["attachmentId"])
        .execute()
    )
    assert base64.urlsafe_b64decode(attachment["data"]) == b"%PDF-1.4 data"

    history = gmail.users().history().list(userId="me", startHistoryId="100000").execute()
    assert len(history["history"]) == 2

    results: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Exception | None) -> None:
        results[request_id] = exception or response

    batch = gmail.new_batch_http_request(callback=collect)
    for item in rest["messages"] + listed["messages"]:
        batch.add(
            gmail.users().messages().get(userId="me", id=item["id"], format="raw"),
            request_id=item["id"],
        )
    batch.add(
        gmail.users().messages().get(userId="me", id="0000000000000000"), request_id="missing"
    )
    batch.execute()
    assert {k for k, v in results.items() if isinstance(v, dict)} == {
        m["id"] for m in rest["messages"] + listed["messages"]
    }
    assert getattr(results["missing"], "status_code", None) == 404

    outgoing = make_message(sender=GMAIL_USER, to="pat@patient.example", subject="via client")
    sent = (
        gmail.users()
        .messages()
        .send(userId="me", body={"raw": base64.urlsafe_b64encode(outgoing).decode()})
        .execute()
    )
    media = MediaIoBaseUpload(io.BytesIO(outgoing), mimetype="message/rfc822", resumable=False)
    uploaded = gmail.users().messages().send(userId="me", body={}, media_body=media).execute()
    resumable = MediaIoBaseUpload(io.BytesIO(outgoing), mimetype="message/rfc822", resumable=True)
    uploaded_resumable = (
        gmail.users().messages().send(userId="me", body={}, media_body=resumable).execute()
    )
    box = state.gmail.mailboxes[GMAIL_USER]
    assert [item[0] for item in box.sent_log] == [
        sent["id"],
        uploaded["id"],
        uploaded_resumable["id"],
    ]
    assert all(raw_sent == outgoing for _, raw_sent in box.sent_log)
