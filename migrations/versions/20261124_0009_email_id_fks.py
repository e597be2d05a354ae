"""Participants and tracking events: foreign keys on the email id alone (plan-stable checks).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("080_email_id_fks.sql")


def downgrade() -> None:
    run_sql_file("081_email_id_fks_down.sql")
