"""Sending mail from the CRM, the job: one attempt at sending a queued email.

An attempt builds the RFC 822 message (tracking applied to the HTML first), sends it
through the provider driver and records the outcome: `sent` with the provider's ids and
`ce.email.synced` on NOTIFY in one transaction, or `failed` with a content-free
`send_error`. An attempt that cannot finish now raises `RetrySend`: the job queue owns
retries (app/send/jobs.py runs the same job again after `RetrySend.delay`, and any other
exception escaping an attempt is retried there too), up to `MAX_ATTEMPTS`.

The send job is a unit-of-work edge: it opens its own short transactions (load and lock
the row, record the outcome) and holds none across a provider call.

Double sends. Errors that say the provider did not take the message (429, 503, errors
before the send call) are retried as they are. An error after which the message may have
gone out (a timeout or dropped connection on the send itself, a worker that died during
the call) is *uncertain*: the retry waits at least `SENT_COPY_GRACE_SECONDS`. Every rerun
of a job (attempt > 1) first looks for the message in the mailbox's Sent folder, by our
Message-ID or, on Graph which assigns its own Message-ID, by the `X-CE-Message-ID`
header; found, it is recorded as sent and not sent again. Only a copy that the provider
files later than that grace can still lead to a second send (at-least-once in that
narrow case, never silently lost). A row the Sent-folder sync has already completed
(Gmail keeps our Message-ID) is never resent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.config import Settings
from app.context import ServiceContext
from app.db.rls import org_transaction
from app.events import publish, synced_payload
from app.jobs.queue import QUEUE_PRIORITY, enqueue
from app.messages.mime import normalise_message_id
from app.messages.repository import reads as messages_reads
from app.platform.documents import document_storage
from app.providers import errors as provider_errors
from app.providers.base import MailProvider, OutgoingMessage, SentMessage
from app.providers.failures import Outcome, mailbox_action, may_have_been_processed
from app.send import repository
from app.send.compose import Composition, Mailbox, OutgoingAttachment, build_message
from app.send.replies import Threading, complete_references, reply_threading
from app.send.repository import AttachmentToSend, OutboundEmail, People
from app.send.sent_copy import find_sent_copy
from app.settings.service import get_module_settings
from app.tracking.instrument import instrument_html, tracking_base_url

logger = logging.getLogger(__name__)

SEND_TASK = "ce:send_email"
MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 30 * 60.0
SENT_COPY_GRACE_SECONDS = 120.0
"""How long after an uncertain attempt the next one runs (and looks in the Sent folder)."""
SENT_LOOKUP_SLACK = timedelta(minutes=10)
"""The Sent folder is searched from the row's creation minus this (clock skew)."""


@dataclass(frozen=True)
class SendJob:
    """The send job's arguments (ids and flags only)."""

    org_id: UUID
    email_id: UUID
    reply_to_email_id: UUID | None = None
    track_opens: bool = False
    track_clicks: bool = False

    def args(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("org_id", "email_id", "reply_to_email_id"):
            if values[name] is not None:
                values[name] = str(values[name])
        return values


async def enqueue_send(session: AsyncSession, job: SendJob) -> int | None:
    """One send job per email at a time (lock), none waiting twice (queueing lock)."""
    return await enqueue(
        session,
        SEND_TASK,
        job.args(),
        queue=QUEUE_PRIORITY,
        lock=f"send:{job.email_id}",
        queueing_lock=f"send:{job.email_id}",
    )


# --- retries --------------------------------------------------------------------------


def retry_delay(attempt: int, retry_after: float | None = None, *, uncertain: bool) -> float:
    """Seconds before the attempt after `attempt`: exponential backoff with a cap, at
    least the provider's Retry-After, and at least the Sent-folder grace when this
    attempt may have sent."""
    backoff = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** max(0, attempt - 1))
    delay = max(backoff, retry_after or 0.0)
    return max(delay, SENT_COPY_GRACE_SECONDS) if uncertain else delay


class RetrySend(Exception):
    """This attempt did not finish the send: the job queue runs the job again in `delay`
    seconds. The message says only what kind of failure it was."""

    def __init__(self, delay: float, kind: str) -> None:
        super().__init__(f"send to be retried ({kind})")
        self.delay = delay
        self.kind = kind


