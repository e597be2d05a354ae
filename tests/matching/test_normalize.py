"""Address and domain normalisation used to match emails to contacts and partners."""

from __future__ import annotations

import socket

import pytest

from app.matching import normalize
from app.matching.normalize import (
    address_domain,
    candidate_partner_domains,
    domain_matches,
    is_free_mail_domain,
    normalize_address,
    normalize_domain,
    registrable_domain,
)

# --- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"Name" <A.B@Example.COM >', "a.b@example.com"),
        ("  A.B@Example.COM  ", "a.b@example.com"),
        ("Jane Doe <JANE@hospital.org>", "jane@hospital.org"),
        ("<jane@hospital.org.>", "jane@hospital.org"),
        ("'jane@hospital.org'", "jane@hospital.org"),
        ("mailto:Jane@Hospital.org?subject=hi", "jane@hospital.org"),
        ("alice@example.com <bob@example.com>", "bob@example.com"),  # the mailbox, not the name
        ("jose@Clínica.example", "jose@xn--clnica-4va.example"),
        ("jose@xn--clnica-4va.example", "jose@xn--clnica-4va.example"),
        ('"john doe"@example.com', '"john doe"@example.com'),
        # Not merged on purpose: a different string may be a different person.
        ("jane.doe+billing@gmail.com", "jane.doe+billing@gmail.com"),
        ("j.a.n.e@gmail.com", "j.a.n.e@gmail.com"),
    ],
)
def test_normalize_address(value: str, expected: str) -> None:
    assert normalize_address(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "not an address",
        "@example.com",
        "jane@",
        "jane@localhost",
        "jane doe@example.com",
        "jane@exa mple.com",
        "jane@[192.168.0.1]",
        "jane@192.168.0.1",
        "jane@-bad-.com",
        "jane@example..com",
        "undisclosed-recipients:;",
        "a" * 65 + "@example.com",
        "jane@" + "a" * 64 + ".com",
    ],
)
def test_normalize_address_rejects_non_addresses(value: str) -> None:
    assert normalize_address(value) is None


def test_address_domain() -> None:
    assert address_domain("Jane <Jane@Mail.Hospital.ORG>") == "mail.hospital.org"
    assert address_domain("nonsense") == ""


# --- domains ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("mail.hospital.org", "hospital.org"),
        ("hospital.org", "hospital.org"),
        ("a.b.c.hospital.org", "hospital.org"),
        ("x.hospital.co.uk", "hospital.co.uk"),
        ("hospital.co.uk", "hospital.co.uk"),
        ("dept.trust.nhs.uk", "trust.nhs.uk"),
        ("mail.clinic.com.au", "clinic.com.au"),
        ("Mail.Hospital.ORG.", "hospital.org"),
        ("mail.bücher.de", "xn--bcher-kva.de"),
        ("user.github.io", "user.github.io"),  # private-section suffix: separate owners
        ("co.uk", None),
        ("nhs.uk", None),
        ("org", None),
        ("localhost", None),
        ("", None),
        ("not a host", None),
    ],
)
def test_registrable_domain(host: str, expected: str | None) -> None:
    assert registrable_domain(host) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@Hospital.org", "hospital.org"),
        ("Hospital.ORG", "hospital.org"),
        ("https://www.hospital.org/", "hospital.org"),
        ("http://www.hospital.org/contact?x=1#top", "hospital.org"),
        ("HTTPS://Mail.Hospital.org:8443/path", "mail.hospital.org"),
        ("www.hospital.org", "hospital.org"),
        ("hospital.org.", "hospital.org"),
        ("  hospital.org..  ", "hospital.org"),
        ("*.hospital.org", "hospital.org"),
        ("hospital.org/contact", "hospital.org"),
        ("jane@hospital.org", "hospital.org"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
        ("trust.nhs.uk", "trust.nhs.uk"),
        ("co.uk", None),  # a public suffix would match everyone under it
        ("com", None),
        ("github.io", None),
        ("", None),
        ("https://", None),
        ("http://[::1]/", None),
        ("10.0.0.1", None),
        ("hospital", None),
        ("hos pital.org", None),
    ],
)
def test_normalize_domain(value: str, expected: str | None) -> None:
    assert normalize_domain(value) == expected


