"""Apply the migrations (alembic upgrade head) as the owner: for the CLI, the demo and tests."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
"""The project folder: alembic.ini and migrations/ live here."""


def run_migrations(settings: Settings) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = settings.database_url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")
