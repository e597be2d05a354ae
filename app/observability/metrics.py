"""Prometheus metrics. Labels are providers, statuses, types and account ids: never
addresses, subjects or anything else from a message.

Counters are fed where things happen (provider calls and throttling waits through the
provider client's listeners, messages synced by the sync service); gauges that describe
the whole service (queue depth, sync lag, emails by status, tracking events) are read
from PostgreSQL at scrape time through id/count-only functions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession

from app.observability import repository
from app.providers import http as provider_http

REGISTRY = CollectorRegistry()

PROVIDER_CALLS = Counter(
    "ce_email_provider_calls_total",
    "HTTP calls to mail providers",
    ["provider", "status"],
    registry=REGISTRY,
)
THROTTLE_WAITS = Counter(
    "ce_email_provider_throttle_waits_total",
    "Backoff or Retry-After waits before a retry",
    ["provider"],
    registry=REGISTRY,
)
THROTTLE_SECONDS = Counter(
    "ce_email_provider_throttle_wait_seconds_total",
    "Seconds spent waiting to retry",
    ["provider"],
    registry=REGISTRY,
)
MESSAGES_SYNCED = Counter(
    "ce_email_messages_synced_total",
    "Messages stored by sync",
    ["provider"],
    registry=REGISTRY,
)
PUSH_REARMED = Counter(
    "ce_email_push_rearmed_total",
    "Push channels registered again because push was silent",
    ["provider"],
    registry=REGISTRY,
)
TRACKING_OPENS_DROPPED = Counter(
    "ce_email_tracking_opens_dropped_total",
    "Opens dropped because the database stayed unreachable and the hold was full",
    registry=REGISTRY,
)
RECONCILE_MISSING = Counter(
    "ce_email_reconcile_missing_total",
    "Messages the provider had but the change feed never delivered, found and stored by "
    "reconciliation",
    ["provider"],
    registry=REGISTRY,
)
RECONCILE_STALE = Counter(
    "ce_email_reconcile_stale_removed_total",
    "Stored messages the provider no longer had, removed by reconciliation",
    ["provider"],
    registry=REGISTRY,
)
SYNC_LAG = Gauge(
    "ce_email_sync_lag_seconds",
    "Seconds since the account last synced",
    ["account_id", "provider", "status"],
    registry=REGISTRY,
)
RECONCILE_AGE = Gauge(
    "ce_email_reconcile_age_seconds",
    "Seconds since the mailbox was last verified complete by reconciliation",
    ["account_id"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "ce_email_queue_depth",
    "Jobs waiting or running",
    ["queue", "status"],
    registry=REGISTRY,
)
EMAILS = Gauge(
    "ce_email_emails",
    "Stored emails by direction and status (sends by status: outbound)",
    ["direction", "status"],
    registry=REGISTRY,
)
TRACKING_EVENTS = Gauge(
    "ce_email_tracking_events",
    "Tracking events recorded, by type",
    ["type"],
    registry=REGISTRY,
)


def _on_call(provider: str, kind: str, status: str) -> None:
    if kind == "http":
        PROVIDER_CALLS.labels(provider, status).inc()


def _on_wait(provider: str, seconds: float) -> None:
    THROTTLE_WAITS.labels(provider).inc()
    THROTTLE_SECONDS.labels(provider).inc(seconds)


_installed = False


def install() -> None:
    """Hook the counters to the provider client (once per process)."""
    global _installed
    if _installed:
        return
    provider_http.CALLS.add_listener(_on_call)
    provider_http.THROTTLE_LISTENERS.append(_on_wait)
    _installed = True


async def render(session: AsyncSession) -> bytes:
    """The exposition, with the whole-service gauges read in the caller's transaction."""
    lag = await repository.sync_lag(session)
    queue = await repository.queue_depth(session)
    emails = await repository.email_counts(session)
    events = await repository.tracking_counts(session)
    verified = await repository.reconcile_age(session)
    for gauge in (SYNC_LAG, QUEUE_DEPTH, EMAILS, TRACKING_EVENTS, RECONCILE_AGE):
        gauge.clear()
    for account in lag:
        SYNC_LAG.labels(str(account.account_id), account.provider, account.status).set(
            account.lag_seconds
        )
    for mailbox in verified:
        RECONCILE_AGE.labels(str(mailbox.account_id)).set(mailbox.age_seconds)
    for jobs in queue:
        QUEUE_DEPTH.labels(jobs.queue_name, jobs.status).set(jobs.total)
    for emails_of in emails:
        EMAILS.labels(emails_of.direction, emails_of.status).set(emails_of.total)
    for tracked in events:
        TRACKING_EVENTS.labels(tracked.type).set(tracked.total)
    return generate_latest(REGISTRY)
