"""OAuth state: single-use, bound to user and org.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("010_oauth_states.sql")


def downgrade() -> None:
    run_sql_file("011_oauth_states_down.sql")
