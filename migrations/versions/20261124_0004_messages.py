"""Messages: participant arrays on ce_emails for indexed (retroactive) matching.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("020_email_participants.sql")


def downgrade() -> None:
    run_sql_file("020_email_participants_down.sql")
