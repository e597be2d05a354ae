"""The hash chain of sealed audit blocks: one canonical form per row, one digest per block.

A block's hash is SHA-256 over the previous block's hash and the canonical serialisation of
each of its rows, ordered by (occurred_at, id). Changing, removing or adding a row of a
sealed block changes its hash; rewriting a block's hash breaks the next block's link. Pure
functions: sealing (jobs) and verification (the CLI) compute the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit row as stored (the block reference aside)."""

    org_id: UUID
    id: UUID
    user_id: UUID
    action: str
    email_ids: tuple[UUID, ...]
    attachment_id: UUID | None
    occurred_at: datetime
    request_id: str | None


def _utc(moment: datetime) -> str:
    # microseconds, as PostgreSQL stores timestamptz
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: AuditRow) -> bytes:
    """Sorted keys, no whitespace, ids as lower-case text, times in UTC with microseconds."""
    return json.dumps(
        {
            "action": row.action,
            "attachment_id": str(row.attachment_id) if row.attachment_id else None,
            "email_ids": [str(i) for i in row.email_ids],
            "id": str(row.id),
            "occurred_at": _utc(row.occurred_at),
            "org_id": str(row.org_id),
            "request_id": row.request_id,
            "user_id": str(row.user_id),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def block_hash(prev_hash: str, rows: Iterable[AuditRow]) -> str:
    """The rows must already be in block order, (occurred_at, id)."""
    digest = hashlib.sha256(prev_hash.encode("ascii") + b"\n")
    for row in rows:
        digest.update(canonical(row) + b"\n")
    return digest.hexdigest()