class _PermanentFailure(Exception):
    """The send cannot succeed as it is: the row becomes `failed` with this code."""

    def __init__(self, code: str, explanation: str) -> None:
        super().__init__(code)
        self.code = code
        self.explanation = explanation

    @property
    def send_error(self) -> str:
        return f"{self.code}: {self.explanation}"


def _provider_failure(exc: provider_errors.ProviderError) -> _PermanentFailure:
    detail = []
    if exc.status is not None:
        detail.append(f"status {exc.status}")
    if exc.code:
        detail.append(f"code {exc.code}")
    suffix = f" ({', '.join(detail)})" if detail else ""
    if isinstance(exc, provider_errors.MessageTooLarge):
        return _PermanentFailure("message_too_large", f"the provider refused the size{suffix}")
    if isinstance(exc, provider_errors.AuthRevoked):
        return _PermanentFailure("auth_revoked", "the mailbox must be connected again")
    if isinstance(exc, provider_errors.NotFound):
        return _PermanentFailure("not_found", f"the provider did not find a resource{suffix}")
    return _PermanentFailure("rejected", f"the provider rejected the message{suffix}")


# --- recording the outcome --------------------------------------------------------------


async def _record_sent(
    session: AsyncSession, org_id: UUID, row: OutboundEmail, sent: SentMessage
) -> None:
    """Status sent, the provider's ids, and ce.email.synced, in the caller's transaction."""
    occurred_at = await repository.mark_sent(
        session,
        email_id=row.id,
        account_id=row.account_id,
        provider_message_id=sent.provider_message_id,
        provider_thread_id=sent.thread_id,
        internet_message_id=normalise_message_id(sent.internet_message_id),
        sent_at=datetime.now(UTC),
    )
    await _announce(session, org_id, row, occurred_at)


async def _announce(
    session: AsyncSession, org_id: UUID, row: OutboundEmail, occurred_at: datetime
) -> None:
    links = await messages_reads.email_links(session, [row.id])
    await publish(
        session,
        synced_payload(
            org_id=org_id,
            email_id=row.id,
            account_id=row.account_id,
            direction="outbound",
            occurred_at=occurred_at,
            contact_ids=[link.contact_id for link in links if link.contact_id],
            partner_ids=[link.partner_id for link in links if link.partner_id],
        ),
    )


async def _finish_sent(
    ctx: ServiceContext, job: SendJob, row: OutboundEmail, sent: SentMessage
) -> None:
    """Own transaction: record the send as done (see `_record_sent`)."""
    async with org_transaction(ctx.engine, job.org_id) as session:
        await _record_sent(session, job.org_id, row, sent)


async def _fail(
    ctx: ServiceContext, job: SendJob, failure: _PermanentFailure, attempt: int
) -> Literal["failed"]:
    """Own transaction: the row becomes `failed` with the failure's content-free code."""
    async with org_transaction(ctx.engine, job.org_id) as session:
        await repository.mark_failed(session, job.email_id, failure.send_error)
    logger.warning(
        "send failed",
        extra={"email_id": str(job.email_id), "error_code": failure.code, "attempt": attempt},
    )
    return "failed"


async def _grant_refused(ctx: ServiceContext, job: SendJob, account_id: UUID) -> bool:
    """Own transaction: whether the mailbox is known to need re-consent (a 401 alone does
    not say so: the grant may still be good, see `mailbox_action`)."""
    async with org_transaction(ctx.engine, job.org_id) as session:
        account = await accounts_repository.get_account(session, account_id)
    return account is None or account.status in accounts_repository.INACTIVE


async def _act_on_provider_error(
    ctx: ServiceContext,
    job: SendJob,
    account_id: UUID,
    exc: provider_errors.ProviderError,
    attempt: int,
    *,
    uncertain: bool,
) -> Literal["failed"]:
    """What the failure means for the mailbox (`mailbox_action`, shared with sync and
    token refresh), applied to this send: retry through the job queue, or fail it."""
    grant_refused = isinstance(exc, provider_errors.AuthRevoked) and await _grant_refused(
        ctx, job, account_id
    )
    action = mailbox_action(exc, grant_refused=grant_refused)
    if action.outcome is not Outcome.RETRY:
        return await _fail(ctx, job, _provider_failure(exc), attempt)
    kind = (
        "rate"
        if isinstance(exc, provider_errors.RateLimited)
        else "auth"
        if isinstance(exc, provider_errors.AuthRevoked)
        else "temporary"
    )
    return await _retry_or_fail(
        ctx, job, attempt, uncertain=uncertain, retry_after=action.retry_after, kind=kind
    )


