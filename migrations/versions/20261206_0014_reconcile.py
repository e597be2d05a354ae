"""Reconciliation: the last verification's outcome per account, its interval per org.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("110_reconcile.sql")


def downgrade() -> None:
    run_sql_file("111_reconcile_down.sql")
