"""Many bots opening one fresh ledger at the same moment (issue 15, scenario 13).

Eight real processes (``multiprocessing``, spawn) open a brand-new PostgreSQL database at
once, released together by a barrier: every one must open it, and the schema must exist
once. Before the schema lock, three of four such bots failed with a duplicate key in
``pg_type`` and a message blaming the database.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid

import pytest

from tests.conftest import PG_ADMIN_URL

PROCESSES = 8


def _open(url: str, barrier, results) -> None:
    """One bot: wait for the others, then open (create) the ledger."""
    from sigmax_cli.errors import SigmaxError
    from sigmax_cli.ledger import Ledger

    barrier.wait(timeout=120)
    try:
        with Ledger(url) as ledger:
            results.put(("ok", ledger.schema_version))
    except SigmaxError as exc:
        results.put(("error", exc.sentence()))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.fixture
def fresh_pg_url():
    """A PostgreSQL database of this test alone, with no schema yet; dropped after."""
    import psycopg

    name = f"sigmax_race_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _open_at_once(url: str, n: int) -> list[tuple[str, object]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def test_eight_bots_open_a_fresh_postgresql_ledger_at_once(fresh_pg_url):
    from sqlalchemy import create_engine, inspect, select, text

    from sigmax_cli.ledger import migrations
    from sigmax_cli.ledger import schema as s
    from sigmax_cli.ledger.store import _normalise_url

    results = _open_at_once(fresh_pg_url, PROCESSES)

    assert results == [("ok", migrations.SCHEMA_VERSION)] * PROCESSES, results
    engine = create_engine(_normalise_url(fresh_pg_url))
    try:
        with engine.connect() as conn:
            versions = conn.execute(select(s.schema_version.c.version).order_by(s.schema_version.c.version)).all()
            tables = inspect(conn).get_table_names()
            runs_types = conn.execute(text("SELECT count(*) FROM pg_type WHERE typname = 'runs'")).scalar_one()
    finally:
        engine.dispose()
    assert [v for (v,) in versions] == [m.version for m in migrations.MIGRATIONS]  # each step applied once
    assert sorted(tables) == sorted(s.metadata.tables)  # every table, each once
    assert runs_types == 1


def test_eight_bots_open_a_fresh_sqlite_ledger_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"
    from sigmax_cli.ledger import migrations

    assert _open_at_once(url, PROCESSES) == [("ok", migrations.SCHEMA_VERSION)] * PROCESSES


def test_a_schema_lock_held_too_long_is_named(fresh_pg_url):
    import psycopg

    from sigmax_cli.errors import LedgerError
    from sigmax_cli.ledger import migrations
    from sigmax_cli.ledger.store import make_engine

    with psycopg.connect(fresh_pg_url, autocommit=True) as holder:  # another bot, stuck mid-migration
        holder.execute("SELECT pg_advisory_lock(%s)", (migrations.SCHEMA_LOCK_KEY,))
        engine = make_engine(fresh_pg_url)
        try:
            with pytest.raises(LedgerError, match="creating or upgrading the ledger's schema for 0.3 s"):
                with migrations.schema_lock(engine, timeout_s=0.3):
                    pass
        finally:
            engine.dispose()
    engine = make_engine(fresh_pg_url)  # the holder is gone: the lock is free again
    try:
        assert migrations.upgrade(engine) == [m.version for m in migrations.MIGRATIONS]
    finally:
        engine.dispose()
