"""Storing synced mail: what the sync pipeline calls.

`store_remote_messages` takes one sync page: each message is parsed once, matched to
contacts and partners with one query for the whole page, written with one multi-row
INSERT (deduplicated on (account, provider id); our own sends are completed, not copied),
linked (the DB trigger makes one CE-04 activity per link) and announced with
`ce.email.synced` on NOTIFY, all in the caller's transaction. The sync pipeline runs the
two halves apart (`prepare_page*` parses, possibly in another process;
`store_prepared_page` writes). Logs carry ids and counts, never mail content.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.rls import undo_on_rollback
from app.events import synced_payload
from app.matching import repository as matching_repository
from app.matching.service import LinkKeys, Matches, link_keys, match_links, same_address
from app.messages.mime import ParsedMessage, Participant, normalise_message_id, parse_message
from app.messages.repository import writes as repository
from app.messages.repository.writes import NewDocument, SentCopy
from app.platform.documents import DocumentStorage
from app.providers.base import RemoteMessage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoreResult:
    stored: int
    """New rows (each announced with ce.email.synced)."""
    completed: int
    """Our own sends found by Message-ID and completed with the provider's ids."""
    duplicates: int
    """Messages already stored for this account (nothing written)."""
    links: int
    """New contact/partner links (one CE-04 activity each)."""
    email_ids: list[UUID] = field(default_factory=list)
    """Ids of the new rows."""


@dataclass(slots=True)
class PreparedMessage:
    """One message parsed, with its direction, timeline time and linking keys."""

    id: UUID
    remote: RemoteMessage
    parsed: ParsedMessage
    direction: str
    occurred_at: datetime
    internet_message_id: str | None
    keys: LinkKeys


