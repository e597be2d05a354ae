"""Tracked links of sent emails.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("040_tracking.sql")


def downgrade() -> None:
    run_sql_file("041_tracking_down.sql")
