"""Keys ready for a PostgreSQL distributed by org_id: org_id in every key (sql/090).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("090_org_keys.sql")


def downgrade() -> None:
    run_sql_file("091_org_keys_down.sql")
