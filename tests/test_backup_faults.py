"""Bad input and faults through the real CLI: a flipped byte, a truncated archive, a missing
member, an edited manifest, an archive of a newer schema, a backup killed half-way, a restore
while a bot runs, a held lock, secrets. Each is refused with one sentence on stderr and its
documented exit code, and nothing changes: not the ledger, not Redis, not the archive directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from sigmax_cli.ledger import Ledger
from sigmax_cli.ledger.version import SCHEMA_VERSION
from tests import test_backup_archive as support
from tests.conftest import REDIS_URL
from tests.test_backup_archive import (
    archives,
    engage_kill_switch,
    files_state,
    paper_run,
    refused,
    repack,
    run_json,
    table_rows,
)

home = support.home  # a fixture shared with test_backup_archive.py
pg_db = support.pg_db  # a fixture shared with test_backup_archive.py
template = support.template  # a fixture shared with test_backup_archive.py

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def drill(home):
    """A home with a ledger and one archive; the kill switch engaged, so restores are allowed."""
    engage_kill_switch(home)
    (archive,) = archives(home / "backups")
    return home, archive


def _state(home: Path) -> tuple:
    """Everything a refused command must leave as it was."""
    return table_rows(f"sqlite:///{home / 'ledger.db'}"), files_state(home / "backups"), files_state(home / "models")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_refused_by_verify_and_restore(cli, drill):
    home, archive = drill
    from sigmax_cli.backup.archive import read_index

    member = read_index(archive).members[0]
    _flip(archive, member.data_offset + member.size // 2)
    before = _state(home)
    for args in (("backup", "verify", archive), ("restore", archive), ("restore", archive, "--dry-run")):
        refused(cli(*args), 12, "ledger/ledger.sqlite.zst", "sha256")
        assert _state(home) == before


def test_a_truncated_archive_is_refused_and_listed_as_invalid(cli, drill):
    home, archive = drill
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    before = _state(home)
    refused(cli("restore", archive), 12, "truncated")
    refused(cli("backup", "verify", archive), 12)
    assert _state(home) == before
    listing = run_json(cli, "backup", "list")
    assert [b["valid"] for b in listing["backups"]] == [False]
    assert "truncated" in listing["backups"][0]["error"]
    refused(cli("restore", "--latest"), 10, "no valid backup")


def test_a_missing_member_and_an_edited_manifest_are_refused(cli, drill, tmp_path):
    home, archive = drill
    before = _state(home)
    missing = repack(archive, tmp_path / "missing.tar", drop="ledger/ledger.sqlite.zst")
    refused(cli("restore", missing), 12, "missing")

    def more_fills(m):
        m["members"][0]["counts"]["fills"] += 5

    edited = repack(archive, tmp_path / "edited.tar", edit=more_fills, reseal=False)
    refused(cli("restore", edited), 12, "manifest was edited")
    # re-sealed by hand: the SQLite ledger's own row counts give it away
    resealed = repack(archive, tmp_path / "resealed.tar", edit=more_fills)
    refused(cli("backup", "verify", resealed), 12, "row counts")
    assert _state(home) == before


def test_an_archive_resealed_in_place_differs_from_the_sha256_the_ledger_recorded(cli, tmp_path):
    paper_run(cli)
    archive = Path(run_json(cli, "backup")["archive"])
    home = tmp_path / "home"
    engage_kill_switch(home)

    def retag(m):
        m["tag"] = "golden"

    repack(archive, tmp_path / "x.tar", edit=retag)
    os.replace(tmp_path / "x.tar", archive)
    before = _state(home)
    refused(cli("restore", archive), 12, "recorded")
    assert _state(home) == before


def test_an_archive_of_a_newer_schema_is_refused_and_nothing_changes(cli, drill, tmp_path):
    home, archive = drill
    before = _state(home)
    # what a newer sigmax writes: its ledger carries a schema version one past ours
    future_version = SCHEMA_VERSION + 1
    with tarfile.open(archive) as tf:
        raw = zstandard.ZstdDecompressor().stream_reader(tf.extractfile("ledger/ledger.sqlite.zst")).read()
    db = tmp_path / "newer.db"
    db.write_bytes(raw)
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")  # everything in the one file
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 1, 'from the future')", (future_version,))
    counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for (t,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'").fetchall()}
    conn.close()
    raw = db.read_bytes()
    packed = zstandard.ZstdCompressor().compress(raw)

    def newer(m):
        m["members"][0]["counts"] = counts
        m["members"][0]["raw_size"] = len(raw)
        m.update(ledger_schema_version=future_version, sigmax_version="9.0.0")

    future = repack(archive, tmp_path / "future.tar", edit=newer, replace={"ledger/ledger.sqlite.zst": packed})
    refused(cli("restore", future), 69, f"schema version {future_version}", "upgrade sigmax")
    refused(cli("backup", "verify", future), 69)
    # even when the manifest does not say so, the ledger inside does
    quiet = repack(archive, tmp_path / "quiet.tar", replace={"ledger/ledger.sqlite.zst": packed},
                   edit=lambda m: m["members"][0].update(counts=counts, raw_size=len(raw)))
    refused(cli("restore", quiet), 69, f"schema version {future_version}")
    assert _state(home) == before


def test_a_backup_killed_half_way_leaves_nothing_list_shows_as_valid(cli, tmp_path):
    paper_run(cli)
    home = tmp_path / "home"
    models = home / "models"
    models.mkdir()
    for i in range(2):  # incompressible, so that compressing takes a while: time to kill it
        (models / f"policy-{i}.zip").write_bytes(os.urandom(48 << 20))
    env = {**os.environ, "SIGMAX_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "commands.app", "backup"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backups = home / "backups"
    deadline = time.monotonic() + 60  # bounded wait for the partial file
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list(backups.glob(".*.partial")) if backups.exists() else []
        if partial and partial[0].stat().st_size > 0:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the backup finished before it could be killed"
    assert list(backups.glob(".*.partial")), "killed with its partial file in place"
    assert run_json(cli, "backup", "list")["backups"] == []
    refused(cli("restore", "--latest"), 10)
    # the next backup cleans up after the killed one
    for model in models.iterdir():
        model.unlink()
    made = run_json(cli, "backup")
    assert [p.name for p in backups.iterdir()] == [Path(made["archive"]).name]


def test_restore_is_refused_while_a_bot_runs_or_the_kill_switch_is_released(cli, home):
    (archive,) = archives(home / "backups")
    url = f"sqlite:///{home / 'ledger.db'}"
    with Ledger(url) as ledger:
        ledger.heartbeat("testnet:host:4242", "run-live", "testnet", "running")
    before = _state(home)
    err = refused(cli("restore", archive), 13, "testnet:host:4242", "kill switch is not engaged", "--force")
    assert "heartbeat" in err
    engage_kill_switch(home)
    refused(cli("restore", archive), 13, "testnet:host:4242")
    assert _state(home) == before
    plan = run_json(cli, "restore", archive, "--dry-run")
    assert plan["blockers"] and plan["safety_backup"] is None
    assert _state(home) == before
    done = run_json(cli, "restore", archive, "--force")
    assert done["forced"] and done["safety_backup"]


def test_a_stale_heartbeat_does_not_block_a_restore(cli, home):
    (archive,) = archives(home / "backups")
    with Ledger(f"sqlite:///{home / 'ledger.db'}") as ledger, ledger.engine.begin() as conn:
        from sigmax_cli.ledger import schema as s

        conn.execute(s.heartbeats.insert().values(bot_id="crashed", run_id=None, mode="testnet", host="h", pid=1,
                                                  ts_ms=int(time.time() * 1000) - 3_600_000, status="running"))
    engage_kill_switch(home)
    assert run_json(cli, "restore", archive)["blockers"] == []


def test_a_held_lock_refuses_backup_restore_and_prune(cli, drill):
    home, archive = drill
    code = ("import sys, time; from pathlib import Path; from sigmax_cli.backup.lock import BackupLock; "
            "lock = BackupLock(Path(sys.argv[1]), 'backup'); lock.acquire(); print('locked', flush=True); "
            "time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(home)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _state(home)
        refused(cli("backup"), 11, f"pid {holder.pid}")
        refused(cli("restore", archive), 11)
        refused(cli("backup", "prune", "--keep-daily", "1", "--keep-weekly", "1"), 11)
        assert _state(home) == before
    finally:
        holder.kill()
        holder.wait()
    assert run_json(cli, "backup")["verified"]  # the kernel released the lock with the process


def test_archive_not_found_and_bad_options(cli, drill, tmp_path):
    home, archive = drill
    before = _state(home)
    cases = [
        (("restore", tmp_path / "nope.tar"), 10, "no archive"),
        (("backup", "verify", tmp_path / "nope.tar"), 10, "no archive"),
        (("restore",), 2, "--latest"),
        (("restore", archive, "--latest"), 2, "--latest"),
        (("restore", archive, "--only", "ledger,wallet"), 2, "wallet"),
        (("restore", archive, "--only", "redis"), 2, "holds no redis"),
        (("backup", "--tag", "../../etc"), 2, "tag"),
        (("backup", "--tag", "x" * 65), 2, "tag"),
        (("backup", "--include", "ledger,secrets"), 2, "secrets"),
        (("backup", "--include", ""), 2, "empty"),
        (("backup", "--include", "redis"), 2, "SIGMAX_REDIS_URL"),
        (("backup", "--include", "models"), 2, "models"),
        (("backup", "--tag", "x", "list"), 2, "--tag"),
        (("backup", "--out", archive), 2, "not a directory"),
        (("backup", "prune", "--keep-daily", "0", "--keep-weekly", "0"), 2, "keep at least one"),
        (("backup", "prune", "--keep-daily", "-1", "--keep-weekly", "2"), 2, "--keep-daily"),
    ]
    for args, code, word in cases:
        refused(cli(*args), code, word)
        assert _state(home) == before, args


@pytest.mark.postgres
def test_a_sqlite_archive_is_not_restored_into_postgresql(cli, drill, pg_url):
    home, archive = drill
    before = table_rows(pg_url)
    refused(cli("restore", archive, env={"SIGMAX_DATABASE_URL": pg_url}), 2, "SQLite ledger")
    assert table_rows(pg_url) == before


@pytest.mark.postgres
def test_pg_dump_missing_or_older_than_the_server_is_refused(cli, tmp_path, pg_db):
    env = {"SIGMAX_DATABASE_URL": pg_db}
    paper_run(cli, env=env)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    backups = tmp_path / "home" / "backups"
    refused(cli("backup", env={**env, "SIGMAX_BACKUP__PG_BIN_DIR": str(empty)}), 2, "pg_dump was not found",
            "postgresql-client")
    assert not backups.exists() or list(backups.iterdir()) == []
    # No older pg_dump can be installed on this machine, so a stub that reports version 12 stands in
    # for one; the refusal happens before it would run, as it must against a real old pg_dump.
    old = tmp_path / "old-tools"
    old.mkdir()
    stub = old / "pg_dump"
    stub.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.22'\n")
    stub.chmod(0o755)
    refused(cli("backup", env={**env, "SIGMAX_BACKUP__PG_BIN_DIR": str(old)}), 2, "pg_dump 12.22 is older",
            "postgresql-client-")
    assert not backups.exists() or list(backups.iterdir()) == []


def _grep_archive(archive: Path, secrets: list[str]) -> None:
    """Every byte of the archive, of each decompressed member and of the dump's SQL."""
    blobs = [archive.read_bytes()]
    with tarfile.open(archive) as tf:
        for info in tf.getmembers():
            data = tf.extractfile(info).read()
            blobs.append(data)
            if info.name.endswith(".zst"):
                blobs.append(zstandard.ZstdDecompressor().stream_reader(data).read())
            if info.name.endswith(".pgdump"):
                sql = subprocess.run(["pg_restore", "-f", "-"], input=data, capture_output=True, check=True)
                assert b"CREATE TABLE" in sql.stdout
                blobs.append(sql.stdout)
    for blob in blobs:
        for secret in secrets:
            assert secret.encode() not in blob, f"{secret} found in {archive.name}"


