"""Shared fixtures: real data from ../shared/data, a real PostgreSQL database per test
session, isolated SIGMAX_HOME per test, and the CLI runner."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures", "tests.support.pg_faults"]  # binance_emulator; pg_db

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data")).resolve()
FREQTRADE_1H = DATA / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07"
PG_ADMIN_URL = os.environ.get("SIGMAX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SIGMAX_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"test data not found at {DATA}; set SIGMAX_TEST_DATA")
    return DATA


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test gets its own SIGMAX_HOME and no SIGMAX_* from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("SIGMAX_") and key not in ("SIGMAX_TEST_DATA", "SIGMAX_TEST_PG", "SIGMAX_TEST_REDIS"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("SIGMAX_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def pg_url():
    """A PostgreSQL database created for this test session and dropped after it."""
    import psycopg

    name = f"sigmax_test_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """The ledger URL for both backends; PostgreSQL tables are emptied per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url = request.getfixturevalue("pg_url")
    yield url
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


@pytest.fixture
def redis_prefix():
    """A unique key prefix; every key under it is deleted after the test."""
    import redis

    prefix = f"sigmax-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def cli():
    """Invoke the real root app: ``cli("paper", "--json")`` -> click Result."""
    from typer.testing import CliRunner

    from commands.app import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input, env=env, catch_exceptions=False)

    return invoke
