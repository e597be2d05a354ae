"""Send → open → click → bounce, through the sandbox over HTTP for both providers: events,
counters and exactly one notification each; and every kind of bad token answers exactly
like a valid miss and records nothing."""

from __future__ import annotations

import email
import re
import uuid
from email import policy

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.sync.service import run_sync
from app.tracking.classify import classify
from app.tracking.instrument import _Rewriter
from app.tracking.tokens import make_token, read_token
from tests.fixtures.accounts import connect
from tests.fixtures.database import email_row, scalar
from tests.fixtures.events import Events
from tests.fixtures.mailboxes import seed, sent_log
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.worker import run_due_jobs

HUMAN = {
    "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Safari/605.1.15"
}


async def _send(
    client: httpx.AsyncClient, app: FastAPI, org: Org, account_id: str, mailbox: str, provider: str
) -> tuple[str, str]:
    r = await client.post(
        "/v1/emails",
        headers={**org.headers(), "Idempotency-Key": "k1"},
        json={
            "account_id": account_id,
            "to": ["pat@example.net"],
            "subject": "Results",
            "text": "See the portal",
            "html": '<p>See <a href="https://portal.example.org/r?id=7">'
            'the portal</a> or <a href="mailto:x@y.z">mail</a></p>',
        },
    )
    assert r.status_code == 202, r.text
    email_id = r.json()["id"]
    await run_due_jobs(app, ["priority"])
    raw = (await sent_log(client, provider, mailbox))[-1]["raw"]
    return email_id, raw


async def _sent_from_new_gmail_org(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, name: str
) -> tuple[Org, str, str]:
    """A new org with a connected Gmail mailbox and one tracked email sent from it:
    (org, email id, the raw message in the sandbox's sent mailbox)."""
    org: Org = await make_org(name)
    mailbox = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:6]}@gmail.test"
    account = await connect(client, "gmail", org.headers(), login_hint=mailbox)
    email_id, raw = await _send(client, app, org, account["id"], mailbox, "gmail")
    return org, email_id, raw


def _html_of(raw: str) -> str:
    msg = email.message_from_string(raw, policy=policy.default)
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["gmail", "outlook"])
async def test_send_open_click_bounce(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    test_settings: Settings,
    provider: str,
) -> None:
    org: Org = await make_org(f"Tracking {provider}")
    mailbox = f"track-{uuid.uuid4().hex[:6]}@{provider}.test"
    account = await connect(client, provider, org.headers(), login_hint=mailbox)
    await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]))
    async with Events(test_settings) as listener:
        email_id, raw = await _send(client, app, org, account["id"], mailbox, provider)
        html = _html_of(raw)
        pixel = re.search(r'src="(http[^"]+/t/o/[^"]+)"', html)
        links = re.findall(r'href="([^"]+)"', html)
        assert pixel, html
        assert any("/t/c/" in link for link in links)
        assert "mailto:x@y.z" in links  # untouched
        assert "portal.example.org" not in html  # the URL is only server-side
        click_url = next(link for link in links if "/t/c/" in link)
        pixel_path = pixel.group(1).split("127.0.0.1:8000")[1]
        click_path = click_url.split("127.0.0.1:8000")[1]
        # the recipient reads it an hour later (fetches at delivery time are scanners)
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("UPDATE ce_emails SET sent_at = now() - interval '1 hour' WHERE id = :e"),
                {"e": email_id},
            )

        # a machine fetch (Gmail's image proxy): an event, no counter, no notification
        r = await client.get(
            pixel_path,
            headers={
                "User-Agent": "Mozilla/5.0 (Windows NT "
                "5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
            },
        )
        assert r.status_code == 200
        # two human opens: counted twice, notified once
        for _ in range(2):
            r = await client.get(pixel_path, headers=HUMAN)
            assert r.content[:6] == b"GIF89a"
            assert len(r.content) == 43
            assert "no-store" in r.headers["cache-control"]
        row = await email_row(owner_engine, email_id)
        assert row["open_count"] == 2
        assert row["first_opened_at"] is not None
        r = await client.get(click_path, headers=HUMAN)
        assert r.status_code == 302
        assert r.headers["location"] == "https://portal.example.org/r?id=7"
        await client.get(click_path, headers=HUMAN)
        assert (await email_row(owner_engine, email_id))["click_count"] == 2

        # a bounce: a DSN for our message arrives in the mailbox and is synced
        message_id = email.message_from_string(raw)["Message-ID"]
        dsn = (
            f"From: Mail Delivery Subsystem <mailer-daemon@mx.example.net>\r\nTo: {mailbox}\r\n"
            "Subject: Delivery Status Notification (Failure)\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
            "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.example.net\r\n\r\n"
            "Final-Recipient: rfc822; pat@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
            "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            f"Message-ID: {message_id}\r\nTo: pat@example.net\r\nSubject: Results\r\n\r\n"
            "--b1--\r\n"
        ).encode()
        await seed(client, provider, mailbox, dsn)
        await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]))
        row = await email_row(owner_engine, email_id)
        assert row["status"] == "bounced"
        assert row["bounced_at"] is not None
        await run_sync(app.state.ctx, org.id, uuid.UUID(account["id"]))  # no second bounce
    events = await listener.heard(wait=0)

    kinds = await scalar(
        owner_engine,
        "SELECT count(*) FROM ce_email_tracking_events WHERE email_id = :e",
        e=email_id,
    )
    assert kinds == 6  # 1 machine + 2 human opens, 2 clicks, 1 bounced recipient
    async with owner_engine.connect() as conn:
        notes = (
            await conn.execute(
                text(
                    "SELECT type, user_id::text FROM notifications WHERE org_id = :o ORDER BY type"
                ),
                {"o": org.id},
            )
        ).all()
    assert [n.type for n in notes] == ["email_bounced", "email_clicked", "email_opened"]
    assert {n.user_id for n in notes} == {org["admin"]["user_id"]}
    tracking = [e for e in events if e["event"] == "ce.email.tracking"]
    assert {e["type"] for e in tracking} == {"opened", "clicked", "bounced"}
    assert all(e["email_id"] == email_id and e["org_id"] == str(org.id) for e in tracking)
    assert (
        next(e for e in tracking if e["type"] == "clicked")["link_url"]
        == "https://portal.example.org/r?id=7"
    )
    detail = (await client.get(f"/v1/emails/{email_id}", headers=org.headers())).json()
    assert detail["tracking"]["opens"] == 2
    assert detail["tracking"]["clicks"] == 2
    assert detail["tracking"]["bounced"] is True


