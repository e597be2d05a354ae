"""Known provider ids: the sync's per-page lookup, one unique-index probe per id.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("070_known_provider_ids.sql")


def downgrade() -> None:
    run_sql_file("071_known_provider_ids_down.sql")
