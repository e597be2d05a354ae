"""Matching emails to contacts (by address) and partners (by domain)."""

from app.matching.normalize import (
    address_domain,
    candidate_partner_domains,
    domain_matches,
    is_free_mail_domain,
    normalize_address,
    normalize_domain,
    registrable_domain,
)

__all__ = [
    "address_domain",
    "candidate_partner_domains",
    "domain_matches",
    "is_free_mail_domain",
    "normalize_address",
    "normalize_domain",
    "registrable_domain",
]
