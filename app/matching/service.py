"""Linking emails to CE-01 contacts (by address) and CE-02 partners (by domain).

Who links: on an inbound email the sender and every recipient, on an outbound email every
recipient; never the mailbox's own address (the member of staff is not a contact of their
own mail). A contact matches when one of its addresses equals a linking address
(normalised, see `app.matching.normalize`); a partner matches when one of its domains is
the address's domain or a parent of it down to the registrable domain, and never through
a free-mail domain. Each link row makes exactly one CE-04 activity (the DB trigger).

Emails keep their linking addresses and domains in `participant_addresses` /
`participant_domains` (GIN-indexed), so contacts and partners created later are linked to
existing mail with one indexed statement (`link_existing_emails_for_*`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.matching import repository
from app.matching.normalize import (
    candidate_partner_domains,
    is_free_mail_domain,
    normalize_address,
    normalize_domain,
    registrable_domain,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkKeys:
    """What one email can link through."""

    addresses: tuple[str, ...]
    """Normalised linking addresses (the own mailbox excluded)."""
    lookup_addresses: tuple[str, ...]
    """`addresses` plus their as-written forms where they differ (a Unicode domain next to
    its IDNA form), so a contact stored either way matches: `participant_addresses`."""
    partner_domains: tuple[str, ...]
    """Domains a partner may be matched on (free mail and public suffixes excluded)."""
    participant_domains: tuple[str, ...]
    """Every suffix of two labels or more of the addresses' domains: `participant_domains`."""


def _address_forms(value: str) -> tuple[str | None, list[str]]:
    raw = value.strip().lower()
    normalized = normalize_address(raw)
    forms = [f for f in (normalized, raw) if f and "@" in f]
    return normalized, list(dict.fromkeys(forms))


def same_address(a: str, b: str) -> bool:
    """True when `a` and `b` are one mailbox (normalised or as written, case-insensitive)."""
    return bool(set(_address_forms(a)[1]).intersection(_address_forms(b)[1]))


def domain_suffixes(domain: str) -> list[str]:
    """``a.b.hospital.org`` → ``[a.b.hospital.org, b.hospital.org, hospital.org]``."""
    labels = [label for label in domain.strip(".").split(".") if label]
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def link_keys(
    *,
    direction: str,
    own_address: str | None,
    sender: str | None,
    recipients: Iterable[str],
) -> LinkKeys:
    """The linking addresses and domains of one email (see the module docstring)."""
    own_normalized, own_forms = _address_forms(own_address or "")
    excluded = set(own_forms) | ({own_normalized} if own_normalized else set())
    candidates = [sender] if direction == "inbound" and sender else []
    candidates.extend(recipients)
    addresses: list[str] = []
    lookup: list[str] = []
    for value in candidates:
        normalized, forms = _address_forms(value)
        if not forms or excluded.intersection(forms):
            continue
        if normalized:
            addresses.append(normalized)
        lookup.extend(forms)
    partner_domains: list[str] = []
    suffixes: list[str] = []
    for address in dict.fromkeys(addresses):
        partner_domains.extend(candidate_partner_domains(address))
    for form in dict.fromkeys(lookup):
        suffixes.extend(domain_suffixes(form.rpartition("@")[2]))
    return LinkKeys(
        addresses=tuple(dict.fromkeys(addresses)),
        lookup_addresses=tuple(dict.fromkeys(lookup)),
        partner_domains=tuple(dict.fromkeys(partner_domains)),
        participant_domains=tuple(dict.fromkeys(suffixes)),
    )


@dataclass(frozen=True, slots=True)
class Matches:
    contact_ids: tuple[UUID, ...]
    partner_ids: tuple[UUID, ...]


async def match_links(session: AsyncSession, keys: Sequence[LinkKeys]) -> list[Matches]:
    """Contacts and partners of many emails (a sync page) with one query."""
    addresses = list(dict.fromkeys(a for k in keys for a in k.lookup_addresses))
    domains = list(dict.fromkeys(d for k in keys for d in k.partner_domains))
    contacts, partners = await repository.find_targets(session, addresses, domains)
    matches = []
    for k in keys:
        contact_ids = {c for a in k.lookup_addresses for c in contacts.get(a, ())}
        partner_ids = {p for d in k.partner_domains for p in partners.get(d, ())}
        matches.append(Matches(tuple(sorted(contact_ids)), tuple(sorted(partner_ids))))
    return matches


async def match_contacts_by_address(
    session: AsyncSession, addresses: Iterable[str]
) -> dict[str, set[UUID]]:
    """Contact ids per normalised address (addresses that match nothing are left out)."""
    forms = {a: _address_forms(a) for a in addresses}
    lookup = list(dict.fromkeys(f for _, fs in forms.values() for f in fs))
    contacts, _ = await repository.find_targets(session, lookup, [])
    result: dict[str, set[UUID]] = {}
    for normalized, fs in forms.values():
        found = {c for f in fs for c in contacts.get(f, ())}
        if found and normalized:
            result.setdefault(normalized, set()).update(found)
    return result


async def match_partners_by_domain(
    session: AsyncSession, addresses: Iterable[str]
) -> dict[str, set[UUID]]:
    """Partner ids per normalised address: partners owning the address's domain or a parent
    of it; free-mail addresses never match."""
    candidates = {}
    for value in addresses:
        normalized = normalize_address(value)
        if normalized:
            candidates[normalized] = candidate_partner_domains(normalized)
    domains = list(dict.fromkeys(d for ds in candidates.values() for d in ds))
    _, partners = await repository.find_targets(session, [], domains)
    result: dict[str, set[UUID]] = {}
    for address, ds in candidates.items():
        found = {p for d in ds for p in partners.get(d, ())}
        if found:
            result[address] = found
    return result


def linkable_partner_domain(domain: str) -> str | None:
    """The form of a stored partner domain that can match mail, or None when it never may
    (free mail, a public suffix, not a domain)."""
    normalized = normalize_domain(domain)
    if normalized is None or registrable_domain(normalized) is None:
        return None
    if is_free_mail_domain(normalized):
        return None
    return normalized


async def link_existing_emails_for_contact(session: AsyncSession, contact_id: UUID) -> int:
    """Link a new (or changed) contact to the existing emails of its org that one of its
    addresses took part in. Idempotent; returns the number of new links (= activities).
    Call it in the org's transaction after the contact and its addresses are written."""
    created = await repository.link_emails_to_contact(session, contact_id)
    logger.info("contact linked to existing emails", extra={"count": created})
    return created


async def link_existing_emails_for_partner(session: AsyncSession, partner_id: UUID) -> int:
    """Link a new (or changed) partner to the existing emails of its org with a participant
    under one of its domains (subdomains included). Idempotent; returns the new links."""
    rows = await repository.partner_domains(session, partner_id)
    if not rows:
        return 0
    org_id = rows[0][0]
    domains = {d for _, raw in rows if (d := linkable_partner_domain(raw))}
    if not domains:
        return 0
    emails = await repository.emails_with_domains(session, org_id, sorted(domains))
    links = []
    for email in emails:
        # The GIN lookup is a superset; the rule itself is `candidate_partner_domains`,
        # exactly as for new mail.
        if any(
            domains.intersection(candidate_partner_domains(a)) for a in email.participant_addresses
        ):
            links.append((email.id, None, partner_id, email.occurred_at))
    created = await repository.insert_links(session, org_id, links)
    logger.info("partner linked to existing emails", extra={"count": created})
    return created
