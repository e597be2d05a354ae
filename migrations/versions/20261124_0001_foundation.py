"""Foundation: roles, platform stand-ins, CE-07 tables, vault, RLS, activity trigger.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from app.config import Settings
from migrations.sqlfiles import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FILES = [
    "001_roles.sql",
    "002_platform.sql",
    "003_email_tables.sql",
    "004_vault.sql",
    "005_policies.sql",
    "006_triggers.sql",
    "007_grants.sql",
]


def upgrade() -> None:
    for name in FILES:
        run_sql_file(name)
    # The app role's password is a setting, not something to keep in sql/.
    password = Settings().ce_app_db_password.get_secret_value()
    quoted = op.get_bind().execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar()
    op.execute(f"ALTER ROLE ce_app PASSWORD {quoted}")
    database = op.get_bind().execute(text("SELECT quote_ident(current_database())")).scalar()
    op.execute(f"GRANT CONNECT ON DATABASE {database} TO ce_app")


def downgrade() -> None:
    run_sql_file("099_foundation_down.sql")
