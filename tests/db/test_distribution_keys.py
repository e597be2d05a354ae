"""Keys a PostgreSQL distributed by org_id (Citus) can keep: the catalog says so.

A distributed table can enforce a primary key, a unique index or a foreign key only when
the distribution column is part of it (a foreign key: on both sides, paired). Every table
with an org_id column is discovered from pg_catalog, so a table added later is held to the
same rule without anyone remembering to list it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Row, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.migrate import run_migrations
from app.db.urls import owner_url
from tests.fixtures.database import throwaway_database

# Tables with an org_id column that would be Citus reference tables (copied to every node,
# not distributed), so the rule does not apply. None today: organisations and users, the
# reference tables, have no org_id column and are never discovered.
REFERENCE_TABLES: dict[str, str] = {}

ORG_TABLES_SQL = """
SELECT c.oid, (n.nspname || '.' || c.relname) AS name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'vault')
ORDER BY 2
"""

# Key columns of every primary key and unique index (constraint-backed or not, partial
# included), by name.
UNIQUE_INDEXES_SQL = """
SELECT i.indrelid AS table_oid, ic.relname AS index_name, i.indisprimary,
       ARRAY(SELECT a.attname::text
             FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS columns
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indisunique
"""

FOREIGN_KEYS_SQL = """
SELECT c.conname, c.conrelid AS table_oid, c.confrelid AS referenced_oid,
       c.confrelid::regclass::text AS referenced,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS columns,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS referenced_columns,
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod)
             FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS referenced_types
