"""Benchmark: the read path (timelines and detail) at a clinic's volume, over HTTP.

Not a test. Needs DATABASE_URL (a migrated database, owner URL). It builds one org with
SQL, in the shape of a real clinic (DESIGN §8, the read-path issue):

- 20 mailboxes (4 of them private), their owners members of the org, plus an admin and a
  member who owns no mailbox;
- 3,000 contacts with one address each, 200 partners with one domain each;
- `--emails` messages (default 1,000,000) over 3 years; a third from or to contacts, the
  rest from or to partner domains; 10% of internet message ids are in two mailboxes (one
  message to two doctors), so the timeline's one-row-per-message rule has work to do;
- one link per email (contact or partner), made through the real trigger (CE-04 activity);

VACUUMs and ANALYZEs (as autovacuum would), starts `ce-email serve` and times each call
through the API as a new user would: the org timeline, `direction=outbound`, `account_id=`,
a contact's and a partner's timeline, each as the first page and page 21 (by cursor), and an
email's detail; as the admin and as a member who owns no mailbox (both "others" to every
mailbox), with the 16 non-private mailboxes at each of the levels `org`, `subject` and
`metadata` in turn. Every call appends its access-audit row, as in production. It prints a
table and, last, one JSON line `{"calls": {name: {"p50_ms", "p99_ms"}}, "emails": N}`;
names are `who.level.call`.

    createdb -h 127.0.0.1 -U postgres ce_scale
    export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ce_scale
    .venv/bin/ce-email migrate
    .venv/bin/python bench/timeline_scale.py                  # builds once, then times
    .venv/bin/python bench/timeline_scale.py --emails 100000  # a quick run

A database already built with the same `--emails` is reused (the org is found by name);
`--rebuild` drops it first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAILBOXES = 20
PRIVATE_MAILBOXES = 4
CONTACTS = 3000
PARTNERS = 200
YEARS = 3
BATCH = 50_000


def _org_name(emails: int) -> str:
    return f"Timeline scale {emails}"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://").replace(
        "postgresql+asyncpg://", "postgresql://"
    )


@dataclass
class Org:
    org_id: uuid.UUID
    admin_id: uuid.UUID
    viewer_id: uuid.UUID
    account_ids: list[uuid.UUID]
    contact_ids: list[uuid.UUID]
    partner_ids: list[uuid.UUID]


def _find(conn: psycopg.Connection[Any], emails: int) -> Org | None:
    row = conn.execute(
        "SELECT id FROM organisations WHERE name = %s", (_org_name(emails),)
    ).fetchone()
    if row is None:
        return None
    org_id = row[0]
    conn.execute("SELECT set_config('app.org_id', %s, false)", (str(org_id),))
    admin = conn.execute(
        "SELECT user_id FROM org_memberships WHERE org_id = %s AND role = 'admin'", (org_id,)
    ).fetchone()
    viewer = conn.execute(
        "SELECT m.user_id FROM org_memberships m JOIN users u ON u.id = m.user_id "
        "WHERE m.org_id = %s AND u.email LIKE 'viewer-%%'",
        (org_id,),
    ).fetchone()
    if admin is None or viewer is None:
        return None

    def ids(sql: str) -> list[uuid.UUID]:
        return [r[0] for r in conn.execute(sql, (org_id,)).fetchall()]

    return Org(
        org_id,
        admin[0],
        viewer[0],
        ids("SELECT id FROM ce_email_accounts WHERE org_id = %s ORDER BY email_address"),
        ids("SELECT id FROM contacts WHERE org_id = %s ORDER BY name"),
        ids("SELECT id FROM partners WHERE org_id = %s ORDER BY name"),
    )


def _build(conn: psycopg.Connection[Any], emails: int) -> Org:
    """The org, its people, mailboxes, contacts, partners and mail, in set-based SQL."""
    started = time.monotonic()
    org_id = uuid.uuid4()
    tag = org_id.hex[:8]
    conn.execute("SELECT set_config('app.org_id', %s, false)", (str(org_id),))
    conn.execute(
        "INSERT INTO organisations (id, name) VALUES (%s, %s)", (org_id, _org_name(emails))
    )

    def user(prefix: str, role: str) -> uuid.UUID:
        user_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO users (id, email, display_name) VALUES (%s, %s, %s)",
            (user_id, f"{prefix}-{tag}@staff.example.org", prefix),
        )
        conn.execute(
            "INSERT INTO org_memberships (org_id, user_id, role) VALUES (%s, %s, %s)",
            (org_id, user_id, role),
        )
        return user_id

    user("admin", "admin")
    user("viewer", "member")
    account_ids = []
    for i in range(MAILBOXES):
        owner = user(f"doctor{i:02d}", "member")
        account_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO ce_email_accounts (id, org_id, owner_user_id, provider, email_address,"
            " visibility) VALUES (%s, %s, %s, %s, %s, %s)",
            (
                account_id,
                org_id,
                owner,
                "gmail" if i % 2 == 0 else "outlook",
                f"doctor{i:02d}-{tag}@riverside-clinic.test",
                "private" if i < PRIVATE_MAILBOXES else "org",
            ),
        )
        account_ids.append(account_id)
    conn.execute(
        "INSERT INTO contacts (org_id, name) "
        "SELECT %s, 'Contact ' || lpad(i::text, 5, '0') FROM generate_series(1, %s::int) AS i",
        (org_id, CONTACTS),
    )
    conn.execute(
        "INSERT INTO contact_emails (org_id, contact_id, email) "
        "SELECT org_id, id, 'patient' || substr(name, 9) || '@mail.example.net' "
        "FROM contacts WHERE org_id = %s",
        (org_id,),
    )
    conn.execute(
        "INSERT INTO partners (org_id, name) "
        "SELECT %s, 'Partner ' || lpad(i::text, 4, '0') FROM generate_series(1, %s::int) AS i",
        (org_id, PARTNERS),
    )
    conn.execute(
        "INSERT INTO partner_domains (org_id, partner_id, domain) "
        "SELECT org_id, id, 'partner' || substr(name, 9) || '.example.org' "
        "FROM partners WHERE org_id = %s",
        (org_id,),
    )
    conn.commit()

    # Distinct messages: `emails` rows of which 10% are the second copy of a message.
    distinct = round(emails / 1.1)
    copies = emails - distinct
    conn.execute(
        "CREATE TEMP TABLE bench_accounts AS SELECT row_number() OVER (ORDER BY email_address)"
        " AS n, id, email_address FROM ce_email_accounts WHERE org_id = %s",
        (org_id,),
    )
    done = 0
    while done < distinct:
        n = min(BATCH, distinct - done)
        # One statement per batch: a message's account, time, direction and counterpart
        # (a contact for every third message, else a partner's domain) from its number.
        conn.execute(
            """
            INSERT INTO ce_emails (org_id, account_id, provider_message_id, provider_thread_id,
                internet_message_id, direction, status, folder, subject, snippet,
                from_address, from_name, to_recipients, text_body, html_body,
                has_attachments, sent_at, received_at, occurred_at)
            SELECT %(org)s, a.id, 'm' || g.i, 't' || (g.i / 3), '<m' || g.i || '@bench.test>',
                   d.direction, CASE d.direction WHEN 'inbound' THEN 'received' ELSE 'sent' END,
                   CASE d.direction WHEN 'inbound' THEN 'INBOX' ELSE 'SENT' END,
                   'Message ' || g.i || ' about the referral',
                   'Snippet of message ' || g.i || ' with a little text',
                   CASE d.direction WHEN 'inbound' THEN c.address ELSE a.email_address END,
                   'Someone',
                   jsonb_build_array(jsonb_build_object('address',
                       CASE d.direction WHEN 'inbound' THEN a.email_address
                            ELSE c.address END, 'name', 'Someone')),
                   repeat('Body text of the message. ', 20), NULL,
                   g.i %% 10 = 0, t.at, t.at, t.at
            FROM generate_series(%(start)s::int, %(stop)s::int) AS g(i)
            CROSS JOIN LATERAL (SELECT CASE WHEN g.i %% 2 = 0 THEN 'inbound'
                                            ELSE 'outbound' END AS direction) d
            CROSS JOIN LATERAL (SELECT now() - make_interval(secs =>
                                  (hashint4(g.i) & 2147483647)::float8 / 2147483647
                                  * %(years)s * 365 * 86400) AS at) t
            JOIN bench_accounts a ON a.n = 1 + (hashint4(g.i + 7) & 2147483647) %% %(boxes)s
            CROSS JOIN LATERAL (SELECT CASE WHEN g.i %% 3 = 0
                THEN 'patient' || lpad((1 + (hashint4(g.i + 11) & 2147483647) %% %(contacts)s)
                                       ::text, 5, '0') || '@mail.example.net'
                ELSE 'staff' || (g.i %% 50) || '@partner'
                     || lpad((1 + (hashint4(g.i + 13) & 2147483647) %% %(partners)s)::text,
                             4, '0') || '.example.org' END AS address) c
            """,
            {
                "org": org_id,
                "start": done + 1,
                "stop": done + n,
                "years": YEARS,
                "boxes": MAILBOXES,
                "contacts": CONTACTS,
                "partners": PARTNERS,
            },
        )
        conn.commit()
        done += n
        print(f"  emails {done:,}/{distinct:,} ({time.monotonic() - started:.0f} s)", flush=True)
    # The second copies: the same internet message id in another mailbox, a minute later.
    conn.execute(
        """
        INSERT INTO ce_emails (org_id, account_id, provider_message_id, provider_thread_id,
            internet_message_id, direction, status, folder, subject, snippet, from_address,
            from_name, to_recipients, text_body, has_attachments, sent_at, received_at,
            occurred_at)
        SELECT e.org_id, a2.id, e.provider_message_id || 'b', e.provider_thread_id,
               e.internet_message_id, 'inbound', 'received', 'INBOX', e.subject, e.snippet,
               e.from_address, e.from_name, e.to_recipients, e.text_body, e.has_attachments,
               e.sent_at, e.received_at, e.occurred_at + interval '1 minute'
        FROM ce_emails e
        JOIN bench_accounts a1 ON a1.id = e.account_id
        JOIN bench_accounts a2 ON a2.n = 1 + a1.n %% %(boxes)s
        WHERE e.org_id = %(org)s
          AND substr(e.provider_message_id, 2)::int <= %(copies)s * 10
          AND substr(e.provider_message_id, 2)::int %% 10 = 0
        """,
        {"org": org_id, "boxes": MAILBOXES, "copies": copies},
    )
    conn.commit()
    print(f"  second copies ({time.monotonic() - started:.0f} s)", flush=True)
    # One link per email to the contact or partner it names; the trigger records the
    # CE-04 activity, as for synced mail.
    for kind, table, column, participant in (
        ("contact", "contact_emails", "email", "address"),
        ("partner", "partner_domains", "domain", "domain"),
    ):
        conn.execute("ANALYZE ce_emails, ce_email_participants")
        conn.execute(
            f"""
            INSERT INTO ce_email_links (org_id, email_id, {kind}_id, occurred_at)
            SELECT e.org_id, e.id, x.{kind}_id, e.occurred_at
            FROM ce_email_participants p
            JOIN ce_emails e ON e.id = p.email_id
            JOIN {table} x ON x.org_id = p.org_id AND x.{column} = p.value
            WHERE p.org_id = %s AND p.kind = '{participant}'
            """,
            (org_id,),
        )
        conn.commit()
        print(f"  {kind} links ({time.monotonic() - started:.0f} s)", flush=True)
    conn.execute("DROP TABLE bench_accounts")
    conn.commit()
    org = _find(conn, emails)
    assert org is not None
    return org


@dataclass
class Call:
    name: str
    token: str
    path: str
    params: dict[str, str]
    page: int  # 1: the first page; 21: follow 20 cursors, time the 21st


LEVELS = ("org", "subject", "metadata")


def _set_level(conn: psycopg.Connection[Any], org: Org, level: str) -> None:
    """Every mailbox that is not private, at `level`."""
    conn.execute(
        "UPDATE ce_email_accounts SET visibility = %s "
        "WHERE org_id = %s AND visibility <> 'private'",
        (level, org.org_id),
    )
    conn.commit()


def _calls(org: Org, tokens: dict[str, str], level: str) -> list[Call]:
    rng = random.Random(7)
    calls: list[Call] = []
    for role, token in tokens.items():
        who = f"{role}.{level}"
        for page in (1, 21):
            suffix = "first" if page == 1 else "page21"
            calls += [
                Call(f"{who}.org.{suffix}", token, "/v1/emails", {}, page),
                Call(
                    f"{who}.outbound.{suffix}",
                    token,
                    "/v1/emails",
                    {"direction": "outbound"},
                    page,
                ),
                Call(
                    f"{who}.account.{suffix}",
                    token,
                    "/v1/emails",
                    {"account_id": str(org.account_ids[PRIVATE_MAILBOXES + 1])},
                    page,
                ),
                Call(
                    f"{who}.contact.{suffix}",
                    token,
                    f"/v1/contacts/{rng.choice(org.contact_ids)}/emails",
                    {},
                    page,
                ),
                Call(
                    f"{who}.partner.{suffix}",
                    token,
                    f"/v1/partners/{rng.choice(org.partner_ids)}/emails",
                    {},
                    page,
                ),
            ]
        calls.append(Call(f"{who}.detail", token, "/v1/emails/{id}", {}, 1))
    return calls


def _time_call(client: httpx.Client, call: Call, rounds: int, email_ids: list[str]) -> list[float]:
    headers = {"Authorization": f"Bearer {call.token}"}
    rng = random.Random(call.name)
    if call.path == "/v1/emails/{id}":
        samples = []
        for _ in range(rounds):
            path = f"/v1/emails/{rng.choice(email_ids)}"
            t0 = time.perf_counter()
            response = client.get(path, headers=headers)
            samples.append((time.perf_counter() - t0) * 1000)
            if response.status_code not in (200, 404):
                raise SystemExit(f"{call.name}: {response.status_code} {response.text[:200]}")
        return samples
    params = {**call.params, "limit": "50"}
    cursor = None
    for _ in range(call.page - 1):
        response = client.get(
            call.path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        response.raise_for_status()
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    if cursor is not None:
        params["cursor"] = cursor
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        response = client.get(call.path, params=params, headers=headers)
        samples.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{call.name}: {response.status_code} {response.text[:200]}")
    return samples


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=40, help="timed requests per call")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("set DATABASE_URL to a migrated database (owner URL)")

    from app.auth.tokens import issue_token
    from app.config import Settings

    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    with psycopg.connect(_libpq(database_url)) as conn:
        org = None if args.rebuild else _find(conn, args.emails)
        if org is not None:
            built = conn.execute(
                "SELECT count(*) FROM ce_emails WHERE org_id = %s", (org.org_id,)
            ).fetchone()
            if built is None or built[0] < args.emails:  # an earlier build did not finish
                org = None
        if org is None:
            conn.execute("DELETE FROM organisations WHERE name = %s", (_org_name(args.emails),))
            conn.commit()
            print(f"building {args.emails:,} emails ...", flush=True)
            org = _build(conn, args.emails)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            conn.autocommit = False
        conn.execute("SELECT set_config('app.org_id', %s, false)", (str(org.org_id),))
        count = conn.execute(
            "SELECT count(*) FROM ce_emails WHERE org_id = %s", (org.org_id,)
        ).fetchone()
        emails = int(count[0]) if count else 0
        sample = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM ce_emails WHERE org_id = %s AND account_id = ANY(%s) "
                "ORDER BY hashtext(id::text) LIMIT 500",
                (org.org_id, org.account_ids[PRIVATE_MAILBOXES:]),
            ).fetchall()
        ]
    tokens = {
        "admin": issue_token(settings, org.admin_id, org.org_id),
        "member": issue_token(settings, org.viewer_id, org.org_id),
    }
    port = _port()
    env = {
        **os.environ,
        "CE_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, dict[str, float]] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(150):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                raise SystemExit("the service did not come up")
            print(f"{'call':<32} {'p50 ms':>8} {'p99 ms':>8}")
            for level in LEVELS:
                with psycopg.connect(_libpq(database_url)) as conn:
                    _set_level(conn, org, level)
                calls = _calls(org, tokens, level)
                # One warm-up pass (connection pool, plan caches), as a user's second
                # screen is.
                for call in calls:
                    _time_call(client, call, 2, sample)
                for call in calls:
                    samples = _time_call(client, call, args.rounds, sample)
                    p50 = statistics.median(samples)
                    p99 = _percentile(samples, 0.99)
                    results[call.name] = {"p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}
                    print(f"{call.name:<32} {p50:>8.1f} {p99:>8.1f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=15)
        with psycopg.connect(_libpq(database_url)) as conn:
            _set_level(conn, org, "org")
    print(json.dumps({"calls": results, "emails": emails}))


if __name__ == "__main__":
    main()
