"""`ce-email dev ...`: the JSON of SANDBOX.md on stdout, tokens valid for the API,
refused in production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.rls import org_transaction

pytestmark = pytest.mark.asyncio


def _cli(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "DOCUMENT_STORAGE_DIR": str(settings.document_storage_dir),
        "CE_ENV": "development",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


async def test_seed_org_contact_partner_document(
    test_settings: Settings,
    client: httpx.AsyncClient,
    app_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    seeded = _cli(test_settings, "dev", "seed-org", "--name", "Clinic CLI")
    assert seeded.returncode == 0, seeded.stderr
    org = json.loads(seeded.stdout)
    assert set(org) == {"org_id", "admin", "member"}
    for who in ("admin", "member"):
        assert set(org[who]) == {"user_id", "email", "token"}
        response = await client.get(
            "/v1/settings", headers={"Authorization": f"Bearer {org[who]['token']}"}
        )
        assert response.status_code == 200
    admin_patch = await client.patch(
        "/v1/settings",
        json={"email_sync_history_days": 10},
        headers={"Authorization": f"Bearer {org['admin']['token']}"},
    )
    assert admin_patch.status_code == 200

    contact = _cli(
        test_settings,
        "dev",
        "add-contact",
        "--org",
        org["org_id"],
        "--email",
        " Pat.Doe@Example.NET ",
        "--email",
        "pat@home.example",
        "--name",
        "Pat",
    )
    assert contact.returncode == 0, contact.stderr
    contact_id = json.loads(contact.stdout)["contact_id"]
    partner = _cli(
        test_settings,
        "dev",
        "add-partner",
        "--org",
        org["org_id"],
        "--domain",
        "@Hospital.org",
        "--domain",
        "clinic.example",
        "--name",
        "H",
    )
    assert partner.returncode == 0, partner.stderr
    partner_id = json.loads(partner.stdout)["partner_id"]
    sample = tmp_path / "referral.pdf"
    sample.write_bytes(b"%PDF-1.4 referral")
    document = _cli(
        test_settings, "dev", "add-document", "--org", org["org_id"], "--file", str(sample)
    )
    assert document.returncode == 0, document.stderr
    document_id = json.loads(document.stdout)["document_id"]

    async with org_transaction(app_engine, uuid.UUID(org["org_id"])) as s:
        emails = (
            (
                await s.execute(
                    text("SELECT email FROM contact_emails WHERE contact_id = :c ORDER BY email"),
                    {"c": contact_id},
                )
            )
            .scalars()
            .all()
        )
        domains = (
            (
                await s.execute(
                    text(
                        "SELECT domain FROM partner_domains WHERE partner_id = :p ORDER BY domain"
                    ),
                    {"p": partner_id},
                )
            )
            .scalars()
            .all()
        )
        doc = (
            await s.execute(
                text("SELECT filename, size, content_type FROM documents WHERE id = :d"),
                {"d": document_id},
            )
        ).one()
    assert emails == ["pat.doe@example.net", "pat@home.example"]
    assert domains == ["clinic.example", "hospital.org"]
    assert doc == ("referral.pdf", len(b"%PDF-1.4 referral"), "application/pdf")


async def test_fixtures_refuse_production(test_settings: Settings) -> None:
    result = _cli(test_settings, "dev", "seed-org", "--name", "Nope", env={"CE_ENV": "production"})
    assert result.returncode != 0
    assert "refused" in result.stderr
    assert result.stdout == ""


async def test_bad_input_is_a_clear_error(test_settings: Settings) -> None:
    result = _cli(
        test_settings, "dev", "add-contact", "--org", str(uuid.uuid4()), "--email", "not-an-address"
    )
    assert result.returncode == 2
    assert "not an email address" in result.stderr
