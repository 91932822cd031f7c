"""Backup and restore round trips on the real backends: a SQLite ledger, a PostgreSQL database of
its own, Redis keys under a prefix of their own, model files and profiles. After each restore every
row, key (value and expiry) and file is compared exactly with the state the backup saw."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from sigmax_cli.ledger import Ledger
from tests import test_backup_archive as support
from tests.conftest import REDIS_URL
from tests.test_backup_archive import (
    archives,
    engage_kill_switch,
    files_state,
    paper_run,
    refused,
    run_json,
    table_rows,
)

pg_db = support.pg_db  # a fixture shared with test_backup_archive.py


def _mutate_ledger(url: str) -> None:
    """Lose some history and add some: what a bad deploy or a wrong manual fix does."""
    with Ledger(url) as ledger, ledger.engine.begin() as conn:
        from sqlalchemy import delete, update

        from sigmax_cli.ledger import schema as s

        conn.execute(delete(s.fills).where(s.fills.c.side == "sell"))
        conn.execute(update(s.runs).values(status="failed"))
        conn.execute(s.events.insert().values(run_id=None, ts_ms=1, level="critical", kind="oops", message="bad"))


def _without_restore_bookkeeping(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The ledger minus what a restore adds on purpose: its ``backup.restored`` event and the
    ``backups`` rows of archives the restored ledger did not know (checked separately)."""
    out = {k: v for k, v in rows.items() if k != "backups"}
    out["events"] = [r for r in rows["events"] if "backup.restored" not in r]
    return out


def _round_trip(cli, tmp_path: Path, url: str, env: dict) -> None:
    paper_run(cli, env=env)
    before = table_rows(url)
    assert before["fills"] and before["orders"] and before["equity"] and before["heartbeats"]
    made = run_json(cli, "backup", "--tag", "nightly", env=env)
    archive = Path(made["archive"])
    assert made["verified"] and made["recorded"] and made["tag"] == "nightly"
    ledger_member = next(m for m in made["members"] if m["kind"] == "ledger")
    assert ledger_member["counts"] == {t: len(r) for t, r in before.items()}
    _mutate_ledger(url)
    mutated = table_rows(url)
    assert mutated != before
    engage_kill_switch(tmp_path / "home")
    done = run_json(cli, "restore", archive, env=env)
    assert not done["dry_run"] and done["members"] == ["ledger", "config"]
    after = table_rows(url)
    assert _without_restore_bookkeeping(after) == _without_restore_bookkeeping(before)
    assert sum("backup.restored" in r for r in after["events"]) == 1
    # the backups table knows the restored archive and the safety backup taken just before
    paths = {r[1] for r in after["backups"]}
    assert {str(archive.resolve()), done["safety_backup"]} <= paths
    # the safety backup holds the mutated state, so the restore itself can be undone
    safety = run_json(cli, "backup", "verify", done["safety_backup"], env=env)
    assert safety["members"]["ledger"]["rows"] == sum(len(r) for r in mutated.values())


