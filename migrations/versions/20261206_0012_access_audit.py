"""The access audit: append-only audit rows, SHA-256 chained blocks, audit retention (sql/130).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("130_access_audit.sql")


def downgrade() -> None:
    run_sql_file("131_access_audit_down.sql")
