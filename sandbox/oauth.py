"""Fake Google OAuth 2.0 and Microsoft identity platform v2 (authorization code + PKCE).

The sandbox behaves like a provider with exactly one registered app: the configured client
id / secret and the redirect URI `{PUBLIC_BASE_URL}/v1/oauth/{p}/callback`. Consent is
given at once (or refused with `sandbox_deny=1`); the mailbox is `login_hint`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sandbox.errors import SandboxError, aad_error, google_token_error
from sandbox.gate import get_state
from sandbox.model import (
    AUTH_CODE_LIFETIME_SECONDS,
    DEFAULT_MAILBOX,
    PROVIDERS,
    AuthCode,
    Grant,
    Provider,
    Token,
    graph_user_id,
)
from sandbox.state import SandboxState

router = APIRouter()

_PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_GOOGLE_SCOPE_ALIASES = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}


def provider_of(name: str) -> Provider:
    for provider in PROVIDERS:
        if provider == name:
            return provider
    raise SandboxError(404, {"detail": "Not Found"})


def _client(state: SandboxState, provider: Provider) -> tuple[str, str]:
    config = state.require_config()
    client = config.gmail_client if provider == "gmail" else config.outlook_client
    return client.client_id, client.client_secret


def registered_redirect_uri(state: SandboxState, provider: Provider) -> str:
    return state.require_config().redirect_uri(provider)


def _error_page(title: str, detail: str) -> HTMLResponse:
    """What a browser shows when the request cannot be sent back to the app."""
    body = (
        "<!doctype html><html><head><title>Sandbox sign-in error</title></head><body>"
        f"<h1>Error 400: {html.escape(title)}</h1><p>{html.escape(detail)}</p>"
        "<p>(ce-email provider sandbox)</p></body></html>"
    )
    return HTMLResponse(body, status_code=400)


# --------------------------------------------------------------------------- authorize


@router.get("/{provider}/oauth/authorize")
async def authorize(request: Request, provider: str) -> Response:
    p = provider_of(provider)
    state = get_state(request)
    q = request.query_params
    client_id, _ = _client(state, p)
    if q.get("client_id") != client_id:
        return _error_page("invalid_client", "The OAuth client was not found.")
    redirect_uri = q.get("redirect_uri", "")
    if redirect_uri != registered_redirect_uri(state, p):
        return _error_page(
            "redirect_uri_mismatch",
            "The redirect URI in the request does not match the ones authorized for the client.",
        )

    def back(**params: str) -> RedirectResponse:
        if q.get("state") is not None:
            params["state"] = q["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + separator + urllib.parse.urlencode(params), 302)

    if q.get("response_type") != "code":
        return back(error="unsupported_response_type", error_description="response_type=code")
    if not q.get("scope"):
        return back(error="invalid_request", error_description="Missing required parameter: scope")
    challenge = q.get("code_challenge", "")
    if not _PKCE_CHALLENGE.fullmatch(challenge):
        return back(error="invalid_request", error_description="code_challenge is required (PKCE)")
    if q.get("code_challenge_method") != "S256":
        return back(error="invalid_request", error_description="code_challenge_method must be S256")
    if p == "outlook" and q.get("response_mode", "query") != "query":
        return back(error="invalid_request", error_description="only response_mode=query")
    if q.get("sandbox_deny") == "1":
        if p == "outlook":
            return back(
                error="access_denied",
                error_description="AADSTS65004: User declined to consent to access the app.",
            )
        return back(error="access_denied")

    hint = (q.get("login_hint") or "").strip().lower()
    mailbox = hint if re.fullmatch(r"[^@\s]+@[^@\s]+", hint) else DEFAULT_MAILBOX[p]
    pstate = state.provider(p)
    pstate.require_mailbox(mailbox)
    scope = q["scope"]
    offline = (
        q.get("access_type") == "offline" if p == "gmail" else ("offline_access" in scope.split())
    )
    code = ("4/0" if p == "gmail" else "0.A") + secrets.token_urlsafe(40)
    pstate.codes[code] = AuthCode(
        code=code,
        mailbox=mailbox,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        code_challenge=challenge,
        issued_at=state.clock(),
        offline=offline,
    )
    if p == "gmail":
        return back(code=code, scope=_google_scope(scope), authuser="0", prompt="consent")
    return back(code=code, session_state=str(uuid.uuid4()))


def _google_scope(scope: str) -> str:
    return " ".join(_GOOGLE_SCOPE_ALIASES.get(s, s) for s in scope.split())


# --------------------------------------------------------------------------- token


def parse_form(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            decoded = ":"
        user, _, password = decoded.partition(":")
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)
    return form.get("client_id", ""), form.get("client_secret", "")


def _token_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post("/{provider}/oauth/token")
async def token(request: Request, provider: str) -> Response:
    p = provider_of(provider)
    state = get_state(request)
    form = parse_form(await request.body())
    client_id, client_secret = _client(state, p)
    given_id, given_secret = _client_credentials(request, form)
    if given_id != client_id:
        if p == "gmail":
            raise google_token_error(401, "invalid_client", "The OAuth client was not found.")
        raise aad_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{given_id}' was not found in the directory.",
        )
    if not secrets.compare_digest(given_secret.encode(), client_secret.encode()):
        if p == "gmail":
            raise google_token_error(401, "invalid_client", "Unauthorized")
        raise aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    if p == "outlook" and not form.get("scope"):
        raise aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        return _exchange_code(state, p, form)
    if grant_type == "refresh_token":
        return _refresh(state, p, form)
    if p == "gmail":
        raise google_token_error(
            400, "unsupported_grant_type", "Invalid grant_type: " + str(grant_type)
        )
    raise aad_error(
        400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
    )


def _exchange_code(state: SandboxState, p: Provider, form: dict[str, str]) -> Response:
    pstate = state.provider(p)
    code = pstate.codes.get(form.get("code", ""))
    if code is None:
        raise _bad_grant(
            p, "Malformed auth code.", 9002313, "Invalid request. Request is malformed or invalid."
        )
    if code.used:
        raise _bad_grant(
            p,
            "Bad Request",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid "
            "code or use an existing refresh token.",
        )
    if state.clock() - code.issued_at > AUTH_CODE_LIFETIME_SECONDS:
        raise _bad_grant(
            p,
            "Bad Request",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. "
            "Send a new interactive authorization request for this user and resource.",
        )
    if form.get("redirect_uri") != code.redirect_uri:
        if p == "gmail":
            raise google_token_error(400, "redirect_uri_mismatch", "Bad Request")
        raise aad_error(
            400,
            "invalid_grant",
            50011,
            "The redirect URI specified in the request does not match the redirect URI "
            "used to obtain the authorization code.",
        )
    verifier = form.get("code_verifier")
    if not verifier:
        if p == "gmail":
            raise google_token_error(400, "invalid_grant", "Missing code verifier.")
        raise aad_error(
            400,
            "invalid_request",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the "
            "authorization request.",
        )
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    if not secrets.compare_digest(computed.decode(), code.code_challenge):
        if p == "gmail":
            raise google_token_error(400, "invalid_grant", "Invalid code verifier.")
        raise aad_error(
            400,
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the "
            "authorization request.",
        )
    code.used = True
    scope = code.scope if p == "gmail" else form["scope"]
    grant = Grant(
        id=secrets.token_hex(8),
        provider=p,
        mailbox=code.mailbox,
        client_id=code.client_id,
        scope=scope,
    )
    access = state.issue_token(grant, "access")
    refresh = state.issue_token(grant, "refresh") if code.offline else None
    return _token_response(_token_body(state, p, grant, access, refresh))


def _refresh(state: SandboxState, p: Provider, form: dict[str, str]) -> Response:
    pstate = state.provider(p)
    old = pstate.tokens.get(form.get("refresh_token", ""))
    if old is not None and old.kind == "refresh":
        if pstate.take_fault("revoke_refresh_token", old.grant.mailbox):
            for token in pstate.tokens.values():
                if token.grant.mailbox == old.grant.mailbox:
                    token.grant.refresh_revoked = True
    valid = (
        old is not None
        and old.kind == "refresh"
        and not old.dead
        and not old.grant.revoked
        and not old.grant.refresh_revoked
    )
    if not valid or old is None:
        issued = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        raise _bad_grant(
            p,
            "Token has been expired or revoked.",
            700082,
            f"The refresh token has expired due to inactivity. The token was issued on {issued} "
            "and was inactive for 90.00:00:00.",
        )
    grant = old.grant
    if p == "outlook":
        grant.scope = form["scope"]
    access = state.issue_token(grant, "access")
    refresh: Token | None = None
    if p == "outlook":  # Microsoft rotates; the old one keeps working unless the knob says no
        refresh = state.issue_token(grant, "refresh")
        if not state.outlook_old_refresh_tokens_valid:
            old.dead = True
    return _token_response(_token_body(state, p, grant, access, refresh))


def _bad_grant(p: Provider, google_text: str, aadsts: int, aad_text: str) -> SandboxError:
    if p == "gmail":
        return google_token_error(400, "invalid_grant", google_text)
    return aad_error(400, "invalid_grant", aadsts, aad_text)


def _token_body(
    state: SandboxState, p: Provider, grant: Grant, access: Token, refresh: Token | None
) -> dict[str, Any]:
    scopes = grant.scope.split()
    body: dict[str, Any] = {"access_token": access.value, "expires_in": state.access_token_lifetime}
    if p == "gmail":
        body.update(token_type="Bearer", scope=_google_scope(grant.scope))
    else:
        body.update(
            token_type="Bearer",
            scope=" ".join(s for s in scopes if s != "offline_access"),
            ext_expires_in=state.access_token_lifetime,
        )
    if refresh is not None:
        body["refresh_token"] = refresh.value
    if "openid" in scopes:
        body["id_token"] = _id_token(state, p, grant)
    return body


def _id_token(state: SandboxState, p: Provider, grant: Grant) -> str:
    """A JWT-shaped id_token (unsigned: clients read claims, the sandbox has no keys)."""
    now = int(state.clock())
    if p == "gmail":
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": grant.client_id,
            "sub": str(int(hashlib.sha256(grant.mailbox.encode()).hexdigest()[:15], 16)),
            "email": grant.mailbox,
            "email_verified": True,
        }
    else:
        claims = {
            "iss": f"https://login.microsoftonline.com/{state.tenant_id}/v2.0",
            "aud": grant.client_id,
            "tid": state.tenant_id,
            "oid": graph_user_id(grant.mailbox),
            "sub": graph_user_id(grant.mailbox),
            "preferred_username": grant.mailbox,
            "email": grant.mailbox,
            "name": display_name(grant.mailbox),
        }
    claims.update(iat=now, exp=now + 3600)

    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    header = {"alg": "RS256", "kid": "sandbox", "typ": "JWT"}
    return f"{segment(header)}.{segment(claims)}.{secrets.token_urlsafe(32)}"


def display_name(address: str) -> str:
    local = address.split("@", 1)[0]
    return " ".join(w.capitalize() for w in re.split(r"[._\-+]+", local) if w) or address


# --------------------------------------------------------------------------- revoke (Google)


@router.post("/gmail/oauth/revoke")
async def revoke(request: Request) -> Response:
    state = get_state(request)
    value = request.query_params.get("token") or parse_form(await request.body()).get("token", "")
    token = state.gmail.tokens.get(value)
    if token is None or token.dead or token.grant.revoked:
        raise google_token_error(400, "invalid_token", "Token expired or revoked")
    token.grant.revoked = True  # the whole grant: its refresh token and every access token
    return Response(status_code=200, media_type="application/json", content=b"{}")