@pytest.mark.asyncio
async def test_bad_tokens_answer_like_a_valid_miss_and_record_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    org_a: Org,
    org_b: Org,
    owner_engine: AsyncEngine,
    test_settings: Settings,
) -> None:
    secret = test_settings.tracking_token_secret.get_secret_value()
    before = await scalar(owner_engine, "SELECT count(*) FROM ce_email_tracking_events")
    valid_miss = make_token(secret, "o", org_a.id, uuid.uuid4())  # signed, no such email
    forged = make_token("another-secret", "o", org_a.id, uuid.uuid4())
    click_as_open = make_token(secret, "c", org_a.id, uuid.uuid4())
    tokens = [
        valid_miss,
        forged,
        valid_miss[:-3],
        click_as_open,
        "x" * 64,
        "%00",
        make_token(secret, "o", org_b.id, uuid.uuid4()),
    ]
    answers = []
    for token in tokens:
        r = await client.get(f"/t/o/{token}", headers=HUMAN)
        answers.append(
            (r.status_code, r.content, r.headers["content-type"], r.headers["cache-control"])
        )
    assert len(set(answers)) == 1
    assert answers[0][0] == 200
    for token in tokens:
        r = await client.get(f"/t/c/{token}", headers=HUMAN)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
    assert await scalar(owner_engine, "SELECT count(*) FROM ce_email_tracking_events") == before
    assert (
        read_token(secret, "o", valid_miss[:-1] + ("A" if valid_miss[-1] != "A" else "B")) is None
    )


