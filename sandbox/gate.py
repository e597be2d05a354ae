"""The door every Gmail / Graph API call goes through.

In order: the bearer token (401), the counters, the concurrency cap (Graph, optionally
Gmail), the injected faults that apply to any call, the Gmail per-user quota, latency.
Faults specific to one endpoint (`expire_cursor`, `delete_before_get`, `duplicate_page`)
are taken by that endpoint with `ApiCall.take_fault`; `skip_changes` and `drop_push` by the
state, when a message arrives and when a push is due.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request

from sandbox.errors import (
    SandboxError,
    google_error,
    google_unauthenticated,
    graph_error,
    graph_unauthenticated,
)
from sandbox.model import Fault, Mailbox, Provider, Token, graph_user_id
from sandbox.state import ProviderState, SandboxState

GRAPH_USER_SCOPE_KEY = "sandbox_graph_user"
"""Set by the path normaliser when a Graph call used `/users/{id}` instead of `/me`."""


def get_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def bearer(request: Request) -> str | None:
    return bearer_of(request.headers.get("authorization", ""))


def bearer_of(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def format_retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


@dataclass(slots=True)
class ApiCall:
    state: SandboxState
    provider: Provider
    mailbox: Mailbox
    token: Token

    @property
    def pstate(self) -> ProviderState:
        return self.state.provider(self.provider)

    def take_fault(self, kind: str) -> Fault | None:
        return self.pstate.take_fault(kind, self.mailbox.address)


async def open_call(
    request: Request, provider: Provider, units: int, *, user_id: str | None = None
) -> ApiCall:
    """Authenticate and admit one API call; the caller must `close_call` it afterwards."""
    return await admit_call(
        get_state(request),
        provider,
        bearer(request),
        units,
        user_id=user_id,
        graph_user=request.scope.get(GRAPH_USER_SCOPE_KEY),
    )


async def admit_call(
    state: SandboxState,
    provider: Provider,
    access_token: str | None,
    units: int,
    *,
    user_id: str | None = None,
    graph_user: str | None = None,
) -> ApiCall:
    """`open_call` without a request: what the Gmail batch endpoint uses for its inner
    calls, so each is authenticated, counted, throttled and faulted like a direct one."""
    pstate = state.provider(provider)
    value = access_token
    token = state.access_token(provider, value) if value else None
    if token is None:
        if provider == "gmail":
            raise google_unauthenticated()
        raise graph_unauthenticated(
            "Access token has expired or is not yet valid." if value else "Access token is empty."
        )
    box = pstate.require_mailbox(token.grant.mailbox)
    _check_user(provider, box, user_id, graph_user)

    stats = box.stats
    stats.calls += 1
    stats.in_flight += 1
    stats.max_concurrency = max(stats.max_concurrency, stats.in_flight)
    call = ApiCall(state, provider, box, token)
    try:
        _check_concurrency(state, call)
        await _apply_faults(call)
        if provider == "gmail":
            _charge_quota(state, box, units)
        if state.latency_seconds > 0:
            await asyncio.sleep(state.latency_seconds)
    except BaseException:
        stats.in_flight -= 1
        raise
    return call


def close_call(call: ApiCall) -> None:
    call.mailbox.stats.in_flight -= 1


def gmail_api(units: int) -> Callable[..., AsyncIterator[ApiCall]]:
    """Dependency for one Gmail method costing `units` quota units."""

    async def dependency(request: Request, userId: str) -> AsyncIterator[ApiCall]:
        call = await open_call(request, "gmail", units, user_id=userId)
        try:
            yield call
        finally:
            close_call(call)

    return dependency


async def graph_api(request: Request) -> AsyncIterator[ApiCall]:
    """Dependency for one Graph call."""
    call = await open_call(request, "outlook", 1)
    try:
        yield call
    finally:
        close_call(call)


# --------------------------------------------------------------------------- steps


def _check_user(provider: Provider, box: Mailbox, user_id: str | None, named: str | None) -> None:
    if provider == "gmail":
        if user_id is not None and user_id != "me" and user_id.lower() != box.address:
            raise google_error(403, f"Delegation denied for {box.address}", "forbidden")
        return
    if named and named.lower() not in (box.address, graph_user_id(box.address)):
        raise graph_error(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )


def _check_concurrency(state: SandboxState, call: ApiCall) -> None:
    stats = call.mailbox.stats
    if call.provider == "outlook":
        limit: int | None = state.require_config().graph_max_concurrency
    else:
        limit = state.gmail_max_concurrency
    if limit is None or stats.in_flight <= limit:
        return
    stats.concurrency_violations += 1
    if call.provider == "outlook":
        raise graph_error(
            429,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
            headers={"Retry-After": "1"},
        )
    raise google_error(
        429, "Too many concurrent requests for user", "rateLimitExceeded", domain="usageLimits"
    )


async def _apply_faults(call: ApiCall) -> None:
    if call.take_fault("expire_access_token"):
        call.token.dead = True
        if call.provider == "gmail":
            raise google_unauthenticated()
        raise graph_unauthenticated("Lifetime validation failed, the token is expired.")
    fault = call.take_fault("rate_limit")
    if fault:
        raise _rate_limited(call.provider, fault)
    fault = call.take_fault("server_error")
    if fault:
        if call.provider == "gmail":
            raise google_error(503, "The service is currently unavailable.", "backendError")
        raise graph_error(
            503,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please try again later.",
            headers={"Retry-After": format_retry_after(fault.retry_after)},
        )
    fault = call.take_fault("slow")
    if fault:
        await asyncio.sleep(fault.seconds)


def _rate_limited(provider: Provider, fault: Fault) -> SandboxError:
    if provider == "outlook":
        return graph_error(
            429,
            "TooManyRequests",
            "Please retry again later.",
            headers={"Retry-After": format_retry_after(fault.retry_after)},
        )
    if fault.fired % 2 == 1:
        return google_error(
            429,
            "Too many concurrent requests for user",
            "rateLimitExceeded",
            domain="usageLimits",
        )
    return google_error(
        403, "User Rate Limit Exceeded", "userRateLimitExceeded", domain="usageLimits"
    )


def _charge_quota(state: SandboxState, box: Mailbox, units: int) -> None:
    """Gmail per-user quota units over a sliding minute."""
    stats = box.stats
    now = state.clock()
    while stats.window and stats.window[0][0] <= now - 60:
        stats.window_units -= stats.window.popleft()[1]
    limit = state.require_config().gmail_units_per_minute
    if stats.window_units + units > limit:
        stats.quota_violations += 1
        retry_at = datetime.fromtimestamp(stats.window[0][0] + 60, UTC) if stats.window else None
        when = (retry_at or datetime.now(UTC) + timedelta(seconds=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        raise google_error(
            429,
            f"User-rate limit exceeded.  Retry after {when}",
            "rateLimitExceeded",
            domain="usageLimits",
        )
    stats.window.append((now, units))
    stats.window_units += units
    stats.quota_units += units


def query_list(request: Request, name: str) -> list[str]:
    """A repeated query parameter (`labelIds=A&labelIds=B`), ignoring empties."""
    return [v for v in request.query_params.getlist(name) if v]
