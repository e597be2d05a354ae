"""Audit rows carry the mailboxes they name; the SELECT policy passes most at once (sql/180).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("180_audit_accounts.sql")


def downgrade() -> None:
    run_sql_file("181_audit_accounts_down.sql")
