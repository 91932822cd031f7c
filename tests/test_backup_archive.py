"""The archive format on real archives of a real paper-trading ledger: every byte is covered by a
check (headers, member data, padding, end blocks, manifest), truncation at any point is refused,
and standard `tar` reads the files. Also the helpers the other backup tests import."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from sigmax_cli.backup.archive import (
    MANIFEST,
    ArchiveWriter,
    archive_name,
    canonical,
    hash_members,
    read_index,
    seal,
)
from sigmax_cli.errors import ArchiveNotFound, ChecksumMismatch, IncompatibleArchive, SigmaxError
from sigmax_cli.ledger.version import SCHEMA_VERSION
from tests.conftest import FREQTRADE_1H, PG_ADMIN_URL

# -- helpers shared by tests/test_backup_*.py ------------------------------------------------


def paper_run(cli, env: dict | None = None, bars: int = 1500) -> dict:
    """A real paper replay on real candles, so the ledger holds runs, orders, fills, equity, events."""
    result = cli("paper", "--data", FREQTRADE_1H, "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h",
                 "--max-bars", str(bars), "--no-tui", "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_json(cli, *args, env: dict | None = None) -> dict:
    result = cli(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(result, code: int, *words: str) -> str:
    """One sentence on stderr (``error: ...; ....``), nothing on stdout, exit ``code``."""
    err = result.stderr.strip()
    assert result.exit_code == code, (result.exit_code, result.output, err)
    assert err.startswith("error: ") and "\n" not in err and err.endswith("."), err
    assert "Traceback" not in err
    assert result.stdout == ""
    for word in words:
        assert word in err, (word, err)
    return err


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every table of a ledger, sorted, for exact comparisons."""
    from sqlalchemy import inspect, select, text

    from sigmax_cli.ledger.store import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for name in inspect(conn).get_table_names():
                cols = [c["name"] for c in inspect(conn).get_columns(name)]
                query = select(text("*")).select_from(text(f'"{name}"')).order_by(*[text(f'"{c}"') for c in cols])
                out[name] = [tuple(r) for r in conn.execute(query)]
            return out
    finally:
        engine.dispose()


