"""Sending mail from the CRM: the request (store, link, queue) and the send job.

The request stores the email at once (status `queued`, our own Message-ID), links it to
the contact / partner it was sent from and to every contact and partner its recipients
match (the DB trigger writes the CE-04 activities), and queues the send job, all in the
caller's transaction. `Idempotency-Key` is a unique index: a retried or concurrent request
with the same key finds the first row and returns it; nothing is sent twice.

Who may send: only the mailbox's owner. Org admins can see org-visible mailboxes but do
not send from them: mail from a mailbox speaks for its owner.

The job (`run_send_job`) builds the RFC 822 message (tracking applied to the HTML first),
sends it through the provider driver and records the outcome: `sent` with the provider's
ids and `ce.email.synced` on NOTIFY in one transaction, or `failed` with a content-free
`send_error`, or a later retry (a new job, same procrastinate lock) on transient errors.

Double sends. Errors that say the provider did not take the message (429, 503, errors
before the send call) are retried as they are. An error after which the message may have
gone out (a timeout or dropped connection on the send itself, a worker that died during
the call — procrastinate retries such stalled jobs, see `app.send.jobs`) makes the next
attempt *uncertain*: it waits at least `SENT_COPY_GRACE_SECONDS`, then first looks for
the message in the mailbox's Sent folder, by our Message-ID or, on Graph which assigns its
own Message-ID, by the `X-CE-Message-ID` header; found, it is recorded as sent and not
sent again. Only a copy that the provider files later than that grace can still lead to a
second send (at-least-once in that narrow case, never silently lost). A row the
Sent-folder sync has already completed (Gmail keeps our Message-ID) is never resent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import make_msgid
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.auth.deps import Caller
from app.config import Settings
from app.context import ServiceContext
from app.db.rls import org_transaction
from app.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, UnprocessableEntity
from app.jobs.queue import QUEUE_PRIORITY, enqueue
from app.matching import repository as matching_repository
from app.matching.service import link_keys, match_links
from app.messages import repository as messages_repository
from app.messages.mime import make_snippet, normalise_message_id
from app.messages.service import synced_payload
from app.platform.documents import document_storage
from app.providers import errors as provider_errors
from app.providers.base import MailProvider, OutgoingMessage, SentMessage
from app.providers.gmail.driver import MAX_SEND_BYTES as GMAIL_MAX_SEND_BYTES
from app.providers.graph.driver import MAX_SEND_BYTES as GRAPH_MAX_SEND_BYTES
from app.providers.http import NOT_PROCESSED_STATUSES
from app.providers.rfc822 import header_values
from app.send import repository
from app.send.compose import (
    SEND_MARKER_HEADER,
    Composition,
    Mailbox,
    OutgoingAttachment,
    build_message,
    estimate_message_size,
)
from app.send.phi import detect_phi, detect_phi_in_html, html_to_text
from app.send.schemas import PhiWarning, Recipient, SendRequest, SendResponse
from app.settings.schemas import ModuleSettings
from app.settings.service import get_module_settings

logger = logging.getLogger(__name__)

SEND_TASK = "ce:send_email"
MAX_MESSAGE_BYTES = {"gmail": GMAIL_MAX_SEND_BYTES, "outlook": GRAPH_MAX_SEND_BYTES}
MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 30 * 60.0
SENT_COPY_GRACE_SECONDS = 120.0
"""How long an uncertain attempt waits before looking for its copy in the Sent folder."""
SENT_LOOKUP_SLACK = timedelta(minutes=10)
"""The Sent folder is searched from the row's creation minus this (clock skew)."""
MAX_REFERENCES = 20
_MESSAGE_IDS = re.compile(r"<([^<>\s]+)>")


# --- the request --------------------------------------------------------------------


