"""The visibility rule written into each policy, not called per row (sql/170).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("170_visibility_inline.sql")


def downgrade() -> None:
    run_sql_file("171_visibility_inline_down.sql")
