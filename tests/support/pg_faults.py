"""Real faults of a PostgreSQL database of one test: closed to connections, sessions killed.

The test's database is its own (:func:`pg_db`), so closing it never touches the shared one.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import PG_ADMIN_URL


def admin(sql: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []


def close_database(name: str) -> None:
    """No new sessions, and every session of the database terminated."""
    admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    terminate_sessions(name)


def open_database(name: str) -> None:
    admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def terminate_sessions(name: str) -> int:
    rows = admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                  "AND pid <> pg_backend_pid()", name)
    return len(rows)


@pytest.fixture
def pg_db():
    """(url, name) of a PostgreSQL database of this test alone; always reopened and dropped."""
    name = f"sigmax_outage_{uuid.uuid4().hex[:10]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name
    finally:
        open_database(name)
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
