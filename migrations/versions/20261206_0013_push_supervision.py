"""Supervised push and adaptive polling: push health per mailbox, polling by push health.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("120_push_supervision.sql")


def downgrade() -> None:
    run_sql_file("121_push_supervision_down.sql")