@pytest.mark.parametrize(
    ("email_domain", "partner_domain", "expected"),
    [
        ("hospital.org", "hospital.org", True),
        ("a.hospital.org", "hospital.org", True),
        ("a.b.hospital.org", "hospital.org", True),
        ("Mail.Hospital.ORG", "@hospital.org", True),
        ("a.hospital.org", "https://www.hospital.org/", True),
        ("x.hospital.co.uk", "hospital.co.uk", True),
        ("cardiology.hospital.org", "cardiology.hospital.org", True),
        ("hospital.org", "cardiology.hospital.org", False),  # partner is narrower
        ("evilhospital.org", "hospital.org", False),
        ("hospital.org.evil.com", "hospital.org", False),
        ("hospital.org-evil.com", "hospital.org", False),
        ("hospital.com", "hospital.org", False),
        ("other.co.uk", "co.uk", False),  # public suffix as partner domain
        ("gmail.com", "gmail.com", False),  # free mail never matches, even if listed
        ("googlemail.com", "googlemail.com", False),
        ("hotmail.co.uk", "hotmail.co.uk", False),
        ("", "hospital.org", False),
        ("hospital.org", "", False),
    ],
)
def test_domain_matches(email_domain: str, partner_domain: str, expected: bool) -> None:
    assert domain_matches(email_domain, partner_domain) is expected


@pytest.mark.parametrize(
    "domain",
    [
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.jp",
        "yahoo.fr",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.de",
        "gmx.net",
        "gmx.at",
        "mail.com",
        "yandex.ru",
        "yandex.kz",
        "zoho.com",
        "web.de",
        "qq.com",
        "GMAIL.COM",
        "@gmail.com",
        "mail.yahoo.co.jp",  # a subdomain of a provider
    ],
)
def test_free_mail_domains(domain: str) -> None:
    assert is_free_mail_domain(domain)


@pytest.mark.parametrize(
    "domain",
    [
        "hospital.org",
        "nhs.net",
        "trust.nhs.uk",
        "kaiserpermanente.org",
        "medscape.com",  # listed by the package, but an organisation's own domain
        "google.com",
        "microsoft.com",
        "gmail.hospital.org",  # the brand label only counts as the registrable name
        "",
        "co.uk",
    ],
)
def test_not_free_mail_domains(domain: str) -> None:
    assert not is_free_mail_domain(domain)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (
            "Jane <jane@a.b.hospital.co.uk>",
            ["a.b.hospital.co.uk", "b.hospital.co.uk", "hospital.co.uk"],
        ),
        ("jane@mail.hospital.org", ["mail.hospital.org", "hospital.org"]),
        ("jane@hospital.org", ["hospital.org"]),
        ("jane@dept.trust.nhs.uk", ["dept.trust.nhs.uk", "trust.nhs.uk"]),
        ("jane@gmail.com", []),
        ("jane@mail.yahoo.co.jp", []),
        ("not an address", []),
    ],
)
def test_candidate_partner_domains(address: str, expected: list[str]) -> None:
    assert candidate_partner_domains(address) == expected


def test_candidates_agree_with_domain_matches() -> None:
    address = "x@a.b.hospital.org"
    for partner in ("hospital.org", "b.hospital.org", "a.b.hospital.org", "c.hospital.org"):
        assert (partner in candidate_partner_domains(address)) is domain_matches(
            address_domain(address), partner
        )


def test_public_suffix_list_is_bundled_and_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    normalize._psl.cache_clear()
    try:
        assert registrable_domain("x.hospital.co.uk") == "hospital.co.uk"
        assert candidate_partner_domains("a@mail.hospital.org") == [
            "mail.hospital.org",
            "hospital.org",
        ]
    finally:
        normalize._psl.cache_clear()
