"""Expired OAuth states are purged by a periodic job, across orgs, and nothing else is."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.jobs import purge_expired_oauth_states
from app.config import Settings
from app.jobs.queue import QUEUE_MAINTENANCE
from app.jobs.registry import job_app_with_tasks
from app.jobs.runtime import RUNTIME
from tests.fixtures.accounts import authorize_url
from tests.fixtures.orgs import Org


async def _states(owner_engine: AsyncEngine, org: Org) -> list[str]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT return_to FROM ce_oauth_states WHERE org_id = :o ORDER BY return_to"),
            {"o": org.id},
        )
        return [row.return_to for row in rows]


@pytest.mark.asyncio
async def test_the_job_deletes_states_a_day_past_expiry_in_every_org(
    client: httpx.AsyncClient,
    app: FastAPI,
    org_a: Org,
    org_b: Org,
    owner_engine: AsyncEngine,
) -> None:
    for org in (org_a, org_b):
        for page in ("expired", "fresh", "just-expired"):
            await authorize_url(
                client, "gmail", org.headers(), return_to=f"http://localhost:3000/{page}"
            )
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ce_oauth_states SET expires_at = now() - interval '2 days' "
                "WHERE return_to LIKE '%/expired' AND org_id IN (:a, :b)"
            ),
            {"a": org_a.id, "b": org_b.id},
        )
        await conn.execute(
            text(
                "UPDATE ce_oauth_states SET expires_at = now() - interval '1 hour' "
                "WHERE return_to LIKE '%/just-expired' AND org_id IN (:a, :b)"
            ),
            {"a": org_a.id, "b": org_b.id},
        )

    RUNTIME.ctx = app.state.ctx
    await purge_expired_oauth_states.func(timestamp=0)

    for org in (org_a, org_b):
        # a day's grace: a state that just expired still says "expired" rather than "unknown"
        assert await _states(owner_engine, org) == [
            "http://localhost:3000/fresh",
            "http://localhost:3000/just-expired",
        ]


def test_the_purge_is_a_periodic_maintenance_task(test_settings: Settings) -> None:
    job_app = job_app_with_tasks(test_settings)
    periodic = {task.task.name: task for task in job_app.periodic_registry.periodic_tasks.values()}
    assert "ce:purge_expired_oauth_states" in periodic
    assert periodic["ce:purge_expired_oauth_states"].task.queue == QUEUE_MAINTENANCE
    assert periodic["ce:purge_expired_oauth_states"].cron == "17 * * * *"