def phi_warnings(subject: str, text: str | None, html: str | None) -> list[PhiWarning]:
    """Type and position of each hint (never the value). Positions in `html` refer to its
    visible text (`html_to_text`)."""
    found: list[PhiWarning] = []
    for name, hints in (
        ("subject", detect_phi(subject)),
        ("text", detect_phi(text or "")),
        ("html", detect_phi_in_html(html) if html else []),
    ):
        found.extend(PhiWarning(type=h.type, field=name, start=h.start, end=h.end) for h in hints)
    return found


def _people(recipients: Sequence[Recipient]) -> list[dict[str, str | None]]:
    return [{"name": r.name, "address": r.address} for r in recipients]


def _address_set(people: Any) -> set[str]:
    return {str(p["address"]).lower() for p in people or [] if isinstance(p, dict)}


def _replay(existing: Any, request: SendRequest, warnings: list[PhiWarning]) -> SendResponse:
    """The first result of an Idempotency-Key, unless the key is reused for another send."""
    stored = (
        _address_set(existing["to_recipients"])
        | _address_set(existing["cc_recipients"])
        | _address_set(existing["bcc_recipients"])
    )
    asked = {r.address.lower() for r in (*request.to, *request.cc, *request.bcc)}
    if (
        existing["account_id"] != request.account_id
        or (asked and asked != stored)
        or (request.subject and request.subject != existing["subject"])
    ):
        raise UnprocessableEntity(
            "This Idempotency-Key was already used for a different email.",
            field="Idempotency-Key",
        )
    return SendResponse(id=existing["id"], status=existing["status"], warnings=warnings)


def _check_size(provider: str, request: SendRequest, subject: str, docs: Sequence[Any]) -> None:
    limit = MAX_MESSAGE_BYTES.get(provider)
    if limit is None:
        return
    estimate = estimate_message_size(
        subject=subject,
        text=request.text,
        html=request.html,
        attachment_sizes=[int(d["size"]) for d in docs],
    )
    if estimate > limit:
        raise PayloadTooLarge(
            f"The email with its attachments would be about {estimate // (1024 * 1024)} MB; "
            f"this mailbox's provider accepts at most {limit // (1024 * 1024)} MB.",
            limit_bytes=limit,
            estimated_bytes=estimate,
        )


