"""OAuth states: the periodic purge job finds the orgs with expired states through a function.

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
    run_sql_file("090_oauth_state_purge.sql")


def downgrade() -> None:
    run_sql_file("091_oauth_state_purge_down.sql")
