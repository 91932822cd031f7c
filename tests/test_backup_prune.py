"""The prune policy (restic's keep-daily/weekly/monthly in UTC buckets, plus "never the newest
verified backup"), table-driven, then `sigmax backup prune` on real archive files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sigmax_cli.backup.archive import FORMAT, FORMAT_VERSION, ArchiveWriter, archive_name
from sigmax_cli.backup.catalog import record
from sigmax_cli.backup.prune import Candidate, plan_prune
from sigmax_cli.errors import ConfigError
from tests.test_backup_archive import archives, files_state, refused, run_json


def ms(text: str) -> int:
    """``"2026-03-02 23:00"`` (UTC) -> ms since epoch."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000)


def backups(*specs: str) -> list[Candidate]:
    """``"2026-03-02 23:00 v"``: a backup at that UTC time, verified when the spec ends in ``v``."""
    out = []
    for spec in specs:
        verified = spec.endswith(" v")
        stamp = spec[:-2] if verified else spec
        out.append(Candidate(spec, ms(stamp), verified))
    return out


# Monday 2026-03-02 .. Sunday 2026-03-08 is ISO week 10.
CASES = [
    pytest.param(  # one per day: keep the newest of each of the last 3 days
        backups("2026-03-05 01:00", "2026-03-04 01:00", "2026-03-03 01:00", "2026-03-02 01:00"),
        dict(keep_daily=3, keep_weekly=0), {"2026-03-05 01:00", "2026-03-04 01:00", "2026-03-03 01:00"},
        id="daily-keeps-newest-days"),
    pytest.param(  # several per day: only the newest of each day counts
        backups("2026-03-05 23:00", "2026-03-05 12:00", "2026-03-05 00:10", "2026-03-04 23:59", "2026-03-04 00:00"),
        dict(keep_daily=2, keep_weekly=0), {"2026-03-05 23:00", "2026-03-04 23:59"},
        id="daily-newest-within-a-day"),
    pytest.param(  # days without backups do not use up the count (restic semantics)
        backups("2026-03-20 10:00", "2026-03-10 10:00", "2026-02-01 10:00"),
        dict(keep_daily=2, keep_weekly=0), {"2026-03-20 10:00", "2026-03-10 10:00"},
        id="daily-skips-empty-days"),
    pytest.param(  # ISO weeks: Sunday 03-08 is week 10, Monday 03-09 is week 11
        backups("2026-03-09 00:30", "2026-03-08 23:30", "2026-03-02 00:00", "2026-03-01 23:00"),
        dict(keep_daily=0, keep_weekly=2), {"2026-03-09 00:30", "2026-03-08 23:30"},
        id="weekly-iso-weeks"),
    pytest.param(
        backups("2026-03-31 23:00", "2026-03-01 00:00", "2026-02-28 23:59", "2026-01-15 00:00", "2025-12-31 23:00"),
        dict(keep_daily=0, keep_weekly=0, keep_monthly=3), {"2026-03-31 23:00", "2026-02-28 23:59",
                                                             "2026-01-15 00:00"},
        id="monthly"),
    pytest.param(  # rules add up: a backup kept by any rule stays
        backups("2026-03-05 01:00", "2026-03-04 01:00", "2026-02-27 01:00", "2026-02-20 01:00", "2026-01-10 01:00"),
        dict(keep_daily=2, keep_weekly=2, keep_monthly=3),
        {"2026-03-05 01:00", "2026-03-04 01:00", "2026-02-27 01:00", "2026-01-10 01:00"},
        id="rules-combine"),
    pytest.param(  # the newest verified backup is kept whatever the rules say
        backups("2026-03-05 01:00", "2026-03-04 01:00", "2026-03-03 01:00 v", "2026-03-02 01:00 v"),
        dict(keep_daily=1, keep_weekly=0), {"2026-03-05 01:00", "2026-03-03 01:00 v"},
        id="newest-verified-protected"),
    pytest.param(  # ... and only the newest one
        backups("2026-03-05 01:00 v", "2026-03-04 01:00 v", "2026-03-03 01:00 v"),
        dict(keep_daily=1, keep_weekly=0), {"2026-03-05 01:00 v"},
        id="older-verified-may-go"),
    pytest.param([], dict(keep_daily=7, keep_weekly=4), set(), id="nothing-to-prune"),
]


