"""Sending mail from the CRM, the request: validate, store the queued email, link it, queue
the send job (app/send/runner.py sends it).

The request stores the email at once (status `queued`, our own Message-ID), links it to
the contact / partner it was sent from and to every contact and partner its recipients
match (the DB trigger writes the CE-04 activities), and queues the send job, all in the
caller's transaction. `Idempotency-Key` is a unique index: a retried or concurrent request
with the same key finds the first row and returns it; nothing is sent twice.

Who may send: only the mailbox's owner. Org admins can see org-visible mailboxes but do
not send from them: mail from a mailbox speaks for its owner.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import Literal

from app.accounts import repository as accounts_repository
from app.auth.deps import Caller
from app.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, UnprocessableEntity
from app.matching import repository as matching_repository
from app.matching.service import link_keys, match_links
from app.messages.mime import make_snippet
from app.messages.repository import reads as messages_reads
from app.messages.sanitize import html_to_text
from app.providers.registry import max_send_bytes
from app.send import repository
from app.send.compose import estimate_message_size
from app.send.phi import PhiHint, detect_phi, detect_phi_in_html
from app.send.repository import Document, EarlierSend, People
from app.send.runner import SendJob, enqueue_send
from app.send.schemas import PhiWarning, Recipient, SendRequest, SendResponse
from app.settings.service import get_module_settings

logger = logging.getLogger(__name__)


def phi_warnings(subject: str, text: str | None, html: str | None) -> list[PhiWarning]:
    """Type and position of each hint (never the value). Positions in `html` refer to its
    visible text (`html_to_text`)."""
    found: list[PhiWarning] = []
    fields: tuple[tuple[Literal["subject", "text", "html"], list[PhiHint]], ...] = (
        ("subject", detect_phi(subject)),
        ("text", detect_phi(text or "")),
        ("html", detect_phi_in_html(html) if html else []),
    )
    for name, hints in fields:
        found.extend(PhiWarning(type=h.type, field=name, start=h.start, end=h.end) for h in hints)
    return found


def _people(recipients: Sequence[Recipient]) -> People:
    return [{"name": r.name, "address": r.address} for r in recipients]


def _address_set(people: People) -> set[str]:
    return {str(p["address"]).lower() for p in people if isinstance(p, dict)}


def _replay(
    existing: EarlierSend, request: SendRequest, warnings: list[PhiWarning]
) -> SendResponse:
    """The first result of an Idempotency-Key, unless the key is reused for another send."""
    stored = (
        _address_set(existing.to_recipients)
        | _address_set(existing.cc_recipients)
        | _address_set(existing.bcc_recipients)
    )
    asked = {r.address.lower() for r in (*request.to, *request.cc, *request.bcc)}
    if (
        existing.account_id != request.account_id
        or (asked and asked != stored)
        or (request.subject and request.subject != existing.subject)
    ):
        raise UnprocessableEntity(
            "This Idempotency-Key was already used for a different email.",
            field="Idempotency-Key",
        )
    return SendResponse(id=existing.id, status=existing.status, warnings=warnings)


def _check_size(
    provider: str, request: SendRequest, subject: str, docs: Sequence[Document]
) -> None:
    limit = max_send_bytes(provider)
    estimate = estimate_message_size(
        subject=subject,
        text=request.text,
        html=request.html,
        attachment_sizes=[d.size for d in docs],
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
        account.visibility == "private"
        and account.owner_user_id != caller.user_id
        and not caller.is_admin
    ):
        raise NotFound("No such account")
    if account.owner_user_id != caller.user_id:
        raise Forbidden("Only the mailbox's owner may send from it")
    if account.status not in repository.SENDABLE_ACCOUNT_STATUSES:
        raise Conflict(
            "The mailbox is not connected; connect it again before sending.",
            account_status=account.status,
        )

    to, cc, bcc = list(request.to), list(request.cc), list(request.bcc)
    if request.contact_id is not None:
        exists, first_address = await repository.contact_first_address(session, request.contact_id)
        if not exists:
            raise NotFound("No such contact")
        if not request.has_recipients and first_address:
            to = [Recipient(address=first_address)]
    if request.partner_id is not None:
        if not await messages_reads.partner_exists(session, request.partner_id):
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
        parent = await messages_reads.email_detail_row(session, request.reply_to_email_id)
        if parent is None:
            raise NotFound("No such email to reply to")
        if not subject.strip():
            earlier = parent.subject or ""
            subject = earlier if earlier.lower().startswith("re:") else f"Re: {earlier}".strip()

    _check_size(str(account.provider), request, subject, docs)

    module_settings = await get_module_settings(session)
    tracking = module_settings.email_tracking_enabled and bool(request.html)
    track_opens = tracking and request.track_opens is not False
    track_clicks = tracking and request.track_clicks is not False

    own_address = str(account.email_address)
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
            "account_id": account.id,
            "internet_message_id": message_id,
            "in_reply_to": parent.internet_message_id if parent is not None else None,
            "direction": "outbound",
            "status": "queued",
            "subject": subject,
            "snippet": make_snippet(body_text),
            "from_address": own_address,
            "from_name": account.display_name,
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
            "account_id": str(account.id),
            "count": len(to) + len(cc) + len(bcc),
        },
    )
    return SendResponse(id=email_id, status="queued", warnings=warnings)
