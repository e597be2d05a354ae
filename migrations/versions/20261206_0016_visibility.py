"""Visibility levels per mailbox and per-thread sharing, enforced by row-level security.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("150_visibility.sql")


def downgrade() -> None:
    run_sql_file("151_visibility_down.sql")
