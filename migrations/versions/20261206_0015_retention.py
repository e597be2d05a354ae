"""Retention and purge receipts: email_retention_days, ce_email_purges, purged ids.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("140_retention.sql")


def downgrade() -> None:
    run_sql_file("141_retention_down.sql")