def _field(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row[name]
    return getattr(row, name)


def _clean(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL.
    return value.replace("\x00", "") if value else value


def _participants_json(people: Sequence[Participant]) -> str:
    return json.dumps(
        [{"name": _clean(p.name), "address": _clean(p.address)} for p in people],
        ensure_ascii=False,
    )


# Both are pure functions of a few addresses, and a mailbox's mail comes from and goes to
# the same people over and over: memoised, they cost a dict lookup per message.
@lru_cache(maxsize=4096)
def _link_keys_of(
    direction: str, own_address: str, sender: str | None, recipients: tuple[str, ...]
) -> LinkKeys:
    return link_keys(
        direction=direction, own_address=own_address, sender=sender, recipients=recipients
    )


@lru_cache(maxsize=1024)
def _is_own_address(address: str, own_address: str) -> bool:
    return same_address(address, own_address)


def prepare_message(
    remote: RemoteMessage, own_address: str, body_limit_bytes: int
) -> PreparedMessage:
    """Parse one message and decide its direction, time and linking keys (pure, CPU only)."""
    parsed = parse_message(remote.raw, body_limit_bytes=body_limit_bytes)
    sender = parsed.from_.address if parsed.from_ else None
    from_is_own = sender is not None and _is_own_address(sender, own_address)
    direction = "outbound" if remote.folder == "sent" or from_is_own else "inbound"
    if direction == "outbound":
        occurred_at = parsed.sent_at or remote.received_at
    else:
        occurred_at = remote.received_at
    recipients = tuple(p.address for p in (*parsed.to, *parsed.cc, *parsed.bcc))
    keys = _link_keys_of(direction, own_address, sender, recipients)
    imid = parsed.internet_message_id or normalise_message_id(remote.internet_message_id)
    return PreparedMessage(uuid.uuid4(), remote, parsed, direction, occurred_at, imid, keys)


def _email_columns(rows: Sequence[PreparedMessage]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {c: [] for c in repository.EMAIL_INSERT_COLUMNS}
    for r in rows:
        p = r.parsed
        values = {
            "id": r.id,
            "provider_message_id": r.remote.id,
            "provider_thread_id": r.remote.thread_id,
            "internet_message_id": _clean(r.internet_message_id),
            "in_reply_to": _clean(p.in_reply_to),
            "direction": r.direction,
            "status": "sent" if r.direction == "outbound" else "received",
            "folder": r.remote.folder,
            "subject": _clean(p.subject),
            "snippet": _clean(p.snippet),
            "from_address": _clean(p.from_.address) if p.from_ else None,
            "from_name": _clean(p.from_.name) if p.from_ else None,
            "to_recipients": _participants_json(p.to),
            "cc_recipients": _participants_json(p.cc),
            "bcc_recipients": _participants_json(p.bcc),
            "text_body": _clean(p.text_body),
            "html_body": _clean(p.html_body),
            "body_truncated": p.truncated,
            "has_attachments": any(not a.is_inline for a in p.attachments),
            "content_hash": p.content_hash,
            "sent_at": p.sent_at,
            "received_at": r.remote.received_at,
            "occurred_at": r.occurred_at,
            "participant_addresses": json.dumps(r.keys.lookup_addresses, ensure_ascii=False),
            "participant_domains": json.dumps(r.keys.participant_domains, ensure_ascii=False),
        }
        for name, value in values.items():
            columns[name].append(value)
    return columns


async def _store_documents(
    session: AsyncSession,
    org_id: UUID,
    storage: DocumentStorage,
    rows: Sequence[PreparedMessage],
    max_bytes: int,
) -> dict[tuple[UUID, int], UUID]:
    """Attachment bytes into PF-11: the storage first (one thread hop per page), then the
    document rows. Returns document ids by (email id, attachment position). A page whose
    transaction fails takes its files back out of the store (`undo_on_rollback`)."""
    wanted = [
        (r.id, i, a)
        for r in rows
        for i, a in enumerate(r.parsed.attachments)
        if len(a.content) <= max_bytes
    ]
    if not wanted:
        return {}

    def put_all() -> list[str]:
        return [storage.put(a.content) for _, _, a in wanted]

    keys = await asyncio.to_thread(put_all)
    for key in keys:
        undo_on_rollback(session, partial(storage.delete, key))
    documents = []
    ids: dict[tuple[UUID, int], UUID] = {}
    for (email_id, index, a), key in zip(wanted, keys, strict=True):
        document_id = uuid.uuid4()
        ids[(email_id, index)] = document_id
        documents.append(
            NewDocument(
                id=document_id,
                filename=a.filename,
                content_type=a.content_type,
                size=len(a.content),
                sha256=a.sha256,
                storage_key=key,
            )
        )
    await repository.insert_documents(session, org_id, documents)
    return ids


@dataclass(frozen=True, slots=True)
class PreparedPage:
    """One page of messages parsed and ready to write (`prepare_page`)."""

    messages: int
    """How many messages the page had (repeats included)."""
    prepared: list[PreparedMessage]


def prepare_page(
    account: Any, messages: Sequence[RemoteMessage], body_limit_kb: int
) -> PreparedPage:
    """The CPU half of `store_remote_messages`: parse each message once (repeats of one
    provider id are parsed once). No I/O, so a caller may run it while the previous
    page's write is waiting on the database."""
    own_address = str(_field(account, "email_address"))
    body_limit_bytes = max(0, int(body_limit_kb)) * 1024
    # Callers skip the ids they know already (the sync engine does); a repeat that still
    # comes through is parsed for nothing but written nowhere (ON CONFLICT DO NOTHING).
    fresh = list({m.id: m for m in messages}.values())
    return PreparedPage(
        len(messages), [prepare_message(m, own_address, body_limit_bytes) for m in fresh]
    )


def prepare_page_for_transfer(
    account: Any, messages: Sequence[RemoteMessage], body_limit_kb: int
) -> PreparedPage:
    """`prepare_page` in a parse process: the page goes back without the raw bytes (the
    write never reads them), which halves what crosses the process boundary."""
    page = prepare_page(account, messages, body_limit_kb)
    for prepared in page.prepared:
        prepared.remote = dataclasses.replace(prepared.remote, raw=b"")
    return page


async def prepare_page_cooperatively(
    account: Any, messages: Sequence[RemoteMessage], body_limit_kb: int, *, slice_size: int = 4
) -> PreparedPage:
    """`prepare_page`, handing the event loop back every `slice_size` messages: a page
    is tens of milliseconds of parsing, and meanwhile the previous page's write (one
    statement per loop turn) and the next fetches (one read per turn) must keep going."""
    own_address = str(_field(account, "email_address"))
    body_limit_bytes = max(0, int(body_limit_kb)) * 1024
    fresh = list({m.id: m for m in messages}.values())
    prepared: list[PreparedMessage] = []
    for start in range(0, len(fresh), slice_size):
        if start:
            await asyncio.sleep(0)
        prepared.extend(
            prepare_message(m, own_address, body_limit_bytes)
            for m in fresh[start : start + slice_size]
        )
    return PreparedPage(len(messages), prepared)


async def store_remote_messages(
    session: AsyncSession,
    *,
    org_id: UUID,
    account: Any,
    messages: Sequence[RemoteMessage],
    body_limit_kb: int,
    storage: DocumentStorage | None,
    attachment_max_bytes: int,
) -> StoreResult:
    """Store one page of synced messages of `account` (a row or mapping with id, provider,
    email_address, owner_user_id) in the caller's transaction (only flushes).

    Idempotent: a message already stored for the account (same provider id) is skipped,
    so a re-sync makes no second row, link, activity or event. An outbound message that
    we sent ourselves (a row with its Message-ID but no provider id yet) is completed with
    the provider's ids instead of being stored twice. Attachment bytes go to `storage`
    (PF-11) when given and at most `attachment_max_bytes` (the caller's
    `Settings.attachment_max_bytes`) long; the metadata always."""
    page = prepare_page(account, messages, body_limit_kb)
    return await store_prepared_page(
        session,
        org_id=org_id,
        account=account,
        page=page,
        storage=storage,
        attachment_max_bytes=attachment_max_bytes,
    )


async def store_prepared_page(
    session: AsyncSession,
    *,
    org_id: UUID,
    account: Any,
    page: PreparedPage,
    storage: DocumentStorage | None,
    attachment_max_bytes: int,
) -> StoreResult:
    """The database half of `store_remote_messages` (same contract)."""
    account_id = UUID(str(_field(account, "id")))
    prepared = page.prepared
    duplicates = page.messages - len(prepared)
    if not prepared:
        return StoreResult(stored=0, completed=0, duplicates=duplicates, links=0)

    matches = await match_links(session, [p.keys for p in prepared])
    matched: dict[UUID, Matches] = {p.id: m for p, m in zip(prepared, matches, strict=True)}

    # Our own sends first: the synced copy of one completes that row.
    own_sends = {
        p.internet_message_id: p
        for p in prepared
        if p.direction == "outbound" and p.internet_message_id
    }
    links: list[tuple[UUID, UUID | None, UUID | None, datetime]] = []
    completed = await repository.complete_own_sends(
        session,
        account_id,
        [
            SentCopy(
                internet_message_id=imid,
                provider_message_id=p.remote.id,
                provider_thread_id=p.remote.thread_id,
                folder=p.remote.folder,
                sent_at=p.parsed.sent_at,
                received_at=p.remote.received_at,
                content_hash=p.parsed.content_hash,
                participant_addresses=json.dumps(p.keys.lookup_addresses, ensure_ascii=False),
                participant_domains=json.dumps(p.keys.participant_domains, ensure_ascii=False),
            )
            for imid, p in own_sends.items()
        ],
    )
    completed_pids: set[str] = set()
    by_pid = {p.remote.id: p for p in prepared}
    for row in completed:
        completed_pids.add(row.provider_message_id)
        m = matched[by_pid[row.provider_message_id].id]
        links.extend((row.id, c, None, row.occurred_at) for c in m.contact_ids)
        links.extend((row.id, None, q, row.occurred_at) for q in m.partner_ids)

    to_insert = [p for p in prepared if p.remote.id not in completed_pids]
    inserted_ids = await repository.insert_emails(
        session, org_id, account_id, _email_columns(to_insert)
    )
    new_rows = [p for p in to_insert if p.id in inserted_ids]
    duplicates += len(to_insert) - len(new_rows)

    documents: dict[tuple[UUID, int], UUID] = {}
    if storage is not None:
        documents = await _store_documents(session, org_id, storage, new_rows, attachment_max_bytes)

    attachments: dict[str, list[Any]] = {
        k: []
        for k in (
            "email_ids",
            "filenames",
            "types",
            "sizes",
            "content_ids",
            "inline",
            "part_indexes",
            "document_ids",
        )
    }
    payloads = []
    for p in new_rows:
        m = matched[p.id]
        links.extend((p.id, c, None, p.occurred_at) for c in m.contact_ids)
        links.extend((p.id, None, q, p.occurred_at) for q in m.partner_ids)
        for i, a in enumerate(p.parsed.attachments):
            attachments["email_ids"].append(p.id)
            attachments["filenames"].append(_clean(a.filename))
            attachments["types"].append(_clean(a.content_type) or "application/octet-stream")
            attachments["sizes"].append(a.size)
            attachments["content_ids"].append(_clean(a.content_id))
            attachments["inline"].append(a.is_inline)
            attachments["part_indexes"].append(a.part_index)
            attachments["document_ids"].append(documents.get((p.id, i)))
        payloads.append(
            synced_payload(
                org_id=org_id,
                email_id=p.id,
                account_id=account_id,
                direction=p.direction,
                occurred_at=p.occurred_at,
                contact_ids=m.contact_ids,
                partner_ids=m.partner_ids,
            )
        )
    new_links = await matching_repository.insert_links(session, org_id, links)
    if new_rows:
        await repository.insert_attachments_and_notify(session, org_id, attachments, payloads)

    result = StoreResult(
        stored=len(new_rows),
        completed=len(completed),
        duplicates=duplicates,
        links=new_links,
        email_ids=[p.id for p in new_rows],
    )
    logger.info(
        "emails stored",
        extra={
            "account_id": str(account_id),
            "stored": result.stored,
            "count": page.messages,
        },
    )
    return result


async def delete_remote_messages(
    session: AsyncSession, account_id: UUID, provider_ids: Sequence[str]
) -> int:
    """Remove mail deleted at the provider. Its links, attachment rows and CE-04
    activities go with it (cascades and the link trigger). Returns the rows removed."""
    removed = await repository.delete_by_provider_ids(
        session, account_id, list(dict.fromkeys(provider_ids))
    )
    logger.info("emails deleted", extra={"account_id": str(account_id), "deleted": removed})
    return removed