@pytest.mark.asyncio
async def test_over_the_rate_limit_the_gif_is_served_and_nothing_recorded(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    _, email_id, raw = await _sent_from_new_gmail_org(client, app, make_org, "Rate limit")
    pixel = re.search(r'src="(http[^"]+/t/o/[^"]+)"', _html_of(raw))
    assert pixel
    path = pixel.group(1).split("127.0.0.1:8000")[1]
    limit = int(app.state.settings.tracking_token_rate_limit.split("/")[0])
    answers = set()
    for _ in range(limit + 5):
        r = await client.get(path, headers=HUMAN)
        answers.add((r.status_code, r.content))
    assert len(answers) == 1
    opens = await scalar(
        owner_engine,
        "SELECT count(*) FROM ce_email_tracking_events WHERE email_id = :e AND type = 'opened'",
        e=email_id,
    )
    assert opens == limit


@pytest.mark.asyncio
async def test_an_app_with_its_own_tracking_secret_verifies_the_tokens_it_sends(
    make_org: MakeOrg, owner_engine: AsyncEngine, test_settings: Settings
) -> None:
    """create_app(settings) signs the pixel and the links with its settings' secret, not
    the environment's, so its own endpoints accept them."""
    from app.main import create_app

    own_secret = "an-app-of-its-own-" + uuid.uuid4().hex
    assert own_secret != test_settings.tracking_token_secret.get_secret_value()
    settings = test_settings.model_copy(update={"tracking_token_secret": SecretStr(own_secret)})
    application = create_app(settings)
    application.state.http_transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://127.0.0.1:8000"
        ) as own_client,
    ):
        _, email_id, raw = await _sent_from_new_gmail_org(
            own_client, application, make_org, "Own secret"
        )
        html = _html_of(raw)
        pixel = re.search(r'src="http[^"]+/t/o/([^"]+)"', html)
        click = re.search(r'href="http[^"]+/t/c/([^"]+)"', html)
        assert pixel
        assert click
        assert read_token(own_secret, "o", pixel.group(1)) is not None
        async with owner_engine.begin() as conn:  # read an hour later: a human open
            await conn.execute(
                text("UPDATE ce_emails SET sent_at = now() - interval '1 hour' WHERE id = :e"),
                {"e": email_id},
            )
        await own_client.get(f"/t/o/{pixel.group(1)}", headers=HUMAN)
        r = await own_client.get(f"/t/c/{click.group(1)}", headers=HUMAN)
    assert r.status_code == 302
    assert r.headers["location"] == "https://portal.example.org/r?id=7"
    assert (await email_row(owner_engine, email_id))["open_count"] == 1


def test_rewriter_keeps_markup_and_finds_only_http_links() -> None:
    rewriter = _Rewriter()
    rewriter.feed(
        '<!DOCTYPE html><p class="a">Hi &amp; <a href="https://x.org/?a=1&amp;b=2" '
        'id=l>x</a> <a href="mailto:a@b.c">m</a> <a href="#top">t</a><br/>'
        "<!-- c --></p>"
    )
    rewriter.close()
    out = "".join(rewriter.out)
    assert rewriter.links == ["https://x.org/?a=1&b=2"]
    assert 'href="mailto:a@b.c"' in out
    assert 'href="#top"' in out
    assert "<!-- c -->" in out
    assert "&amp;" in out


@pytest.mark.parametrize(
    ("agent", "age", "expected"),
    [
        (HUMAN["User-Agent"], 3600.0, "human"),
        ("Mozilla/5.0", 3600.0, "machine"),  # Apple Mail Privacy Protection
        ("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", 3600.0, "machine"),
        ("Mozilla/5.0 (compatible; BingPreview/1.0b)", 3600.0, "machine"),
        ("python-requests/2.31", 3600.0, "machine"),
        ("", 3600.0, "machine"),
        (HUMAN["User-Agent"], 0.5, "machine"),  # a scanner at delivery time
    ],
)
def test_classification(agent: str, age: float, expected: str) -> None:
    assert classify(agent, age) == expected


@pytest.mark.asyncio
async def test_buffered_recorder_writes_every_open_in_batches(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    import time

    from app.tracking.limiter import TrackingLimiter
    from app.tracking.recorder import OpenRecorder

    org, email_id, _ = await _sent_from_new_gmail_org(client, app, make_org, "Buffered")
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE ce_emails SET sent_at = now() - interval '1 hour' WHERE id = :e"),
            {"e": email_id},
        )
    settings = app.state.settings.model_copy(update={"tracking_token_rate_limit": "30/minute"})
    secret = settings.tracking_token_secret.get_secret_value()
    token = make_token(secret, "o", org.id, uuid.UUID(email_id))
    forged = make_token("another-secret", "o", org.id, uuid.UUID(email_id))
    recorder = OpenRecorder(
        app.state.db.engine, secret, TrackingLimiter(settings), flush_ms=20, max_batch=7
    )
    for i in range(25):
        agent = "python-requests/2.31" if i % 5 == 0 else HUMAN["User-Agent"]
        recorder.note(token, f"10.0.0.{i % 3}", agent, time.time())
        recorder.note(forged, "10.0.0.9", HUMAN["User-Agent"], time.time())
    for _ in range(10):  # past the token's 30/minute: served elsewhere, recorded nowhere
        recorder.note(token, "10.0.0.7", HUMAN["User-Agent"], time.time())
    await recorder.close()  # flushes what is still buffered
    opens = await scalar(
        owner_engine,
        "SELECT count(*) FROM ce_email_tracking_events WHERE email_id = :e AND type = 'opened'",
        e=email_id,
    )
    assert opens == 30
    assert (await email_row(owner_engine, email_id))["open_count"] == 25  # 5 machine opens
    assert (
        await scalar(
            owner_engine,
            "SELECT count(*) FROM notifications WHERE org_id = :o AND type = 'email_opened'",
            o=org.id,
        )
        == 1
    )