@pytest.mark.postgres
@pytest.mark.redis
def test_no_archive_ever_holds_a_secret(cli, tmp_path, pg_db, redis_prefix):
    home = tmp_path / "home"
    secrets = {"key": "planted-api-key-7f3a9c", "secret": "planted-api-secret-51be", "pg": "plantedpgpass3d8e",
               "hook": "planted-webhook-9a1b", "cp": "planted-cryptopanic-22aa", "file": "planted-in-a-file-c0ffee"}
    env_file = tmp_path / ".env.testnet"
    env_file.write_text(f"SIGMAX_API_KEY={secrets['key']}\n"
                        f"SIGMAX_ALERT_WEBHOOK_URL=https://hooks.example/{secrets['hook']}\n")
    db_url = pg_db.replace("postgres@", f"postgres:{secrets['pg']}@")  # trust auth here ignores the password
    env = {"SIGMAX_API_SECRET": secrets["secret"], "SIGMAX_RESEARCH__CRYPTOPANIC_KEY": secrets["cp"],
           "SIGMAX_DATABASE_URL": db_url, "SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_REDIS_PREFIX": redis_prefix}
    paper_run(cli, env=env)
    for folder in (home, home / "models", home / "profiles"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".env.live").write_text(f"SIGMAX_API_KEY={secrets['file']}\n")
        (folder / "live.env").write_text(f"SIGMAX_API_SECRET={secrets['file']}\n")
    (home / "models" / "policy.zip").write_bytes(b"weights")
    (home / "profiles" / "mine.toml").write_text("[risk]\nmax_open_orders = 3  # orders\n")
    import redis

    redis.Redis.from_url(REDIS_URL).set(f"{redis_prefix}state", "ACTIVE")
    result = cli("--env-file", env_file, "backup", "--tag", "audit", "--json", env=env)
    assert result.exit_code == 0, result.output
    engage_kill_switch(home)
    restore = cli("--env-file", env_file, "restore", "--latest", "--json", env=env)
    assert restore.exit_code == 0, restore.output
    made = archives(home / "backups")
    assert len(made) == 2  # the backup and the restore's safety backup
    for archive in made:
        _grep_archive(archive, list(secrets.values()))
    for output in (result.stdout + result.stderr, restore.stdout + restore.stderr):
        assert not any(s in output for s in secrets.values())
    with tarfile.open(made[0]) as tf:
        names = [m.name for m in tf.getmembers()]
    assert "redis/keys.jsonl.zst" in names and "ledger/ledger.pgdump" in names
    assert sum(n.startswith("models/") for n in names) == 1  # policy.zip, not the env files