def test_sqlite_ledger_round_trip_restores_every_row(cli, tmp_path):
    _round_trip(cli, tmp_path, f"sqlite:///{tmp_path / 'home' / 'ledger.db'}", env={})
    home = tmp_path / "home"
    assert not list(home.glob("ledger.db-journal")) and not list(home.glob(".ledger.db.restore-*"))
    with sqlite3.connect(home / "ledger.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.postgres
def test_postgresql_ledger_round_trip_restores_every_row(cli, tmp_path, pg_db):
    _round_trip(cli, tmp_path, pg_db, env={"SIGMAX_DATABASE_URL": pg_db})


@pytest.mark.postgres
def test_restore_into_an_empty_database_after_a_lost_server(cli, tmp_path, pg_db):
    """Disaster recovery: the database is gone, a new empty one takes its place."""
    import psycopg

    env = {"SIGMAX_DATABASE_URL": pg_db}
    paper_run(cli, env=env)
    before = table_rows(pg_db)
    archive = run_json(cli, "backup", "--include", "ledger", env=env)["archive"]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    assert table_rows(pg_db) == {}
    engage_kill_switch(tmp_path / "home")
    plan = run_json(cli, "restore", "--latest", "--dry-run", env=env)
    assert plan["plans"][0]["summary"] == {"add": len(before)}
    assert table_rows(pg_db) == {}  # the dry run changed nothing
    done = run_json(cli, "restore", "--latest", env=env)
    assert done["archive"] == archive and done["safety_backup"] is not None
    assert _without_restore_bookkeeping(table_rows(pg_db)) == _without_restore_bookkeeping(before)


@pytest.mark.postgres
def test_hosts_sharing_a_postgresql_ledger_lock_each_other_out(cli, tmp_path, pg_db):
    """Two SIGMAX_HOMEs (two hosts) on one PostgreSQL ledger: a restore on one refuses backups
    and restores on the other; backups on both at once are fine; the lock dies with its session."""
    from sigmax_cli.backup.lock import BackupLock

    env = {"SIGMAX_DATABASE_URL": pg_db}
    paper_run(cli, env=env)
    host_a, host_b = tmp_path / "home", tmp_path / "host-b"
    archive = run_json(cli, "--home", host_b, "backup", "--include", "ledger", env=env)["archive"]
    engage_kill_switch(host_b)
    restoring = BackupLock(host_a, "restore", pg_db)  # host A restores (its own file lock, the ledger's lock)
    restoring.acquire()
    try:
        before = table_rows(pg_db)
        refused(cli("--home", host_b, "backup", "--include", "ledger", env=env), 11, "sigmax restore pid")
        refused(cli("--home", host_b, "restore", archive, env=env), 11, "shared PostgreSQL ledger")
        assert table_rows(pg_db) == before
        assert run_json(cli, "--home", host_b, "backup", "--include", "config", env=env)["archive"]
    finally:
        restoring.release()
    backing_up = BackupLock(host_a, "backup", pg_db)  # host A backs up: host B may too, but not restore
    backing_up.acquire()
    try:
        assert run_json(cli, "--home", host_b, "backup", "--include", "ledger", env=env)["verified"]
        refused(cli("--home", host_b, "restore", archive, env=env), 11, "sigmax backup pid")
    finally:
        backing_up.release()
    assert run_json(cli, "--home", host_b, "restore", archive, env=env)["archive"] == archive


def _redis_state(client, prefix: str) -> dict[bytes, tuple]:
    """Every key under ``prefix``: type, full value and absolute expiry (PEXPIRETIME, UTC ms)."""
    out = {}
    for key in client.scan_iter(match=f"{prefix}*"):
        kind = client.type(key).decode()
        value = {"string": lambda k: client.get(k), "hash": lambda k: sorted(client.hgetall(k).items()),
                 "list": lambda k: client.lrange(k, 0, -1), "set": lambda k: sorted(client.smembers(k)),
                 "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                 "stream": lambda k: client.xrange(k)}[kind](key)
        out[key] = (kind, value, client.pexpiretime(key))
    return out


@pytest.mark.redis
def test_redis_keys_round_trip_with_their_expiry(cli, tmp_path, redis_prefix):
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    p = redis_prefix
    client.set(f"{p}state:mode", "ACTIVE")
    client.set(f"{p}heartbeat:bot-1", json.dumps({"ts_ms": 1}), px=600_000)
    client.hset(f"{p}positions", mapping={"BTC/USDT": "0.5", "ETH/USDT": "2"})
    client.rpush(f"{p}alerts", "a", "b", "c")
    client.sadd(f"{p}symbols", "BTC/USDT", "ETH/USDT")
    client.zadd(f"{p}scores", {"BTC": 1.5, "ETH": -2.0})
    client.xadd(f"{p}signals", {"coin": "BTC", "sentiment": "0.4"})
    client.set(f"{p}binary", bytes(range(256)), px=3_600_000)
    client.set("other-app:key", "not ours")
    env = {"SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_REDIS_PREFIX": p}
    before = _redis_state(client, p)
    made = run_json(cli, "backup", "--include", "redis", env=env)
    assert made["members"][0]["counts"] == {"keys": len(before), "with_expiry": 2}
    # damage: change, delete, add, and an expiry lost
    client.set(f"{p}state:mode", "HALTED")
    client.delete(f"{p}positions")
    client.set(f"{p}junk", "x")
    client.persist(f"{p}heartbeat:bot-1")
    engage_kill_switch(tmp_path / "home", REDIS_URL, p)
    switch = client.get(f"{p}killswitch")
    plan = run_json(cli, "restore", made["archive"], "--dry-run", env=env)
    assert plan["plans"][0]["summary"] == {"add": 1, "delete": 1, "replace": 2, "same": len(before) - 3}
    run_json(cli, "restore", made["archive"], env=env)
    after = _redis_state(client, p)
    assert after.pop(f"{p}killswitch".encode())[1] == switch  # live state: untouched by a restore
    assert after == before
    assert client.get("other-app:key") == b"not ours"
    client.delete("other-app:key")
    assert not list(client.scan_iter(match=f"{p}restore-staging:*"))


@pytest.mark.redis
def test_redis_keys_past_their_expiry_are_not_restored(cli, tmp_path, redis_prefix):
    """RDB semantics: a key whose absolute expiry passed since the backup stays gone."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    p = redis_prefix
    client.set(f"{p}short", "soon gone", px=300)
    client.set(f"{p}long", "stays")
    env = {"SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_REDIS_PREFIX": p}
    archive = run_json(cli, "backup", "--include", "redis", env=env)["archive"]
    expiry = client.pexpiretime(f"{p}short")
    while client.exists(f"{p}short"):  # wait for Redis to expire it (bounded by the 300 ms TTL)
        client.pexpiretime(f"{p}short")
    client.set(f"{p}short", "new value")
    engage_kill_switch(tmp_path / "home")
    done = run_json(cli, "restore", archive, env=env)
    assert done["applied"]["redis"] == {"restored": 1, "deleted": 1, "expired": 1}
    assert client.get(f"{p}long") == b"stays" and not client.exists(f"{p}short")
    assert expiry > 0


def test_models_and_profiles_round_trip_and_newer_files_are_kept(cli, tmp_path):
    home = tmp_path / "home"
    models = home / "models" / "ppo"
    models.mkdir(parents=True)
    (models / "btc.zip").write_bytes(os.urandom(300_000))
    (home / "models" / "notes.txt").write_text("trained on 2021 data\n")
    (home / "profiles").mkdir()
    custom = home / "profiles" / "tight.toml"
    custom.write_text("[risk]\nmax_open_orders = 2  # orders resting at once\n")
    before = files_state(home / "models") | {"profiles/tight.toml": files_state(home / "profiles")["tight.toml"]}
    made = run_json(cli, "backup", "--include", "models,config")
    kinds = [m["kind"] for m in made["members"]]
    assert kinds.count("models") == 2 and "config" in kinds
    (models / "btc.zip").write_bytes(b"overwritten by a bad training run")
    (home / "models" / "notes.txt").unlink()
    custom.write_text("[risk]\nmax_open_orders = 99  # orders resting at once\n")
    (home / "models" / "newer.zip").write_bytes(b"trained after the backup")
    engage_kill_switch(home)
    plan = run_json(cli, "restore", made["archive"], "--dry-run", "--only", "models,config")
    summary = {p["kind"]: p["summary"] for p in plan["plans"]}
    assert summary["models"] == {"add": 1, "replace": 1}
    assert summary["config"]["replace"] == 1 and summary["config"]["reference"] >= 1
    run_json(cli, "restore", made["archive"], "--only", "models,config")
    after = files_state(home / "models")
    assert after.pop("newer.zip")  # files the archive does not know are kept
    assert after == {k: v for k, v in before.items() if not k.startswith("profiles/")}
    assert files_state(home / "profiles")["tight.toml"] == before["profiles/tight.toml"]


def test_list_shows_tag_age_size_verified_and_verify_records_it(cli, tmp_path):
    paper_run(cli)
    first = run_json(cli, "backup", "--tag", "a", "--no-verify")
    second = run_json(cli, "backup", "--tag", "b")
    assert first["verified"] is False and second["verified"] is True
    listing = run_json(cli, "backup", "list")
    assert [b["tag"] for b in listing["backups"]] == ["b", "a"]  # newest first
    by_tag = {b["tag"]: b for b in listing["backups"]}
    assert by_tag["a"]["verified_ms"] is None and by_tag["b"]["verified_ms"] is not None
    assert all(b["valid"] and b["size_bytes"] > 0 and b["age_s"] >= 0 for b in listing["backups"])
    report = run_json(cli, "backup", "verify", first["archive"], "--restore-test")
    assert report["members"]["ledger"]["restore_test"] == "ok" and report["recorded"]
    assert {b["tag"]: b["verified_ms"] for b in run_json(cli, "backup", "list")["backups"]}["a"]
    # the ledger's backups table (what `sigmax health` reads) holds both, with sha256 and size
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        rows = conn.execute("SELECT path, tag, sha256, size_bytes, verified_ms FROM backups ORDER BY id").fetchall()
    assert {r[1] for r in rows} == {"a", "b"} and all(r[4] for r in rows)
    assert {r[2] for r in rows} == {first["sha256"], second["sha256"]}
    # plain output for cron: one line per archive
    plain = cli("backup", "list")
    assert plain.exit_code == 0 and plain.stdout.count("tag=") == 2 and "verified=" in plain.stdout


@pytest.mark.postgres
@pytest.mark.redis
def test_restore_test_uses_scratch_targets_and_leaves_no_trace(cli, tmp_path, pg_db, redis_prefix):
    import psycopg
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.set(f"{redis_prefix}a", "1", px=900_000)
    env = {"SIGMAX_DATABASE_URL": pg_db, "SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_REDIS_PREFIX": redis_prefix}
    paper_run(cli, env=env)
    archive = run_json(cli, "backup", env=env)["archive"]
    report = run_json(cli, "backup", "verify", archive, "--restore-test", env=env)
    assert report["members"]["ledger"]["restore_test"] == "ok"
    assert report["members"]["redis"] == {"keys": 1, "restore_test": "ok"}
    with psycopg.connect(pg_db) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'sigmax_restore_test_%'").fetchone()
    assert left[0] == 0
    assert sorted(client.scan_iter(match=f"{redis_prefix}*")) == [f"{redis_prefix}a".encode()]
    assert archives(tmp_path / "home" / "backups") == [Path(archive)]