@pytest.mark.parametrize(("candidates", "policy", "kept"), CASES)
def test_prune_policy(candidates, policy, kept):
    plan = plan_prune(candidates, **policy)
    assert set(plan.keep) == kept
    assert set(plan.remove) == {c.name for c in candidates} - kept
    assert not set(plan.keep) & set(plan.remove)
    if any(c.verified for c in candidates):
        newest_verified = max((c for c in candidates if c.verified), key=lambda c: c.created_ms)
        assert newest_verified.name in plan.keep


@pytest.mark.parametrize("policy", [dict(keep_daily=0, keep_weekly=0), dict(keep_daily=-1, keep_weekly=3),
                                    dict(keep_daily=1, keep_weekly=1, keep_monthly=-2)])
def test_prune_policy_refuses_nonsense(policy):
    with pytest.raises(ConfigError):
        plan_prune(backups("2026-03-05 01:00"), **policy)


def _archive(directory: Path, created_ms: int, tag: str) -> Path:
    """A real (config-only) archive dated ``created_ms``, written by the real writer."""
    note = directory.parent / f"note-{created_ms}.json"
    note.write_text('{"note": "prune test"}\n')
    with ArchiveWriter(directory, archive_name(created_ms, tag)) as writer:
        writer.add("config/settings.json.zst", note, {"kind": "config", "role": "settings", "path": "settings.json"})
        written = writer.commit({"format": FORMAT, "format_version": FORMAT_VERSION, "created_ms": created_ms,
                                 "tag": tag, "reason": "manual", "sigmax_version": "0.1.0"})
    return written.path


def test_prune_command_dry_run_then_delete_never_the_newest_verified(cli, tmp_path):
    from sigmax_cli.settings import load_settings

    settings = load_settings()
    directory = tmp_path / "home" / "backups"
    directory.mkdir(parents=True)
    stamps = ["2026-03-05 01:00", "2026-03-04 01:00", "2026-03-03 01:00", "2026-02-20 01:00", "2026-01-10 01:00"]
    made = {s: _archive(directory, ms(s), f"t{i}") for i, s in enumerate(stamps)}
    from sigmax_cli.ledger import Ledger

    Ledger(settings.ledger_url).close()  # an empty ledger to record verification in
    old = made["2026-02-20 01:00"]
    assert record(settings, old, tag="t3", created_ms=ms("2026-02-20 01:00"), sha256="0" * 64,
                  size=old.stat().st_size, verified_ms=ms("2026-02-21 00:00"))
    (directory / "sigmax-backup-20260101T000000.000Z-broken.tar").write_bytes(b"junk" * 100)
    before = files_state(directory)
    plan = run_json(cli, "backup", "prune", "--keep-daily", "2", "--keep-weekly", "0", "--dry-run")
    assert files_state(directory) == before
    kept = {k["name"]: k["reasons"] for k in plan["keep"]}
    assert set(kept) == {made[s].name for s in ("2026-03-05 01:00", "2026-03-04 01:00", "2026-02-20 01:00")}
    assert kept[old.name] == ["newest verified"]
    assert plan["invalid"] == ["sigmax-backup-20260101T000000.000Z-broken.tar"]
    done = run_json(cli, "backup", "prune", "--keep-daily", "2", "--keep-weekly", "0")
    assert sorted(done["remove"]) == sorted(plan["remove"]) and not done["dry_run"]
    assert {p.name for p in archives(directory)} == set(kept) | {"sigmax-backup-20260101T000000.000Z-broken.tar"}
    listed = run_json(cli, "backup", "list")["backups"]
    assert [b["name"] for b in listed if b["valid"]] == [n for n in kept]  # newest first
    human = cli("backup", "prune", "--keep-daily", "1", "--keep-weekly", "1", "--dry-run")
    assert human.exit_code == 0 and "would remove" in human.stdout and "newest verified" in human.stdout
    refused(cli("backup", "prune", "--keep-daily", "1"), 2, "--keep-weekly")