async def create_send(
    caller: Caller,
    request: SendRequest,
    *,
    idempotency_key: str | None,
) -> SendResponse:
    """POST /v1/emails: validate, store the queued email, link it, queue the job (the
    caller's transaction commits all of it, or none)."""
    session = caller.session
    warnings = (
        phi_warnings(request.subject, request.text, request.html) if request.check_phi else []
    )
    if warnings:
        logger.info("phi hints on send", extra={"count": len(warnings)})

    if idempotency_key:
        existing = await repository.by_idempotency_key(session, caller.user_id, idempotency_key)
        if existing is not None:
            return _replay(existing, request, warnings)

    account = await accounts_repository.get_account(session, request.account_id)
    if account is None or (
        account["visibility"] == "private"
        and account["owner_user_id"] != caller.user_id
        and not caller.is_admin
    ):
        raise NotFound("No such account")
    if account["owner_user_id"] != caller.user_id:
        raise Forbidden("Only the mailbox's owner may send from it")
    if account["status"] not in repository.SENDABLE_ACCOUNT_STATUSES:
        raise Conflict(
            "The mailbox is not connected; connect it again before sending.",
            account_status=account["status"],
        )

    to, cc, bcc = list(request.to), list(request.cc), list(request.bcc)
    if request.contact_id is not None:
        exists, first_address = await repository.contact_first_address(session, request.contact_id)
        if not exists:
            raise NotFound("No such contact")
        if not request.has_recipients and first_address:
            to = [Recipient(address=first_address)]
    if request.partner_id is not None:
        if not await messages_repository.partner_exists(session, request.partner_id):
            raise NotFound("No such partner")
    if not (to or cc or bcc):
        detail = (
            "A partner has no address of its own: give the recipients."
            if request.partner_id is not None
            else "At least one recipient is required (to, cc or bcc)."
        )
        raise UnprocessableEntity(detail, field="to")

    docs = await repository.documents(session, request.document_ids)
    if len(docs) != len(request.document_ids):
        raise NotFound("No such document")

    subject = request.subject
    parent = None
    if request.reply_to_email_id is not None:
        parent = await messages_repository.get_email(
            session,
            request.reply_to_email_id,
            viewer_id=caller.user_id,
            viewer_is_admin=caller.is_admin,
        )
        if parent is None:
            raise NotFound("No such email to reply to")
        if not subject.strip():
            earlier = parent["subject"] or ""
            subject = earlier if earlier.lower().startswith("re:") else f"Re: {earlier}".strip()

    _check_size(account["provider"], request, subject, docs)

    module_settings = await get_module_settings(session)
    tracking = module_settings.email_tracking_enabled and bool(request.html)
    track_opens = tracking and request.track_opens is not False
    track_clicks = tracking and request.track_clicks is not False

    own_address = str(account["email_address"])
    keys = link_keys(
        direction="outbound",
        own_address=own_address,
        sender=None,
        recipients=[r.address for r in (*to, *cc, *bcc)],
    )
    matches = (await match_links(session, [keys]))[0]

    email_id = uuid.uuid4()
    now = datetime.now(UTC)
    domain = own_address.rpartition("@")[2] or "localhost"
    message_id = make_msgid(domain=domain).strip("<>")
    body_text = request.text or html_to_text(request.html or "")
    inserted = await repository.insert_outbound(
        session,
        {
            "id": email_id,
            "org_id": caller.org_id,
            "account_id": account["id"],
            "internet_message_id": message_id,
            "in_reply_to": parent["internet_message_id"] if parent is not None else None,
            "direction": "outbound",
            "status": "queued",
            "subject": subject,
            "snippet": make_snippet(body_text),
            "from_address": own_address,
            "from_name": account["display_name"],
            "to_recipients": _people(to),
            "cc_recipients": _people(cc),
            "bcc_recipients": _people(bcc),
            "text_body": request.text,
            "html_body": request.html,
            "has_attachments": bool(docs),
            "occurred_at": now,
            "sent_by_user_id": caller.user_id,
            "idempotency_key": idempotency_key,
            "participant_addresses": list(keys.lookup_addresses),
            "participant_domains": list(keys.participant_domains),
        },
    )
    if inserted is None:
        # a concurrent request with the same key committed first: its result is ours
        assert idempotency_key is not None
        existing = await repository.by_idempotency_key(session, caller.user_id, idempotency_key)
        if existing is None:  # pragma: no cover - the unique index says it exists
            raise Conflict("A request with this Idempotency-Key is in progress; retry.")
        return _replay(existing, request, warnings)

    await repository.insert_attachments(session, caller.org_id, email_id, docs)
    contact_ids = set(matches.contact_ids)
    partner_ids = set(matches.partner_ids)
    if request.contact_id is not None:
        contact_ids.add(request.contact_id)
    if request.partner_id is not None:
        partner_ids.add(request.partner_id)
    await matching_repository.insert_links(
        session,
        caller.org_id,
        [(email_id, c, None, now) for c in sorted(contact_ids)]
        + [(email_id, None, p, now) for p in sorted(partner_ids)],
    )
    job = SendJob(
        org_id=caller.org_id,
        email_id=email_id,
        reply_to_email_id=request.reply_to_email_id,
        track_opens=track_opens,
        track_clicks=track_clicks,
    )
    await enqueue_send(session, job)
    logger.info(
        "email queued for sending",
        extra={
            "email_id": str(email_id),
            "account_id": str(account["id"]),
            "count": len(to) + len(cc) + len(bcc),
        },
    )
    return SendResponse(id=email_id, status="queued", warnings=warnings)


# --- the job ------------------------------------------------------------------------


