"""Revisions apply the readable SQL kept in sql/, one file per concern."""

from __future__ import annotations

from pathlib import Path

from alembic import op

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def run_sql_file(name: str) -> None:
    # Sent through the driver with no parameters: psycopg then uses the simple query
    # protocol, so the whole file (DO blocks, dollar-quoted bodies, LIKE '%...') goes as one
    # batch, unparsed for placeholders.
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute((SQL_DIR / name).read_text())