async def _retry_or_fail(
    ctx: ServiceContext,
    job: SendJob,
    attempt: int,
    *,
    uncertain: bool,
    retry_after: float | None,
    kind: str,
) -> Literal["failed"]:
    """Raise `RetrySend` for the job queue, or fail the send after its last attempt."""
    if attempt >= MAX_ATTEMPTS:
        failure = _PermanentFailure(
            "provider_unavailable", f"no success after {attempt} attempts ({kind})"
        )
        return await _fail(ctx, job, failure, attempt)
    delay = retry_delay(attempt, retry_after, uncertain=uncertain)
    logger.info(
        "send retry scheduled",
        extra={
            "email_id": str(job.email_id),
            "attempt": attempt,
            "retry_after": delay,
            "error_type": kind,
        },
    )
    raise RetrySend(delay, kind)


# --- one attempt ------------------------------------------------------------------------


@dataclass
class _Loaded:
    row: OutboundEmail
    html: str | None
    """The HTML to send: the stored body with the tracking pixel and links."""
    attachments: list[AttachmentToSend]
    threading: Threading


async def _load(
    ctx: ServiceContext, job: SendJob, *, uncertain: bool
) -> _Loaded | Literal["skipped", "found", "failed"]:
    """Own transaction: the queued row to send, locked, with its attachments, threading
    and tracked HTML; or what became of it (`skipped`, `found`, `failed`)."""
    async with org_transaction(ctx.engine, job.org_id) as session:
        row = await repository.lock_outbound(session, job.email_id)
        if row is None:
            return "skipped"
        if row.status == "sent" and uncertain and row.provider_message_id:
            # The Sent-folder sync completed our row after an attempt whose outcome this
            # job never saw, so nobody announced it. (Should the attempt have recorded
            # it after all and only the job's own bookkeeping been lost, this announces
            # it a second time: the event is at-least-once, consumers key on email_id.)
            await _announce(session, job.org_id, row, row.occurred_at)
            return "found"
        if row.status != "queued":
            return "skipped"
        if row.provider_message_id:
            # the Sent-folder sync found our copy: an earlier attempt went out
            found = SentMessage(row.provider_message_id, row.provider_thread_id, None)
            await _record_sent(session, job.org_id, row, found)
            return "found"
        if row.account_status not in repository.SENDABLE_ACCOUNT_STATUSES:
            failure = _PermanentFailure("account_unavailable", "the mailbox is not connected")
            await repository.mark_failed(session, row.id, failure.send_error)
            return "failed"
        attachments = await repository.attachments_to_send(session, row.id)
        threading = await reply_threading(session, row.account_id, job.reply_to_email_id)
        html = row.html_body
        if html and (job.track_opens or job.track_clicks):
            module_settings = await get_module_settings(session)
            if module_settings.email_tracking_enabled:
                html = await instrument_html(
                    session,
                    org_id=job.org_id,
                    email_id=job.email_id,
                    html=html,
                    track_opens=job.track_opens,
                    track_clicks=job.track_clicks,
                    base_url=tracking_base_url(ctx.settings, module_settings),
                    token_secret=ctx.settings.tracking_token_secret.get_secret_value(),
                )
    return _Loaded(row, html, attachments, threading)


async def _read_attachments(
    settings: Settings, rows: Sequence[AttachmentToSend]
) -> list[OutgoingAttachment]:
    storage = document_storage(settings)

    def read_all() -> list[OutgoingAttachment]:
        out = []
        for a in rows:
            if not a.storage_key:
                raise _PermanentFailure("attachment_unavailable", "a document was deleted")
            try:
                content = storage.get(a.storage_key)
            except (OSError, ValueError):
                raise _PermanentFailure(
                    "attachment_unavailable", "a document's content is missing"
                ) from None
            out.append(
                OutgoingAttachment(
                    filename=a.filename or "attachment",
                    content_type=a.content_type or "application/octet-stream",
                    content=content,
                )
            )
        return out

    return await asyncio.to_thread(read_all)