@dataclass(frozen=True)
class SendJob:
    """The send job's arguments (ids and flags only)."""

    org_id: UUID
    email_id: UUID
    reply_to_email_id: UUID | None = None
    track_opens: bool = False
    track_clicks: bool = False
    uncertain: bool = False
    """A previous attempt may have reached the provider: look in Sent before sending."""
    attempt: int = 1

    def args(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("org_id", "email_id", "reply_to_email_id"):
            if values[name] is not None:
                values[name] = str(values[name])
        return values

    @classmethod
    def from_args(cls, **args: Any) -> SendJob:
        reply = args.get("reply_to_email_id")
        return cls(
            org_id=UUID(str(args["org_id"])),
            email_id=UUID(str(args["email_id"])),
            reply_to_email_id=UUID(str(reply)) if reply else None,
            track_opens=bool(args.get("track_opens", False)),
            track_clicks=bool(args.get("track_clicks", False)),
            uncertain=bool(args.get("uncertain", False)),
            attempt=int(args.get("attempt", 1)),
        )


async def enqueue_send(
    session: AsyncSession, job: SendJob, *, scheduled_at: datetime | None = None
) -> int | None:
    """One send job per email at a time (lock), none waiting twice (queueing lock)."""
    return await enqueue(
        session,
        SEND_TASK,
        job.args(),
        queue=QUEUE_PRIORITY,
        lock=f"send:{job.email_id}",
        queueing_lock=f"send:{job.email_id}",
        scheduled_at=scheduled_at,
    )


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    backoff = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** max(0, attempt - 1))
    return max(backoff, retry_after or 0.0)


@dataclass
class _Threading:
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    thread_id: str | None = None
    reply_to_provider_id: str | None = None


@dataclass
class _Loaded:
    row: Any
    attachments: list[Any]
    threading: _Threading


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


def _references(parent_refs: Sequence[str], parent_id: str) -> list[str]:
    refs = list(dict.fromkeys([*parent_refs, parent_id]))
    if len(refs) > MAX_REFERENCES:  # keep the thread's root and the latest
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    return refs


async def _threading(session: AsyncSession, row: Any, parent_id: UUID | None) -> _Threading:
    if parent_id is None:
        return _Threading()
    parent = await repository.reply_context(session, parent_id)
    if parent is None or not parent["internet_message_id"]:
        return _Threading()  # the original was deleted meanwhile: send unthreaded
    imid = str(parent["internet_message_id"])
    threading = _Threading(
        in_reply_to=imid,
        references=_references([parent["in_reply_to"]] if parent["in_reply_to"] else [], imid),
    )
    if parent["account_id"] == row["account_id"] and parent["provider_message_id"]:
        threading.reply_to_provider_id = parent["provider_message_id"]
        threading.thread_id = parent["provider_thread_id"]
    else:
        copy = await repository.copy_in_account(session, row["account_id"], imid)
        if copy is not None:
            threading.reply_to_provider_id = copy["provider_message_id"]
            threading.thread_id = copy["provider_thread_id"]
    return threading


async def _full_references(provider: MailProvider, threading: _Threading) -> None:
    """Gmail threads by References: take the original's own References from the provider
    (they are not stored). Graph's createReply sets the threading headers itself."""
    if provider.name != "gmail" or not threading.reply_to_provider_id or not threading.in_reply_to:
        return
    try:
        [original] = await provider.get_messages([threading.reply_to_provider_id])
    except provider_errors.NotFound:
        original = None
    if original is None:
        threading.thread_id = None  # gone from the mailbox: no thread to join
        threading.reply_to_provider_id = None
        return
    value = header_values(original.raw, "references")["references"] or ""
    threading.references = _references(_MESSAGE_IDS.findall(value), threading.in_reply_to)


def _is_our_copy(raw: bytes, internet_message_id: str | None, message_id: str) -> bool:
    if normalise_message_id(internet_message_id) == message_id:
        return True
    headers = header_values(raw, "message-id", SEND_MARKER_HEADER)
    return message_id in (
        normalise_message_id(headers["message-id"]),
        normalise_message_id(headers[SEND_MARKER_HEADER]),
    )


