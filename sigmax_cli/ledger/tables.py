"""The ledger's tables as a whole, for backups: which tables there are, how many rows each
holds, and the schema version stored. These work on a DB-API connection (``sqlite3`` or
psycopg 3), because a backup reads them inside its own snapshot transaction (the one
``pg_dump`` or the SQLite copy sees) and must not import SQLAlchemy for it."""

from __future__ import annotations

from typing import Any


def _is_pg(conn: Any) -> bool:
    return type(conn).__module__.startswith("psycopg")


def table_names(conn: Any) -> list[str]:
    """Base tables of the connection's schema (PostgreSQL: ``current_schema()``; SQLite:
    without its internal ``sqlite_*`` tables), sorted."""
    if _is_pg(conn):
        sql = ("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
               "AND table_type = 'BASE TABLE' ORDER BY table_name")
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    return [str(r[0]) for r in conn.execute(sql).fetchall()]


def table_counts(conn: Any) -> dict[str, int]:
    """Exact rows per table of :func:`table_names` (``count(*)``)."""
    if _is_pg(conn):
        from psycopg import sql

        return {n: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(n))).fetchone()[0])
                for n in table_names(conn)}
    quoted = {n: '"' + n.replace('"', '""') + '"' for n in table_names(conn)}  # names from sqlite_master, quoted
    return {n: int(conn.execute(f"SELECT count(*) FROM {q}").fetchone()[0]) for n, q in quoted.items()}  # noqa: S608


def stored_schema_version(conn: Any) -> int | None:
    """The newest migration recorded in ``schema_version``; ``None`` when there is no such
    table (or, on SQLite, the file is not a database)."""
    if _is_pg(conn):
        if not conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]:
            return None
        value = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        return int(value) if value is not None else None
    import sqlite3

    try:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return int(row[0]) if row and row[0] is not None else None
