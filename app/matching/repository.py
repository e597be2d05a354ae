"""SQL of matching: contacts by address, partners by domain, links (RLS scopes every read).

Retroactive lookups go through `ce_email_participants` (btree, usable under RLS; see
sql/020_email_participants.sql for why not a GIN index on the arrays). They also scope
by the contact's / partner's own org: the composite foreign keys would refuse a
cross-org link anyway, and this keeps them correct on a connection that is not subject
to RLS (the owner's, used by the development fixtures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_TARGETS = text(
    "SELECT 'contact' AS kind, ce.email AS key, ce.contact_id AS target_id "
    "FROM contact_emails ce WHERE ce.email = ANY(CAST(:addresses AS text[])) "
    "UNION ALL "
    "SELECT 'partner', pd.domain, pd.partner_id "
    "FROM partner_domains pd WHERE pd.domain = ANY(CAST(:domains AS text[]))"
)


async def find_targets(
    session: AsyncSession, addresses: Sequence[str], domains: Sequence[str]
) -> tuple[dict[str, set[UUID]], dict[str, set[UUID]]]:
    """In one round trip: contact ids per address, partner ids per domain."""
    contacts: dict[str, set[UUID]] = {}
    partners: dict[str, set[UUID]] = {}
    if not addresses and not domains:
        return contacts, partners
    rows = await session.execute(_TARGETS, {"addresses": list(addresses), "domains": list(domains)})
    for kind, key, target_id in rows:
        bucket = contacts if kind == "contact" else partners
        bucket.setdefault(key, set()).add(target_id)
    return contacts, partners


async def insert_links(
    session: AsyncSession,
    org_id: UUID,
    links: Sequence[tuple[UUID, UUID | None, UUID | None, datetime]],
) -> int:
    """(email_id, contact_id, partner_id, occurred_at) rows; existing links are kept as
    they are. Returns how many are new (each new one got its CE-04 activity)."""
    if not links:
        return 0
    email_ids, contact_ids, partner_ids, occurred = (list(c) for c in zip(*links, strict=True))
    result = await session.execute(
        text(
            "WITH new AS ("
            " INSERT INTO ce_email_links (org_id, email_id, contact_id, partner_id, occurred_at)"
            " SELECT CAST(:org_id AS uuid), l.email_id, l.contact_id, l.partner_id, l.occurred_at"
            " FROM unnest(CAST(:email_ids AS uuid[]), CAST(:contact_ids AS uuid[]),"
            "             CAST(:partner_ids AS uuid[]), CAST(:occurred AS timestamptz[]))"
            "      AS l(email_id, contact_id, partner_id, occurred_at)"
            " ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM new"
        ),
        {
            "org_id": org_id,
            "email_ids": email_ids,
            "contact_ids": contact_ids,
            "partner_ids": partner_ids,
            "occurred": occurred,
        },
    )
    return int(result.scalar_one())


async def link_emails_to_contact(session: AsyncSession, contact_id: UUID) -> int:
    """Links every email of the contact's org that one of its addresses took part in."""
    result = await session.execute(
        text(
            "WITH new AS ("
            " INSERT INTO ce_email_links (org_id, email_id, contact_id, occurred_at)"
            " SELECT e.org_id, e.id, CAST(:contact_id AS uuid), e.occurred_at FROM ce_emails e"
            " WHERE e.id IN (SELECT p.email_id FROM ce_email_participants p"
            # scalar subqueries run once: the index sees constants
            "   WHERE p.org_id = (SELECT c.org_id FROM contacts c WHERE c.id = :contact_id)"
            "   AND p.kind = 'address' AND p.value = ANY(ARRAY(SELECT ce.email"
            "     FROM contact_emails ce WHERE ce.contact_id = :contact_id)))"
            " ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM new"
        ),
        {"contact_id": contact_id},
    )
    return int(result.scalar_one())


async def partner_domains(session: AsyncSession, partner_id: UUID) -> list[tuple[UUID, str]]:
    rows = await session.execute(
        text("SELECT org_id, domain FROM partner_domains WHERE partner_id = :partner_id"),
        {"partner_id": partner_id},
    )
    return [(org_id, domain) for org_id, domain in rows]


@dataclass(frozen=True, slots=True)
class EmailParticipants:
    id: UUID
    occurred_at: datetime
    participant_addresses: list[str]


async def emails_with_domains(
    session: AsyncSession, org_id: UUID, domains: Sequence[str]
) -> list[EmailParticipants]:
    """Emails with a participant under `domains`."""
    rows = await session.execute(
        text(
            "SELECT e.id, e.occurred_at, e.participant_addresses FROM ce_emails e "
            "WHERE e.id IN (SELECT p.email_id FROM ce_email_participants p "
            "WHERE p.org_id = :org_id AND p.kind = 'domain' "
            "AND p.value = ANY(CAST(:domains AS text[])))"
        ),
        {"domains": list(domains), "org_id": org_id},
    )
    return [EmailParticipants(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class LinkDetail:
    """A link of an email and one address (contact) or domain (partner) behind it."""

    contact_id: UUID | None
    partner_id: UUID | None
    key: str | None


async def link_details(session: AsyncSession, email_id: UUID) -> list[LinkDetail]:
    """The email's links with the addresses / domains that explain them."""
    rows = await session.execute(
        text(
            "SELECT l.contact_id, NULL::uuid AS partner_id, ce.email AS key "
            "FROM ce_email_links l LEFT JOIN contact_emails ce ON ce.contact_id = l.contact_id "
            "WHERE l.email_id = :email_id AND l.contact_id IS NOT NULL "
            "UNION ALL "
            "SELECT NULL::uuid, l.partner_id, pd.domain "
            "FROM ce_email_links l LEFT JOIN partner_domains pd ON pd.partner_id = l.partner_id "
            "WHERE l.email_id = :email_id AND l.partner_id IS NOT NULL"
        ),
        {"email_id": email_id},
    )
    return [LinkDetail(*row) for row in rows]