def files_state(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, hidden ones included (for "nothing written" checks)."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def engage_kill_switch(home: Path, redis_url: str | None = None, prefix: str = "sigmax:") -> None:
    from sigmax_cli.risk.killswitch import KillSwitch

    KillSwitch(home, redis_url, prefix).engage("restore drill", by="test")


def archives(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("sigmax-backup-*.tar"))


def repack(src: Path, dest: Path, *, drop: str | None = None, edit=None, reseal: bool = True,
           replace: dict[str, bytes] | None = None) -> Path:
    """Rewrite an archive member by member (what a newer sigmax or a tamperer could produce).

    ``drop`` leaves a member out (the manifest still lists it); ``replace`` swaps member bytes
    (the manifest entry's size and sha256 follow); ``edit`` changes the manifest dict;
    ``reseal`` recomputes the manifest's own sha256 afterwards.
    """
    replace = replace or {}
    with tarfile.open(src) as tin:
        members = [(m, tin.extractfile(m).read()) for m in tin.getmembers()]
    manifest = json.loads(members[-1][1])
    body = []
    for info, data in members[:-1]:
        if info.name == drop:
            continue
        if info.name in replace:
            data = replace[info.name]
            entry = next(e for e in manifest["members"] if e["name"] == info.name)
            entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        body.append((info.name, data))
    if edit is not None:
        edit(manifest)
    if reseal:
        manifest = seal(manifest)
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tout:
        for name, data in [*body, (MANIFEST, canonical(manifest))]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 1_700_000_000
            info.uname = info.gname = ""
            import io

            tout.addfile(info, io.BytesIO(data))
    return dest


@pytest.fixture
def pg_db():
    """A PostgreSQL database of its own for one test, dropped after it."""
    import psycopg

    name = f"sigmax_bk_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_home(home: Path) -> Path:
    """A SIGMAX_HOME with a real paper-trading ledger (SQLite) and one archive of it; returns the archive."""
    from typer.testing import CliRunner

    from commands.app import app

    env = {"SIGMAX_HOME": str(home), "SIGMAX_DATABASE_URL": None, "SIGMAX_REDIS_URL": None,
           "SIGMAX_PROFILE": None}
    runner = CliRunner()
    result = runner.invoke(app, ["paper", "--data", str(FREQTRADE_1H), "--symbols", "BTC/USDT,ETH/USDT",
                                 "--timeframe", "1h", "--max-bars", "1500", "--no-tui", "--json"], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["backup", "--tag", "drill", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["archive"])


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Built once per module: a home with a ledger and an archive. Copy it, never change it."""
    home = tmp_path_factory.mktemp("template") / "home"
    build_home(home)
    return home


@pytest.fixture
def home(template, tmp_path) -> Path:
    """This test's SIGMAX_HOME (see tests/conftest.py), filled with a copy of the template."""
    target = tmp_path / "home"
    shutil.copytree(template, target)
    return target


@pytest.fixture
def sqlite_archive(home) -> Path:
    """A real archive of a real paper-trading ledger (SQLite) and the shipped profile."""
    (archive,) = archives(home / "backups")
    return archive


def _verify_bytes(path: Path) -> None:
    hash_members(read_index(path))


# -- the format ------------------------------------------------------------------------------


def test_archive_is_a_standard_tar_with_the_manifest_last_and_private_permissions(sqlite_archive):
    listing = subprocess.run(["tar", "tf", str(sqlite_archive)], capture_output=True, text=True, check=True)
    names = listing.stdout.split()
    assert names[-1] == MANIFEST and names[0] == "ledger/ledger.sqlite.zst"
    assert sqlite_archive.stat().st_mode & 0o777 == 0o600
    index = read_index(sqlite_archive)
    manifest = index.manifest
    for key in ("sigmax_version", "created_ms", "created_utc", "host", "tag", "members", "ledger_schema_version"):
        assert key in manifest
    assert manifest["tag"] == "drill" and manifest["created_utc"].endswith("Z")
    ledger = index.entries("ledger")[0]
    assert ledger["counts"]["fills"] > 0 and ledger["counts"]["equity"] > 0
    assert ledger["source"]["sqlite"] and ledger["source"]["ledger_schema"] == SCHEMA_VERSION
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in manifest["members"])
    # every sha256 in the manifest is the sha256 of the member as `tar` extracts it
    with tarfile.open(sqlite_archive) as tf:
        for entry in manifest["members"]:
            assert hashlib.sha256(tf.extractfile(entry["name"]).read()).hexdigest() == entry["sha256"]
    whole = hashlib.sha256(sqlite_archive.read_bytes()).hexdigest()
    assert hash_members(index) == whole


def test_every_single_byte_flip_is_refused(sqlite_archive, tmp_path):
    raw = bytearray(sqlite_archive.read_bytes())
    index = read_index(sqlite_archive)
    # one offset in every region: each header byte of the first member (incl. the checksum field's
    # terminator, which the tar checksum itself ignores), member data, padding, manifest, end blocks
    offsets = set(range(0, 512, 11)) | set(range(148, 156))  # the checksum field, byte by byte
    for member in index.members:
        offsets |= {member.offset + 100, member.offset + 155, member.data_offset, member.data_offset + member.size // 2,
                    member.data_offset + member.size - 1}
        if member.end > member.data_offset + member.size:
            offsets.add(member.end - 1)
    manifest = read_index(sqlite_archive)
    last_end = manifest.members[-1].end
    offsets |= set(range(last_end, len(raw), 331)) | {len(raw) - 1}
    offsets |= set(range(0, len(raw), len(raw) // 60))
    damaged = tmp_path / "flipped.tar"
    for offset in sorted(offsets):
        flipped = bytearray(raw)
        flipped[offset] ^= 0x01
        damaged.write_bytes(bytes(flipped))
        with pytest.raises(ChecksumMismatch):
            _verify_bytes(damaged)


def test_a_truncated_archive_is_refused_wherever_it_is_cut(sqlite_archive, tmp_path):
    raw = sqlite_archive.read_bytes()
    index = read_index(sqlite_archive)
    manifest_header = index.members[-1].end
    cuts = {"one byte": len(raw) - 1, "end blocks": len(raw) - 1024 - 512 * 17, "manifest": manifest_header + 600,
            "manifest header": manifest_header + 100, "half": len(raw) // 2,
            "inside a header": index.members[1].offset + 200, "after a member": index.members[1].end, "all": 0}
    short = tmp_path / "short.tar"
    for at in cuts.values():
        short.write_bytes(raw[:at])
        with pytest.raises(ChecksumMismatch):
            _verify_bytes(short)


def test_manifest_edits_missing_members_and_foreign_files_are_refused(sqlite_archive, tmp_path):
    def bump(m):
        m["members"][0]["counts"]["fills"] += 1

    edited = repack(sqlite_archive, tmp_path / "edited.tar", edit=bump, reseal=False)
    with pytest.raises(ChecksumMismatch, match="manifest was edited"):
        read_index(edited)
    missing = repack(sqlite_archive, tmp_path / "missing.tar", drop="ledger/ledger.sqlite.zst")
    with pytest.raises(ChecksumMismatch, match="missing"):
        read_index(missing)
    swapped = repack(sqlite_archive, tmp_path / "swapped.tar")
    data = bytearray(swapped.read_bytes())
    first = read_index(swapped).members[0]
    data[first.data_offset + 10] ^= 0xFF
    swapped.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="does not match its sha256"):
        _verify_bytes(swapped)
    text = tmp_path / "notes.tar"
    text.write_text("not an archive\n" * 100)
    with pytest.raises(ChecksumMismatch, match="not a sigmax backup"):
        read_index(text)
    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w", format=tarfile.GNU_FORMAT) as tf:
        tf.add(FREQTRADE_1H / "BTC_USDT-1h.json", arcname="MANIFEST.json")
    with pytest.raises(ChecksumMismatch):
        read_index(foreign)
    with pytest.raises(ArchiveNotFound):
        read_index(tmp_path / "nope.tar")


def test_archives_of_a_newer_sigmax_are_refused(sqlite_archive, tmp_path):
    newer = repack(sqlite_archive, tmp_path / "newer.tar", edit=lambda m: m.update(ledger_schema_version=99))
    with pytest.raises(IncompatibleArchive, match="schema version 99"):
        read_index(newer)
    future = repack(sqlite_archive, tmp_path / "future.tar", edit=lambda m: m.update(format_version=2))
    with pytest.raises(IncompatibleArchive, match="format version 2"):
        read_index(future)
    # a faithful repack (what our writer would make) passes: the checks are about content
    same = repack(sqlite_archive, tmp_path / "same.tar")
    _verify_bytes(same)


def test_an_unfinished_writer_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    src = tmp_path / "model.bin"
    src.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(RuntimeError), ArchiveWriter(out, archive_name(1_700_000_000_000, None)) as writer:
        writer.add("models/0001.zst", src, {"kind": "models", "path": "models/model.bin"})
        assert writer.partial.exists()
        raise RuntimeError("killed half-way")
    assert list(out.iterdir()) == []
    assert src.exists()  # the user's file is never consumed


def test_errors_are_sigmax_errors_with_distinct_documented_codes():
    from sigmax_cli.errors import LockHeld, TargetBusy

    codes = {cls.exit_code for cls in (ArchiveNotFound, LockHeld, ChecksumMismatch, TargetBusy)}
    assert codes == {10, 11, 12, 13}
    assert IncompatibleArchive.exit_code == 69 and issubclass(IncompatibleArchive, SigmaxError)