@pytest.mark.asyncio
async def test_batched_limits_admit_exactly_what_one_hit_at_a_time_would() -> None:
    import random

    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    from app.tracking.limiter import TrackingLimiter

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        tracking_rate_limit="40/minute",
        tracking_token_rate_limit="7/minute",
    )
    batched = TrackingLimiter(settings)
    one_by_one = FixedWindowRateLimiter(MemoryStorage())
    per_client, per_token = parse("40/minute"), parse("7/minute")
    rng = random.Random(7)
    answers: set[bool] = set()
    for _ in range(20):
        hits = [
            (f"c{rng.randrange(4)}", f"t{rng.randrange(9)}") for _ in range(rng.randrange(1, 30))
        ]
        expected = []
        for client_, token in hits:
            by_client = one_by_one.hit(per_client, "track-ip", client_)
            by_token = one_by_one.hit(per_token, "track-token", token)
            expected.append(by_client and by_token)
        assert await batched.admit(hits) == expected
        answers.update(expected)
    assert answers == {True, False}  # the runs both admitted and refused hits


@pytest.mark.asyncio
async def test_a_recorder_behind_paces_the_pixel_until_the_writer_takes_the_notes(
    client: httpx.AsyncClient, app: FastAPI, make_org: MakeOrg, owner_engine: AsyncEngine
) -> None:
    import asyncio
    import time

    from app.tracking.limiter import TrackingLimiter
    from app.tracking.recorder import MAX_PACE_SECONDS, OpenRecorder

    org, email_id, _ = await _sent_from_new_gmail_org(client, app, make_org, "Back pressure")
    settings = app.state.settings
    secret = settings.tracking_token_secret.get_secret_value()
    token = make_token(secret, "o", org.id, uuid.UUID(email_id))
    # an interval far longer than the test: only a full batch can start a write
    recorder = OpenRecorder(
        app.state.db.engine,
        secret,
        TrackingLimiter(settings),
        flush_ms=60_000,
        max_batch=2,
        max_pending=6,
    )
    paces = [recorder.note(token, "10.0.0.1", HUMAN["User-Agent"], time.time()) for _ in range(6)]
    # paced past 2 * max_batch, more the longer the backlog, the most at max_pending
    assert paces[:4] == [0.0] * 4
    assert 0 < paces[4] < paces[5] == MAX_PACE_SECONDS
    await asyncio.wait_for(recorder.pace(paces[5]), timeout=10)
    assert len(recorder._notes) < 6  # the writer took them
    await recorder.close()
    opens = await scalar(
        owner_engine,
        "SELECT count(*) FROM ce_email_tracking_events WHERE email_id = :e AND type = 'opened'",
        e=email_id,
    )
    assert opens == 6


@pytest.mark.asyncio
async def test_a_click_on_a_very_long_link_redirects_and_its_event_fits(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    owner_engine: AsyncEngine,
    test_settings: Settings,
) -> None:
    """A link longer than NOTIFY's payload limit: the click still redirects, and its
    ce.email.tracking event leaves the URL out (`truncated`) instead of failing the click."""
    _, email_id, raw = await _sent_from_new_gmail_org(client, app, make_org, "Long link")
    long_url = "https://portal.example.org/r?q=" + "x" * 9000
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE ce_email_tracked_links SET url = :u WHERE email_id = :e"),
            {"u": long_url, "e": email_id},
        )
    click_url = next(
        link for link in re.findall(r'href="([^"]+)"', _html_of(raw)) if "/t/c/" in link
    )
    async with Events(test_settings) as listener:
        r = await client.get(click_url.split("127.0.0.1:8000")[1], headers=HUMAN)
        assert r.status_code == 302
        assert r.headers["location"] == long_url
    clicks = [e for e in await listener.heard(wait=1) if e.get("type") == "clicked"]
    assert len(clicks) == 1, clicks
    assert clicks[0]["email_id"] == email_id
    assert clicks[0]["truncated"] is True
    assert "link_url" not in clicks[0]
