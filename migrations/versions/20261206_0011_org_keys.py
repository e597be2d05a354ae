"""Keys ready for a PostgreSQL distributed by org_id: org_id in every key (sql/100).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("100_org_keys.sql")


def downgrade() -> None:
    run_sql_file("101_org_keys_down.sql")
