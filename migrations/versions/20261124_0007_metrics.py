"""Metrics: id/count-only aggregates for Prometheus.

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from migrations.sqlfiles import run_sql_file

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("060_metrics.sql")


def downgrade() -> None:
    run_sql_file("061_metrics_down.sql")
