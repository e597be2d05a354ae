"""The access audit: record each read of email content, answer who read what, seal the
rows into a hash chain and verify it.

Recording joins the request's transaction (one INSERT), so a read whose transaction rolls
back leaves no row, and a row is never missing for a read that was answered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import repository
from app.audit.chain import GENESIS_HASH, block_hash
from app.audit.repository import Action, AuditEntry, AuditQuery, Block
from app.auth.deps import Caller
from app.errors import Forbidden, NotFound
from app.logs import request_id_var

# Rows per block: a block is read whole when verified, so it stays a bounded read.
BLOCK_ROWS = 5000


async def _record(
    caller: Caller,
    action: Action,
    email_ids: Sequence[UUID],
    attachment_id: UUID | None = None,
) -> None:
    await repository.append(
        caller.session,
        org_id=caller.org_id,
        user_id=caller.user_id,
        action=action,
        email_ids=email_ids,
        attachment_id=attachment_id,
        # the id the request middleware gave this request (and echoed as X-Request-ID)
        request_id=request_id_var.get(),
    )


async def record_read(caller: Caller, email_id: UUID) -> None:
    await _record(caller, "read", [email_id])


async def record_download(caller: Caller, email_id: UUID, attachment_id: UUID) -> None:
    await _record(caller, "download", [email_id], attachment_id)


async def record_list(caller: Caller, email_ids: Sequence[UUID]) -> None:
    """One row per timeline page, with the ids it showed; an empty page shows no content."""
    if email_ids:
        await _record(caller, "list", email_ids)


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: list[AuditEntry]
    more: bool


async def entries(
    session: AsyncSession, q: AuditQuery, *, after: tuple[datetime, UUID] | None, limit: int
) -> EntryPage:
    rows = await repository.list_entries(session, q, after=after, limit=limit + 1)
    return EntryPage(rows[:limit], len(rows) > limit)


async def email_access(
    caller: Caller, email_id: UUID, *, after: tuple[datetime, UUID] | None, limit: int
) -> EntryPage:
    """Who read this email: for the mailbox's owner and org admins. An email the caller
    cannot see is not found (its existence is not revealed)."""
    # None: the email does not exist for the caller (RLS), whoever owns it
    owner = await repository.mailbox_owner_of(caller.session, email_id)
    if owner is None:
        raise NotFound("No such email")
    if not caller.is_admin and owner != caller.user_id:
        raise Forbidden("Only the mailbox's owner or an org admin may see who read it")
    return await entries(caller.session, AuditQuery(email_id=email_id), after=after, limit=limit)


# --- the chain ---------------------------------------------------------------------------


async def seal_org(session: AsyncSession, org_id: UUID) -> tuple[int, int]:
    """Seal the org's unsealed rows into new blocks; (blocks, rows) sealed. Joins the
    caller's org transaction; concurrent sealers of one org wait for each other."""
    await repository.lock_sealing(session, org_id)
    last = await repository.last_block(session)
    seq, prev_hash = (last.seq, last.hash) if last else (0, GENESIS_HASH)
    blocks = rows = 0
    while batch := await repository.unsealed_rows(session, BLOCK_ROWS):
        seq += 1
        block = Block(
            seq=seq,
            first_row_id=batch[0].id,
            last_row_id=batch[-1].id,
            first_occurred_at=batch[0].occurred_at,
            last_occurred_at=batch[-1].occurred_at,
            row_count=len(batch),
            prev_hash=prev_hash,
            hash=block_hash(prev_hash, batch),
            sealed_at=datetime.now(UTC),
        )
        await repository.append_block(session, org_id, block)
        await repository.mark_sealed(session, seq, [r.id for r in batch])
        prev_hash = block.hash
        blocks, rows = blocks + 1, rows + len(batch)
        if len(batch) < BLOCK_ROWS:
            break
    return blocks, rows


@dataclass(frozen=True, slots=True)
class ChainReport:
    org_id: UUID
    blocks: int
    rows: int
    first_seq: int | None
    last_seq: int | None
    broken_seq: int | None = None
    reason: str | None = None
    head_hash: str | None = None
    """The newest block's hash: recorded outside the database, it is an anchor (below)."""

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


@dataclass(frozen=True, slots=True)
class Anchor:
    """A block's sequence number and hash as recorded outside the database (the `head` a
    verification printed). The chain alone cannot show that its newest blocks were deleted
    together with their rows; a recorded head can."""

    seq: int
    hash: str


async def verify_org(
    session: AsyncSession, org_id: UUID, anchor: Anchor | None = None
) -> ChainReport:
    """Recompute the org's chain from its oldest remaining block (older ones may have been
    deleted by retention, whole); stop at the first block that no longer matches. With an
    anchor, that block must still be in the chain with that hash (an anchor older than the
    oldest remaining block was deleted by retention and is not checked)."""
    chain = await repository.blocks(session)
    report = await _verify_chain(session, org_id, chain)
    if anchor is None or not report.intact:
        return report
    if report.last_seq is None or anchor.seq > report.last_seq:
        return dataclasses.replace(
            report,
            broken_seq=anchor.seq,
            reason="the recorded block is gone: the newest blocks were deleted",
        )
    recorded = next((b for b in chain if b.seq == anchor.seq), None)
    if recorded is not None and recorded.hash != anchor.hash:
        return dataclasses.replace(
            report, broken_seq=anchor.seq, reason="its hash is not the recorded one"
        )
    return report


async def _verify_chain(session: AsyncSession, org_id: UUID, chain: list[Block]) -> ChainReport:
    rows = 0
    expected_prev: str | None = None
    first = chain[0].seq if chain else None
    last = chain[-1].seq if chain else None

    def broken(block: Block, reason: str) -> ChainReport:
        return ChainReport(org_id, len(chain), rows, first, last, block.seq, reason)

    # the oldest remaining block anchors the chain on its stored prev_hash
    for position, block in enumerate(chain):
        if first is not None and block.seq != first + position:
            return broken(block, "the block before it is missing")
        if expected_prev is not None and block.prev_hash != expected_prev:
            return broken(block, "its previous-hash does not match the block before it")
        members = await repository.block_rows(session, block.seq)
        if len(members) != block.row_count:
            return broken(block, f"it holds {len(members)} rows, {block.row_count} when sealed")
        if members and (members[0].id, members[-1].id) != (block.first_row_id, block.last_row_id):
            return broken(block, "its first or last row is not the one sealed")
        if block_hash(block.prev_hash, members) != block.hash:
            return broken(block, "its rows no longer hash to the sealed hash")
        rows += len(members)
        expected_prev = block.hash
    return ChainReport(org_id, len(chain), rows, first, last, head_hash=expected_prev)
