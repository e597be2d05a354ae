"""upgrade head → downgrade base → upgrade head on an empty database."""

from __future__ import annotations

import uuid

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.migrate import ROOT
from tests.conftest import _create_database, _drop_database


def _tables(settings: Settings) -> set[str]:
    from app.db.urls import owner_url

    engine = create_engine(owner_url(settings))
    with engine.connect() as conn:
        names = (
            conn.execute(
                text(
                    "SELECT schemaname || '.' || tablename FROM pg_tables "
                    "WHERE schemaname IN ('public', 'vault')"
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    return set(names)


def test_upgrade_downgrade_upgrade_on_an_empty_database(base_settings: Settings) -> None:
    name = f"ce_email_mig_{uuid.uuid4().hex[:8]}"
    settings = _create_database(base_settings, name)
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = settings.database_url
    config.attributes["configure_logging"] = False
    try:
        command.upgrade(config, "head")
        after_first = _tables(settings)
        assert {"public.ce_emails", "public.ce_email_accounts", "vault.secrets"} <= after_first
        command.downgrade(config, "base")
        assert _tables(settings) <= {"public.alembic_version"}
        command.upgrade(config, "head")
        assert _tables(settings) == after_first
    finally:
        _drop_database(base_settings, name)
