"""The known-ids probe stays an index probe on a cold table (sql/160).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("160_known_ids_probe.sql")


def downgrade() -> None:
    run_sql_file("161_known_ids_probe_down.sql")