def _mailboxes(people: People) -> list[Mailbox]:
    return [
        Mailbox(address=str(p["address"]), name=p.get("name"))
        for p in people
        if isinstance(p, dict) and p.get("address")
    ]


async def _compose(settings: Settings, loaded: _Loaded) -> bytes:
    row = loaded.row
    attachments = await _read_attachments(settings, loaded.attachments)
    composition = Composition(
        sender=Mailbox(address=row.account_address, name=row.account_name),
        to=_mailboxes(row.to_recipients),
        cc=_mailboxes(row.cc_recipients),
        bcc=_mailboxes(row.bcc_recipients),
        subject=row.subject or "",
        text=row.text_body,
        html=loaded.html,
        message_id=row.internet_message_id,
        date=datetime.now(UTC),
        in_reply_to=loaded.threading.in_reply_to,
        references=loaded.threading.references,
        attachments=attachments,
    )
    try:
        return await asyncio.to_thread(build_message, composition)
    except (ValueError, TypeError) as exc:
        raise _PermanentFailure(
            "invalid_message", f"the message could not be built ({type(exc).__name__})"
        ) from None


async def _send(provider: MailProvider, mime: bytes, threading: Threading) -> SentMessage:
    try:
        return await provider.send(
            OutgoingMessage(
                mime,
                thread_id=threading.thread_id,
                reply_to_provider_id=threading.reply_to_provider_id,
            )
        )
    except provider_errors.NotFound:
        if not threading.thread_id:
            raise
        # Gmail: the thread is gone (404 = not processed); send it unthreaded
        return await provider.send(OutgoingMessage(mime))


async def run_send_job(ctx: ServiceContext, job: SendJob, *, attempt: int = 1) -> str:
    """Run attempt `attempt` of a send. Returns what happened: `sent`, `found` (an earlier
    attempt's copy was in Sent), `failed` or `skipped` (nothing to send); raises
    `RetrySend` when the job queue should run it again."""
    # A job that ran before and did not finish (it raised, or its worker died): that
    # attempt may have gone out.
    uncertain = attempt > 1
    log = {"email_id": str(job.email_id), "org_id": str(job.org_id), "attempt": attempt}
    loaded = await _load(ctx, job, uncertain=uncertain)
    if isinstance(loaded, str):
        return loaded
    row = loaded.row
    provider = ctx.account_provider(row.provider, job.org_id, row.account_id)
    log["provider"] = row.provider

    # Until provider.send is called nothing can have gone out: no error here makes the
    # send uncertain (a rerun stays as uncertain as it was).
    try:
        if uncertain:
            since = row.created_at - SENT_LOOKUP_SLACK
            found = await find_sent_copy(provider, row.internet_message_id, since)
            if found is not None:
                await _finish_sent(ctx, job, row, found)
                logger.info("earlier send attempt found in Sent", extra=log)
                return "found"
        await complete_references(provider, loaded.threading)
        mime = await _compose(ctx.settings, loaded)
    except _PermanentFailure as failure:
        return await _fail(ctx, job, failure, attempt)
    except provider_errors.ProviderError as exc:
        return await _act_on_provider_error(
            ctx, job, row.account_id, exc, attempt, uncertain=uncertain
        )

    try:
        sent = await _send(provider, mime, loaded.threading)
    except provider_errors.ProviderError as exc:
        # Only an unavailable provider may have taken the message anyway (a timeout or a
        # dropped connection can hide a success); throttling and refusals say it did not.
        maybe_sent = isinstance(
            exc, provider_errors.ProviderUnavailable
        ) and may_have_been_processed(exc)
        return await _act_on_provider_error(
            ctx, job, row.account_id, exc, attempt, uncertain=maybe_sent
        )
    except Exception as exc:
        # a bug after the message may have left: never resend blindly
        logger.error("send crashed", extra={**log, "error_type": type(exc).__name__})
        return await _retry_or_fail(
            ctx, job, attempt, uncertain=True, retry_after=None, kind="internal"
        )

    await _finish_sent(ctx, job, row, sent)
    logger.info("email sent", extra=log)
    return "sent"