def test_a_profile_holding_a_secret_stops_the_backup(cli, tmp_path):
    home = tmp_path / "home"
    paper_run(cli)
    (home / "profiles").mkdir()
    (home / "profiles" / "leaky.toml").write_text('api_key = "planted-in-profile-123"  # oops\n')
    before = _state(home)
    refused(cli("backup"), 2, "leaky.toml", "api_key")
    assert _state(home) == before


def test_a_restore_killed_half_way_leaves_a_scratch_copy_that_the_next_backup_removes(cli, tmp_path):
    paper_run(cli)
    home = tmp_path / "home"
    models = home / "models"
    models.mkdir()
    for i in range(2):  # incompressible, so that extracting takes a while: time to kill it
        (models / f"policy-{i}.zip").write_bytes(os.urandom(48 << 20))
    run_json(cli, "backup")
    engage_kill_switch(home)
    env = {**os.environ, "SIGMAX_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "commands.app", "restore", "--latest", "--force"], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60  # bounded wait for the scratch copy
    while time.monotonic() < deadline and proc.poll() is None:
        scratch = [p for p in home.glob(".sigmax-restore-*") if any(p.rglob("*"))]
        if scratch:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the restore finished before it could be killed"
    (left,) = home.glob(".sigmax-restore-*")
    assert left.name.split("-")[3] == str(proc.pid)  # the owner is in the name
    run_json(cli, "backup", "--include", "ledger")  # the next backup, under the lock, cleans up
    assert not left.exists()


def test_only_scratch_copies_whose_owner_is_gone_are_removed(cli, tmp_path):
    from sigmax_cli.backup.verify import clean_stale_scratch
    from sigmax_cli.ledger.liveness import host_tag

    home = tmp_path / "home"
    home.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    here = host_tag()
    elsewhere = "0" * 8 if here != "0" * 8 else "1" * 8
    paths = {
        "dead owner": home / f".sigmax-restore-{here}-{gone.pid}-k1x2",
        "running owner": home / f".sigmax-restore-{here}-{os.getpid()}-a7b8",
        "another host": home / f".sigmax-restore-{elsewhere}-{gone.pid}-c3d4",
        "old, no owner": home / ".sigmax-restore-q9w8e7r6",
        "recent, no owner": home / ".sigmax-restore-z1x2c3v4",
    }
    for path in paths.values():
        (path / "ledger").mkdir(parents=True)
        (path / "ledger" / "00000").write_bytes(b"x" * 1024)
    old = time.time() - 2 * 86_400
    os.utime(paths["old, no owner"], (old, old))
    install_copy = home / f".ledger.db.restore-{gone.pid}"
    install_copy.write_bytes(b"half a ledger")
    removed = clean_stale_scratch(home)
    assert sorted(removed) == sorted([paths["dead owner"], paths["old, no owner"], install_copy])
    assert [name for name, path in paths.items() if path.exists()] == ["running owner", "another host",
                                                                         "recent, no owner"]
