"""Deleting a document queues its file for removal; a job retries what is left (sql/190).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("190_document_file_removals.sql")


def downgrade() -> None:
    run_sql_file("191_document_file_removals_down.sql")
