"""The audit is append-only for the service and tamper-evident for everyone else: the
service role cannot change or delete a row, sealed blocks chain by SHA-256, and
`ce-email audit verify` names the first block that no longer matches."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import jobs, service
from app.audit.chain import GENESIS_HASH, AuditRow, block_hash, canonical
from app.config import Settings
from app.db.rls import org_transaction
from tests.fixtures.database import insert
from tests.fixtures.orgs import MakeOrg, Org

pytestmark = pytest.mark.asyncio


async def _audit_rows(
    owner_engine: AsyncEngine, org: Org, count: int, *, age: timedelta = timedelta(0)
) -> list[uuid.UUID]:
    """Rows as the API writes them (the owner inserts them here to set their time)."""
    ids = []
    for n in range(count):
        ids.append(
            await insert(
                owner_engine,
                "WITH row AS (INSERT INTO ce_email_access_audit (org_id, user_id, action, "
                "email_ids, occurred_at, request_id) VALUES (:org, :user, 'read', "
                "ARRAY[:email]::uuid[], clock_timestamp() - CAST(:age AS interval), :rid) "
                "RETURNING org_id, id, occurred_at), "
                "side AS (INSERT INTO ce_email_access_audit_emails "
                "(org_id, email_id, occurred_at, audit_id) "
                "SELECT org_id, :email, occurred_at, id FROM row) "
                "SELECT id FROM row",
                org=org.id,
                user=uuid.UUID(org["member"]["user_id"]),
                email=uuid.uuid4(),
                age=age,
                rid=f"req{n}",
            )
        )
    return ids


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": str(settings.database_url)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ce_email_access_audit SET request_id = 'forged'",
        "DELETE FROM ce_email_access_audit",
        "TRUNCATE ce_email_access_audit",
        "UPDATE ce_email_audit_blocks SET hash = repeat('0', 64)",
        "DELETE FROM ce_email_audit_blocks",
        "UPDATE ce_email_access_audit_emails SET email_id = gen_random_uuid()",
        "DELETE FROM ce_email_access_audit_emails",
    ],
)
async def test_the_service_role_cannot_change_or_delete_audit_rows(
    app_engine: AsyncEngine, owner_engine: AsyncEngine, org_a: Org, statement: str
) -> None:
    await _audit_rows(owner_engine, org_a, 1)
    with pytest.raises(DBAPIError, match="permission denied"):
        async with org_transaction(app_engine, org_a.id) as session:
            await session.execute(text(statement))


async def test_the_seal_function_cannot_move_sealed_rows(
    app_engine: AsyncEngine, owner_engine: AsyncEngine, make_org: MakeOrg
) -> None:
    org: Org = await make_org("Reseal")
    ids = await _audit_rows(owner_engine, org, 2)
    await jobs.seal_all(app_engine)
    with pytest.raises(DBAPIError, match="does not match"):
        async with org_transaction(app_engine, org.id) as session:
            await session.execute(
                text("SELECT ce_email_audit_mark_sealed(1, CAST(:ids AS uuid[]))"),
                {"ids": ids[:1]},
            )


async def test_cli_seals_and_verify_names_the_block_of_a_deleted_row(
    app_engine: AsyncEngine,
    owner_engine: AsyncEngine,
    make_org: MakeOrg,
    test_settings: Settings,
) -> None:
    org: Org = await make_org("Tamper")
    first = await _audit_rows(owner_engine, org, 3)
    sealed = await asyncio.to_thread(_cli, test_settings, "seal")
    assert sealed.returncode == 0, sealed.stderr
    assert str(org.id) in sealed.stdout
    second = await _audit_rows(owner_engine, org, 2)
    assert (await asyncio.to_thread(_cli, test_settings, "seal")).returncode == 0

    intact = await asyncio.to_thread(_cli, test_settings, "verify", "--org", str(org.id))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert f"org {org.id}: intact, 2 blocks (blocks 1..2), 5 rows" in intact.stdout

    # someone with database access removes a row of the second block
    await insert(owner_engine, "DELETE FROM ce_email_access_audit WHERE id = :id", id=second[0])
    broken = await asyncio.to_thread(_cli, test_settings, "verify", "--org", str(org.id))
    assert broken.returncode == 1
    assert f"org {org.id}: BROKEN at block 2:" in broken.stdout
    assert "1 broken" in broken.stdout

    # ... or alters one of the first: the first block that no longer matches is named
    await insert(
        owner_engine,
        "UPDATE ce_email_access_audit SET user_id = gen_random_uuid() WHERE id = :id",
        id=first[1],
    )
    broken = await asyncio.to_thread(_cli, test_settings, "verify")
    assert broken.returncode == 1
    assert f"org {org.id}: BROKEN at block 1: its rows no longer hash" in broken.stdout


async def test_rewriting_a_block_hash_breaks_the_next_link(
    app_engine: AsyncEngine, owner_engine: AsyncEngine, make_org: MakeOrg, monkeypatch: Any
) -> None:
    org: Org = await make_org("Chain")
    monkeypatch.setattr(service, "BLOCK_ROWS", 2)
    ids = await _audit_rows(owner_engine, org, 5)
    report = await jobs.seal_all(app_engine)
    assert (report.blocks, report.rows) == (3, 5)
    [ok] = await jobs.verify_all(app_engine, org.id)
    assert ok.intact
    assert (ok.blocks, ok.rows) == (3, 5)

    # alter a row of block 2 and recompute block 2's hash to match: block 3's link breaks
    await insert(
        owner_engine,
        "UPDATE ce_email_access_audit SET request_id = 'forged' WHERE id = :id",
        id=ids[2],
    )
    async with org_transaction(app_engine, org.id) as session:
        rows = await service.repository.block_rows(session, 2)
    forged = block_hash((await _block(owner_engine, org, 1))["hash"], rows)
    await insert(
        owner_engine,
        "UPDATE ce_email_audit_blocks SET hash = :h WHERE org_id = :o AND seq = 2",
        h=forged,
        o=org.id,
    )
    [bad] = await jobs.verify_all(app_engine, org.id)
    assert (bad.broken_seq, bad.reason) == (
        3,
        "its previous-hash does not match the block before it",
    )


async def test_a_recorded_head_shows_that_the_newest_blocks_were_deleted(
    app_engine: AsyncEngine,
    owner_engine: AsyncEngine,
    make_org: MakeOrg,
    test_settings: Settings,
) -> None:
    org: Org = await make_org("Anchor")
    await _audit_rows(owner_engine, org, 2)
    await jobs.seal_all(app_engine)
    newest = await _audit_rows(owner_engine, org, 2)
    await jobs.seal_all(app_engine)
    verified = await asyncio.to_thread(_cli, test_settings, "verify", "--org", str(org.id))
    head = f"2:{(await _block(owner_engine, org, 2))['hash']}"
    assert f"4 rows, head {head}" in verified.stdout
    older = f"1:{(await _block(owner_engine, org, 1))['hash']}"

    # someone with database access deletes the newest block and its rows: the chain that is
    # left is whole, so verification alone cannot tell ...
    await insert(owner_engine, "DELETE FROM ce_email_access_audit WHERE id = ANY(:ids)", ids=newest)
    await insert(
        owner_engine, "DELETE FROM ce_email_audit_blocks WHERE org_id = :o AND seq = 2", o=org.id
    )
    alone = await asyncio.to_thread(_cli, test_settings, "verify", "--org", str(org.id))
    assert alone.returncode == 0
    # ... the head recorded outside the database can
    anchored = await asyncio.to_thread(
        _cli, test_settings, "verify", "--org", str(org.id), "--anchor", head
    )
    assert anchored.returncode == 1
    assert (
        f"org {org.id}: BROKEN at block 2: the recorded block is gone: "
        "the newest blocks were deleted" in anchored.stdout
    )
    # an older recorded head that is still there passes; a forged hash does not
    assert (
        await asyncio.to_thread(
            _cli, test_settings, "verify", "--org", str(org.id), "--anchor", older
        )
    ).returncode == 0
    [forged] = await jobs.verify_all(app_engine, org.id, service.Anchor(1, "0" * 64))
    assert (forged.broken_seq, forged.reason) == (1, "its hash is not the recorded one")
    # an anchor needs an org and the printed shape
    bad = await asyncio.to_thread(_cli, test_settings, "verify", "--anchor", older)
    assert bad.returncode == 2
    assert "SEQ:HASH" in bad.stderr


async def _block(owner_engine: AsyncEngine, org: Org, seq: int) -> dict[str, Any]:
    async with owner_engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT * FROM ce_email_audit_blocks WHERE org_id = :o AND seq = :s"),
                    {"o": org.id, "s": seq},
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def test_the_block_hash_is_sha256_over_the_previous_hash_and_canonical_rows(
    app_engine: AsyncEngine, owner_engine: AsyncEngine, make_org: MakeOrg
) -> None:
    org: Org = await make_org("Canonical")
    await _audit_rows(owner_engine, org, 2)
    await jobs.seal_all(app_engine)
    block = await _block(owner_engine, org, 1)
    assert block["prev_hash"] == GENESIS_HASH
    assert block["row_count"] == 2
    async with org_transaction(app_engine, org.id) as session:
        rows = await service.repository.block_rows(session, 1)
    assert block["hash"] == block_hash(GENESIS_HASH, rows)
    sample = AuditRow(
        org.id,
        uuid.UUID(int=1),
        uuid.UUID(int=2),
        "download",
        (uuid.UUID(int=3),),
        uuid.UUID(int=4),
        datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
        "abc",
    )
    assert canonical(sample).decode() == (
        '{"action":"download","attachment_id":"00000000-0000-0000-0000-000000000004",'
        '"email_ids":["00000000-0000-0000-0000-000000000003"],'
        '"id":"00000000-0000-0000-0000-000000000001",'
        '"occurred_at":"2026-12-06T12:00:00.000000Z",'
        f'"org_id":"{org.id}","request_id":"abc",'
        '"user_id":"00000000-0000-0000-0000-000000000002"}'
    )


async def test_retention_deletes_whole_oldest_sealed_blocks_and_the_chain_still_verifies(
    app_engine: AsyncEngine, owner_engine: AsyncEngine, make_org: MakeOrg
) -> None:
    org: Org = await make_org("Retention")
    seven_years = timedelta(days=7 * 365)
    old = await _audit_rows(owner_engine, org, 2, age=seven_years)
    await jobs.seal_all(app_engine)  # block 1: the old rows (the newest block: kept)
    await _audit_rows(owner_engine, org, 2)
    unsealed_old = await _audit_rows(owner_engine, org, 1, age=seven_years)

    # a 10-year retention keeps everything
    await insert(
        owner_engine,
        "INSERT INTO ce_module_settings (org_id, email_audit_retention_days) VALUES (:o, 3650)",
        o=org.id,
    )
    report = await jobs.seal_all(app_engine)
    assert report.blocks == 1  # block 2: 2 new + 1 old row
    assert await jobs.purge_all(app_engine) == (0, 0)

    # the default six years: block 1 goes, rows and all; block 2 holds a recent row: stays
    await insert(
        owner_engine,
        "UPDATE ce_module_settings SET email_audit_retention_days = NULL WHERE org_id = :o",
        o=org.id,
    )
    # the org reads nothing more (no row to seal): its old block still ages out
    assert await jobs.purge_all(app_engine) == (1, 2)
    async with owner_engine.connect() as conn:
        left = set(
            (
                await conn.execute(
                    text("SELECT id FROM ce_email_access_audit WHERE org_id = :o"), {"o": org.id}
                )
            ).scalars()
        )
    assert not left & set(old)
    async with owner_engine.connect() as conn:
        indexed = set(
            (
                await conn.execute(
                    text("SELECT audit_id FROM ce_email_access_audit_emails WHERE org_id = :o"),
                    {"o": org.id},
                )
            ).scalars()
        )
    assert indexed == left  # the by-email rows went with their audit rows
    assert set(unsealed_old) <= left  # sealed in block 2, which still holds recent rows
    [report_after] = await jobs.verify_all(app_engine, org.id)
    assert report_after.intact
    assert (report_after.first_seq, report_after.last_seq, report_after.rows) == (2, 2, 3)


async def test_the_seal_job_is_registered_on_the_maintenance_queue(
    test_settings: Settings,
) -> None:
    from app.jobs.registry import job_app_with_tasks

    app = job_app_with_tasks(test_settings)
    task = app.tasks["ce:seal_email_audit"]
    assert task.queue == "maintenance"
    assert any(p.task is task for p in app.periodic_registry.periodic_tasks.values())