FROM pg_constraint c
WHERE c.contype = 'f'
ORDER BY 1
"""


async def _catalog(
    owner_engine: AsyncEngine,
) -> tuple[dict[int, str], list[Row[Any]], list[Row[Any]]]:
    async with owner_engine.connect() as conn:
        tables = {r.oid: r.name for r in await conn.execute(text(ORG_TABLES_SQL))}
        indexes = list(await conn.execute(text(UNIQUE_INDEXES_SQL)))
        foreign_keys = list(await conn.execute(text(FOREIGN_KEYS_SQL)))
    org_tables = {oid: name for oid, name in tables.items() if name not in REFERENCE_TABLES}
    # the tables this service is known to keep are among those discovered
    assert {"public.ce_emails", "public.ce_email_participants", "vault.secrets"} <= set(
        org_tables.values()
    )
    return org_tables, indexes, foreign_keys


@pytest.mark.asyncio
async def test_every_org_table_has_a_primary_key_with_org_id(owner_engine: AsyncEngine) -> None:
    org_tables, indexes, _ = await _catalog(owner_engine)
    primary = {i.table_oid: i.columns for i in indexes if i.indisprimary}
    wrong = {
        name: primary.get(oid)
        for oid, name in org_tables.items()
        if "org_id" not in (primary.get(oid) or [])
    }
    assert wrong == {}, f"primary keys without org_id (None: no primary key): {wrong}"


@pytest.mark.asyncio
async def test_every_unique_index_of_an_org_table_includes_org_id(
    owner_engine: AsyncEngine,
) -> None:
    org_tables, indexes, _ = await _catalog(owner_engine)
    wrong = sorted(
        f"{org_tables[i.table_oid]}.{i.index_name} {i.columns}"
        for i in indexes
        if i.table_oid in org_tables and "org_id" not in i.columns
    )
    assert wrong == [], f"unique indexes without org_id: {wrong}"


@pytest.mark.asyncio
async def test_every_foreign_key_between_org_tables_pairs_org_id(
    owner_engine: AsyncEngine,
) -> None:
    org_tables, _, foreign_keys = await _catalog(owner_engine)
    between = [
        f"{org_tables[fk.table_oid]}.{fk.conname}"
        for fk in foreign_keys
        if fk.table_oid in org_tables and fk.referenced_oid in org_tables
    ]
    # the check below has something to check: the links' key to their email among them
    assert len(between) >= 10, between
    assert "public.ce_email_links.ce_email_links_org_id_email_id_fkey" in between, between
    wrong = sorted(
        f"{org_tables[fk.table_oid]}.{fk.conname} {fk.columns} -> "
        f"{fk.referenced} {fk.referenced_columns}"
        for fk in foreign_keys
        if fk.table_oid in org_tables
        and fk.referenced_oid in org_tables
        and ("org_id", "org_id") not in zip(fk.columns, fk.referenced_columns, strict=True)
    )
    assert wrong == [], f"foreign keys between org tables without org_id paired: {wrong}"


@pytest.fixture(scope="module")
def empty_database(base_settings: Settings) -> Iterator[Settings]:
    with throwaway_database(base_settings, "ce_email_keys") as settings:
        run_migrations(settings)
        yield settings


def _index_scans(plan: dict[str, Any]) -> list[str]:
    found = [plan["Index Name"]] if "Index Name" in plan else []
    for child in plan.get("Plans", []):
        found += _index_scans(child)
    return found


def _ri_check_indexes(conn: Connection, fk: Row[Any]) -> list[str]:
    """The indexes PostgreSQL's referential check would use, planned generically (the
    statement is the one ri_triggers.c prepares)."""
    columns = fk.referenced_columns
    condition = " AND ".join(f"{c} = ${n}" for n, c in enumerate(columns, start=1))
    conn.execute(
        text(
            f"PREPARE ri_check ({', '.join(fk.referenced_types)}) AS "
            f"SELECT 1 FROM ONLY {fk.referenced} x WHERE {condition} FOR KEY SHARE OF x"
        )
    )
    nulls = ", ".join("NULL" for _ in columns)
    plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) EXECUTE ri_check ({nulls})")).scalar_one()
    conn.execute(text("DEALLOCATE ri_check"))
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _index_scans(plan[0]["Plan"])


def test_referential_checks_probe_the_referenced_key_on_an_empty_database(
    empty_database: Settings,
) -> None:
    """The plan a connection caches for a foreign key's check is made once, often while the
    tables are still empty (a new database's first sync). With no statistics an index on
    (org_id, <anything>, id) costs exactly as much as the key (org_id, id), and the more
    recently created index wins the tie: a check that walks the whole org for every row
    (sql/080). Each check must probe an index whose columns are the referenced ones."""
    engine = create_engine(owner_url(empty_database))
    try:
        with engine.connect() as conn:
            conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            org_tables = {r.oid: r.name for r in conn.execute(text(ORG_TABLES_SQL))}
            keys = {
                (i.table_oid, i.index_name): set(i.columns)
                for i in conn.execute(text(UNIQUE_INDEXES_SQL))
            }
            wrong = []
            for fk in conn.execute(text(FOREIGN_KEYS_SQL)).all():
                if fk.table_oid not in org_tables or fk.referenced_oid not in org_tables:
                    continue
                used = _ri_check_indexes(conn, fk)
                exact = [
                    index
                    for index in used
                    if keys.get((fk.referenced_oid, index)) == set(fk.referenced_columns)
                ]
                if not exact:
                    wrong.append(f"{fk.conname} -> {fk.referenced}: {used}")
    finally:
        engine.dispose()
    assert wrong == [], f"referential checks not probing the referenced key: {wrong}"


def test_the_known_ids_probe_uses_the_provider_id_index_on_an_empty_database(
    empty_database: Settings,
) -> None:
    """The sync asks, for every listed page, which provider ids it already holds
    (ce_known_provider_ids, sql/160). On a table without statistics any index whose
    leading column the lookup names ties, and the newest wins: with the org in the lookup
    that was the primary key, a walk of the org's rows per listed id (a 20,000-message
    first sync at half speed). The probe must use ce_emails_provider_id."""
    engine = create_engine(owner_url(empty_database))
    try:
        with engine.connect() as conn:
            conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            conn.execute(
                text(
                    "PREPARE probe (uuid, text) AS SELECT e.provider_message_id "
                    "FROM public.ce_emails e WHERE e.account_id = $1 "
                    "AND e.provider_message_id = $2 LIMIT 1"
                )
            )
            plan = conn.execute(
                text("EXPLAIN (FORMAT JSON) EXECUTE probe (NULL, NULL)")
            ).scalar_one()
            conn.execute(text("DEALLOCATE probe"))
    finally:
        engine.dispose()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert _index_scans(plan[0]["Plan"]) == ["ce_emails_provider_id"]