async def find_sent_copy(
    provider: MailProvider, message_id: str, since: datetime
) -> SentMessage | None:
    """Our message in the mailbox's Sent folder (sent since `since`), by Message-ID or by
    the `X-CE-Message-ID` header."""
    page_token: str | None = None
    while True:
        page = await provider.list_messages("sent", since, page_token)
        for start in range(0, len(page.added), 50):
            chunk = page.added[start : start + 50]
            for found in await provider.get_messages(chunk, folder="sent"):
                if found is not None and _is_our_copy(
                    found.raw, found.internet_message_id, message_id
                ):
                    return SentMessage(
                        provider_message_id=found.id,
                        thread_id=found.thread_id,
                        internet_message_id=found.internet_message_id,
                    )
        if not page.next_page_token:
            return None
        page_token = page.next_page_token


async def _instrument(
    session: AsyncSession,
    settings: Settings,
    module_settings: ModuleSettings,
    *,
    org_id: UUID,
    email_id: UUID,
    html: str,
    track_opens: bool,
    track_clicks: bool,
) -> str:
    """The HTML with the open pixel and rewritten links (`app.tracking.instrument`)."""
    try:
        from app.tracking.instrument import (  # type: ignore[import-not-found,unused-ignore]
            instrument_html,
            tracking_base_url,
        )
    except ImportError:
        logger.warning("tracking unavailable; sending untracked", extra={"email_id": str(email_id)})
        return html
    result = instrument_html(
        session,
        org_id=org_id,
        email_id=email_id,
        html=html,
        track_opens=track_opens,
        track_clicks=track_clicks,
        base_url=tracking_base_url(settings, module_settings),
        token_secret=settings.tracking_token_secret.get_secret_value(),
    )
    if inspect.isawaitable(result):
        result = await result
    return str(result)


async def _record_sent(
    session: AsyncSession, org_id: UUID, row: Any, sent: SentMessage, *, sent_at: datetime
) -> None:
    """Status sent, the provider's ids, and ce.email.synced, in the caller's transaction."""
    updated = await repository.mark_sent(
        session,
        email_id=row["id"],
        account_id=row["account_id"],
        provider_message_id=sent.provider_message_id,
        provider_thread_id=sent.thread_id,
        internet_message_id=normalise_message_id(sent.internet_message_id),
        sent_at=sent_at,
    )
    await _announce(session, org_id, {**row, "occurred_at": updated["occurred_at"]})


async def _announce(session: AsyncSession, org_id: UUID, row: Any) -> None:
    links = await messages_repository.links_of(session, [row["id"]])
    await repository.notify(
        session,
        synced_payload(
            org_id=org_id,
            email_id=row["id"],
            account_id=row["account_id"],
            direction="outbound",
            occurred_at=row["occurred_at"],
            contact_ids=[link["contact_id"] for link in links if link["contact_id"]],
            partner_ids=[link["partner_id"] for link in links if link["partner_id"]],
        ),
    )


async def _load(ctx: ServiceContext, job: SendJob) -> _Loaded | str:
    """The queued row to send, or what became of it (`skipped`, `found`, `failed`)."""
    async with org_transaction(ctx.engine, job.org_id) as session:
        row = await repository.lock_outbound(session, job.email_id)
        if row is None:
            return "skipped"
        if row["status"] == "sent" and job.uncertain and row["provider_message_id"]:
            # The Sent-folder sync completed our row after an attempt whose outcome this
            # job never saw, so nobody announced it. (Should the attempt have recorded
            # it after all and only the job's own bookkeeping been lost, this announces
            # it a second time: the event is at-least-once, consumers key on email_id.)
            await _announce(session, job.org_id, row)
            return "found"
        if row["status"] != "queued":
            return "skipped"
        if row["provider_message_id"]:
            # the Sent-folder sync found our copy: an earlier attempt went out
            await _record_sent(
                session,
                job.org_id,
                row,
                SentMessage(row["provider_message_id"], row["provider_thread_id"], None),
                sent_at=datetime.now(UTC),
            )
            return "found"
        if row["account_status"] not in repository.SENDABLE_ACCOUNT_STATUSES:
            failure = _PermanentFailure("account_unavailable", "the mailbox is not connected")
            await repository.mark_failed(session, row["id"], failure.send_error)
            return "failed"
        attachments = await repository.attachments_to_send(session, row["id"])
        threading = await _threading(session, row, job.reply_to_email_id)
    return _Loaded(dict(row), attachments, threading)


