"""Files of deleted documents leave the store for sure: deleting a document row queues its
file in the same transaction (sql/190), and what a purge could not remove after its commit
(a crash, a refusal) the periodic job removes later."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.rls import org_transaction
from app.platform.documents import LocalDocumentStorage, remove_deleted_files
from app.retention import service
from app.retention.jobs import remove_queued_files
from tests.fixtures.database import scalar
from tests.fixtures.orgs import MakeOrg, Org
from tests.fixtures.retention import documents_of, file_path
from tests.fixtures.visibility import marked_mailbox

pytestmark = pytest.mark.asyncio


async def _queued(owner_engine: AsyncEngine, org: Org) -> dict[str, int]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT storage_key, attempts FROM ce_document_file_removals WHERE org_id = :o"),
            {"o": org.id},
        )
        return {key: attempts for key, attempts in rows}


async def _purge_committed(app_engine: AsyncEngine, org: Org, account_id: str) -> None:
    """A disconnect purge whose transaction committed, and then the process stopped: the
    files were never removed."""
    async with org_transaction(app_engine, org.id) as session:
        await service.purge_mailbox(session, org.id, uuid.UUID(account_id))


class RefusingStorage(LocalDocumentStorage):
    def delete(self, storage_key: str) -> None:
        raise PermissionError("read-only store")


async def test_a_file_left_by_a_stopped_purge_is_removed_by_the_job(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, make_org: MakeOrg, test_settings: Settings
) -> None:
    org: Org = await make_org("Files left")
    mail = await marked_mailbox(
        owner_engine, app_engine, org, test_settings, level="org", owner="member"
    )
    (key,) = (await documents_of(owner_engine, [uuid.UUID(mail.email_id)])).values()
    assert file_path(test_settings, key).exists()

    await _purge_committed(app_engine, org, mail.account_id)
    # the row is gone, its file is not, and it is queued in the purge's transaction
    assert (
        await scalar(owner_engine, "SELECT count(*) FROM documents WHERE org_id = :o", o=org.id)
        == 0
    )
    assert file_path(test_settings, key).exists()
    assert await _queued(owner_engine, org) == {key: 0}

    assert await remove_queued_files(app_engine, test_settings) >= 1
    assert not file_path(test_settings, key).exists()
    assert await _queued(owner_engine, org) == {}


async def test_a_refused_removal_stays_queued_and_is_retried(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, make_org: MakeOrg, test_settings: Settings
) -> None:
    org: Org = await make_org("Files refused")
    mail = await marked_mailbox(
        owner_engine, app_engine, org, test_settings, level="org", owner="member"
    )
    (key,) = (await documents_of(owner_engine, [uuid.UUID(mail.email_id)])).values()
    await _purge_committed(app_engine, org, mail.account_id)
    assert test_settings.document_storage_dir

    async with org_transaction(app_engine, org.id) as session:
        outcome = await remove_deleted_files(
            session, RefusingStorage(test_settings.document_storage_dir)
        )
    assert (outcome.removed, outcome.failed) == (0, 1)
    assert file_path(test_settings, key).exists()
    assert await _queued(owner_engine, org) == {key: 1}

    async with org_transaction(app_engine, org.id) as session:
        outcome = await remove_deleted_files(
            session, LocalDocumentStorage(test_settings.document_storage_dir)
        )
    assert (outcome.removed, outcome.failed) == (1, 0)
    assert not file_path(test_settings, key).exists()
    assert await _queued(owner_engine, org) == {}


async def test_a_rolled_back_delete_queues_nothing(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, make_org: MakeOrg, test_settings: Settings
) -> None:
    org: Org = await make_org("Files kept")
    mail = await marked_mailbox(
        owner_engine, app_engine, org, test_settings, level="org", owner="member"
    )
    (key,) = (await documents_of(owner_engine, [uuid.UUID(mail.email_id)])).values()

    async def purge_then_fail() -> None:
        async with org_transaction(app_engine, org.id) as session:
            await service.purge_mailbox(session, org.id, uuid.UUID(mail.account_id))
            raise RuntimeError("the request failed after the purge")

    with pytest.raises(RuntimeError):
        await purge_then_fail()
    assert await _queued(owner_engine, org) == {}
    assert file_path(test_settings, key).exists()
    assert (
        await scalar(owner_engine, "SELECT count(*) FROM documents WHERE org_id = :o", o=org.id)
        == 1
    )


async def test_the_queue_is_the_orgs_own(
    owner_engine: AsyncEngine, app_engine: AsyncEngine, make_org: MakeOrg, test_settings: Settings
) -> None:
    org: Org = await make_org("Files mine")
    other: Org = await make_org("Files theirs")
    mail = await marked_mailbox(
        owner_engine, app_engine, org, test_settings, level="org", owner="member"
    )
    await _purge_committed(app_engine, org, mail.account_id)
    async with org_transaction(app_engine, other.id) as session:
        outcome = await remove_deleted_files(
            session, RefusingStorage(test_settings.document_storage_dir or "")
        )
    assert (outcome.removed, outcome.failed) == (0, 0)
    assert len(await _queued(owner_engine, org)) == 1


async def test_the_removal_job_is_registered_on_the_maintenance_queue(
    test_settings: Settings,
) -> None:
    from app.jobs.registry import job_app_with_tasks

    app = job_app_with_tasks(test_settings)
    task = app.tasks["ce:remove_deleted_document_files"]
    assert task.queue == "maintenance"
    assert any(p.task is task for p in app.periodic_registry.periodic_tasks.values())
