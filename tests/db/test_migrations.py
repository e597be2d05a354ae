"""upgrade head → downgrade base → upgrade head on an empty database."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from app.config import Settings
from tests.fixtures.database import alembic_config, throwaway_database


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
    with throwaway_database(base_settings, "ce_email_mig") as settings:
        config = alembic_config(settings)
        command.upgrade(config, "head")
        after_first = _tables(settings)
        assert {"public.ce_emails", "public.ce_email_accounts", "vault.secrets"} <= after_first
        command.downgrade(config, "base")
        assert _tables(settings) <= {"public.alembic_version"}
        command.upgrade(config, "head")
        assert _tables(settings) == after_first