async def _read_attachments(settings: Settings, rows: Sequence[Any]) -> list[OutgoingAttachment]:
    storage = document_storage(settings)

    def read_all() -> list[OutgoingAttachment]:
        out = []
        for a in rows:
            if not a["storage_key"]:
                raise _PermanentFailure("attachment_unavailable", "a document was deleted")
            try:
                content = storage.get(a["storage_key"])
            except (OSError, ValueError):
                raise _PermanentFailure(
                    "attachment_unavailable", "a document's content is missing"
                ) from None
            out.append(
                OutgoingAttachment(
                    filename=a["filename"] or "attachment",
                    content_type=a["content_type"] or "application/octet-stream",
                    content=content,
                )
            )
        return out

    return await asyncio.to_thread(read_all)


def _mailboxes(people: Any) -> list[Mailbox]:
    return [
        Mailbox(address=str(p["address"]), name=p.get("name"))
        for p in people or []
        if isinstance(p, dict) and p.get("address")
    ]


async def _compose(ctx: ServiceContext, job: SendJob, loaded: _Loaded) -> bytes:
    row = loaded.row
    html = row["html_body"]
    if html and (job.track_opens or job.track_clicks):
        async with org_transaction(ctx.engine, job.org_id) as session:
            module_settings = await get_module_settings(session)
            if module_settings.email_tracking_enabled:
                html = await _instrument(
                    session,
                    ctx.settings,
                    module_settings,
                    org_id=job.org_id,
                    email_id=job.email_id,
                    html=html,
                    track_opens=job.track_opens,
                    track_clicks=job.track_clicks,
                )
    attachments = await _read_attachments(ctx.settings, loaded.attachments)
    composition = Composition(
        sender=Mailbox(address=row["account_address"], name=row["account_name"]),
        to=_mailboxes(row["to_recipients"]),
        cc=_mailboxes(row["cc_recipients"]),
        bcc=_mailboxes(row["bcc_recipients"]),
        subject=row["subject"] or "",
        text=row["text_body"],
        html=html,
        message_id=str(row["internet_message_id"]),
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


async def _send(provider: MailProvider, mime: bytes, threading: _Threading) -> SentMessage:
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


async def _fail(ctx: ServiceContext, job: SendJob, failure: _PermanentFailure) -> None:
    async with org_transaction(ctx.engine, job.org_id) as session:
        await repository.mark_failed(session, job.email_id, failure.send_error)
    logger.warning(
        "send failed",
        extra={"email_id": str(job.email_id), "error_code": failure.code, "attempt": job.attempt},
    )


async def _retry(
    ctx: ServiceContext, job: SendJob, *, uncertain: bool, retry_after: float | None, kind: str
) -> None:
    if job.attempt >= MAX_ATTEMPTS:
        await _fail(
            ctx,
            job,
            _PermanentFailure(
                "provider_unavailable", f"no success after {job.attempt} attempts ({kind})"
            ),
        )
        return
    delay = retry_delay(job.attempt, retry_after)
    if uncertain:
        delay = max(delay, SENT_COPY_GRACE_SECONDS)
    following = SendJob(
        org_id=job.org_id,
        email_id=job.email_id,
        reply_to_email_id=job.reply_to_email_id,
        track_opens=job.track_opens,
        track_clicks=job.track_clicks,
        uncertain=uncertain,
        attempt=job.attempt + 1,
    )
    async with org_transaction(ctx.engine, job.org_id) as session:
        await enqueue_send(
            session, following, scheduled_at=datetime.now(UTC) + timedelta(seconds=delay)
        )
    logger.info(
        "send retry scheduled",
        extra={
            "email_id": str(job.email_id),
            "attempt": job.attempt,
            "retry_after": delay,
            "error_type": kind,
        },
    )


async def _account_needs_reauth(ctx: ServiceContext, org_id: UUID, account_id: UUID) -> bool:
    async with org_transaction(ctx.engine, org_id) as session:
        account = await accounts_repository.get_account(session, account_id)
    return account is None or account["status"] in ("reauth_required", "disconnected")


async def run_send_job(ctx: ServiceContext, job: SendJob) -> str:
    """Run one attempt of a send. Returns what happened: `sent`, `found` (an earlier
    attempt's copy was in Sent), `failed`, `retry` or `skipped` (nothing to send)."""
    log = {"email_id": str(job.email_id), "org_id": str(job.org_id), "attempt": job.attempt}
    loaded = await _load(ctx, job)
    if isinstance(loaded, str):
        return loaded
    row = loaded.row
    provider = ctx.account_provider(row["provider"], job.org_id, row["account_id"])
    log["provider"] = row["provider"]

    # Until provider.send is called nothing can have gone out: every error is certain.
    try:
        if job.uncertain:
            since = row["created_at"] - SENT_LOOKUP_SLACK
            found = await find_sent_copy(provider, str(row["internet_message_id"]), since)
            if found is not None:
                async with org_transaction(ctx.engine, job.org_id) as session:
                    await _record_sent(session, job.org_id, row, found, sent_at=datetime.now(UTC))
                logger.info("earlier send attempt found in Sent", extra=log)
                return "found"
        await _full_references(provider, loaded.threading)
        mime = await _compose(ctx, job, loaded)
    except _PermanentFailure as failure:
        await _fail(ctx, job, failure)
        return "failed"
    except provider_errors.RateLimited as exc:
        await _retry(ctx, job, uncertain=job.uncertain, retry_after=exc.retry_after, kind="rate")
        return "retry"
    except (provider_errors.ProviderUnavailable, provider_errors.AuthRevoked) as exc:
        if isinstance(exc, provider_errors.AuthRevoked) and await _account_needs_reauth(
            ctx, job.org_id, row["account_id"]
        ):
            await _fail(ctx, job, _provider_failure(exc))
            return "failed"
        retry_after = getattr(exc, "retry_after", None)
        await _retry(ctx, job, uncertain=job.uncertain, retry_after=retry_after, kind="temporary")
        return "retry"
    except provider_errors.ProviderError as exc:
        await _fail(ctx, job, _provider_failure(exc))
        return "failed"

    try:
        sent = await _send(provider, mime, loaded.threading)
    except provider_errors.RateLimited as exc:
        await _retry(ctx, job, uncertain=False, retry_after=exc.retry_after, kind="rate")
        return "retry"
    except provider_errors.ProviderUnavailable as exc:
        # 503 means "not processed"; a timeout or a dropped connection may hide a success
        uncertain = exc.status not in NOT_PROCESSED_STATUSES
        await _retry(ctx, job, uncertain=uncertain, retry_after=exc.retry_after, kind="temporary")
        return "retry"
    except provider_errors.AuthRevoked as exc:
        # a 401 is never a send; the grant may still be good (see the sync's handling)
        if await _account_needs_reauth(ctx, job.org_id, row["account_id"]):
            await _fail(ctx, job, _provider_failure(exc))
            return "failed"
        await _retry(ctx, job, uncertain=False, retry_after=None, kind="auth")
        return "retry"
    except provider_errors.ProviderError as exc:
        await _fail(ctx, job, _provider_failure(exc))
        return "failed"
    except Exception as exc:
        # a bug after the message may have left: never resend blindly
        logger.error("send crashed", extra={**log, "error_type": type(exc).__name__})
        await _retry(ctx, job, uncertain=True, retry_after=None, kind="internal")
        return "retry"

    async with org_transaction(ctx.engine, job.org_id) as session:
        await _record_sent(session, job.org_id, row, sent, sent_at=datetime.now(UTC))
    logger.info("email sent", extra=log)
    return "sent"
