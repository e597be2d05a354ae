"""Job queue (procrastinate's schema) and the cross-org account lookups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op
from procrastinate.schema import SchemaManager

from migrations.sqlfiles import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    # procrastinate's schema as its release ships it; later procrastinate upgrades add
    # their migration files (procrastinate.schema.SchemaManager.get_migrations_path()).
    driver_connection.execute(SchemaManager.get_schema())
    run_sql_file("030_job_queue_grants.sql")
    run_sql_file("032_sync_state.sql")


def downgrade() -> None:
    run_sql_file("031_job_queue_down.sql")
