"""Health checks that read the ledger (ledger, heartbeat, data, backup) and the kill switch,
on SQLite and the real PostgreSQL. Rows are written through the real Ledger (runs,
heartbeats) and its schema tables (backups, research_items); the checks read them back
through their own DB-API path. The clock handed to the checks is pinned, so ages are exact
and threshold edges can be hit to the millisecond.

The helpers here (``settings_for``, ``beat``, ``add_backup``, ...) are shared with the
other ``test_health_*`` files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sqlalchemy import delete, func, select, update

from sigmax_cli.health.base import Status
from sigmax_cli.health.runner import run_checks
from sigmax_cli.ledger import Ledger
from sigmax_cli.ledger import reader as db
from sigmax_cli.ledger import schema as s
from sigmax_cli.settings import load_settings

NOW = 1_767_225_600_000  # 2026-01-01 00:00 UTC, the pinned "now" of the checks
HOUR = 3_600_000
LIVE_FILES = [{"symbol": "BTC/USDT", "path": None, "sha256": None, "source": "binance public OHLCV"}]
WIDE_LATENCY = {name: {"warning": 5000, "critical": 9000}
                for name in ("ledger_latency_ms", "redis_latency_ms", "exchange_latency_ms")}
"""Health overrides for runs that must be OK however loaded the test machine is; latency
grading itself is tested on pinned values (test_health_formats)."""


def settings_for(url: str, env: dict | None = None, **health):
    """Settings with ``url`` as the ledger and ``health`` overrides (``{"heartbeat_age_s": {...}}``)."""
    overrides: dict = {"database_url": url}
    if health:
        overrides["health"] = health
    overrides.update(env or {})
    return load_settings(overrides=overrides)


def pinned():
    return NOW


def by_key(report, key: str, component: str | None = None):
    found = [r for r in report.results if r.key == key and (component is None or r.component == component)]
    assert len(found) == 1, (key, component, report.results, report.skipped)
    return found[0]


def skipped_keys(report) -> set[str]:
    return {sk.key for sk in report.skipped}


def start_run(url: str, run_id: str, *, timeframe: str = "1h", files=None, mode: str = "paper",
              started_ms: int | None = None) -> None:
    with Ledger(url) as ledger:
        ledger.start_run(run_id=run_id, mode=mode, profile="conservative", exchange="binance", strategy="rules",
                         params={}, symbols=["BTC/USDT"], timeframe=timeframe,
                         data_files=LIVE_FILES if files is None else files, initial_equity=10_000.0)
        if started_ms is not None:  # a run of another host: this process is younger than such a start, and
            # a pid younger than its run is a reused one (sigmax_cli.ledger.liveness)
            with ledger.engine.begin() as conn:
                conn.execute(update(s.runs).where(s.runs.c.run_id == run_id).values(
                    started_ms=started_ms, host_id="another-host"))


def beat(url: str, bot_id: str, run_id: str | None, ts_ms: int, status: str = "running",
         bar_ms: int | None = None, mode: str = "paper") -> None:
    """A heartbeat written by the real Ledger API, then moved to ``ts_ms``."""
    with Ledger(url) as ledger:
        ledger.heartbeat(bot_id, run_id, mode, status, {"bar_ms": bar_ms} if bar_ms is not None else None)
        with ledger.engine.begin() as conn:
            conn.execute(update(s.heartbeats).where(s.heartbeats.c.bot_id == bot_id).values(ts_ms=ts_ms))


def add_backup(url: str, path: Path, created_ms: int, verified_ms: int | None) -> None:
    with Ledger(url) as ledger, ledger.engine.begin() as conn:
        conn.execute(s.backups.insert().values(path=str(path), tag="daily", created_ms=created_ms,
                                               sha256="0" * 64, size_bytes=1024, verified_ms=verified_ms))


def add_research(url: str, first_seen_ms: int, guid: str = "g1") -> None:
    with Ledger(url) as ledger, ledger.engine.begin() as conn:
        conn.execute(s.research_items.insert().values(source="coindesk", guid=guid, title="Bitcoin holds 90k",
                                                      first_seen_ms=first_seen_ms))


# -- ledger --------------------------------------------------------------------------------
def test_ledger_round_trip_leaves_nothing_behind(ledger_url):
    with Ledger(ledger_url):
        pass
    report = run_checks(settings_for(ledger_url, **WIDE_LATENCY), ["ledger"])
    latency = by_key(report, "ledger:latency")
    assert latency.status is Status.OK and latency.unit == "ms" and latency.value >= 0
    assert (latency.limits.warning, latency.limits.critical) == (5000, 9000)
    assert "write-read round trip" in latency.message
    schema = by_key(report, "ledger:schema")
    assert (schema.status, schema.value) == (Status.OK, db.LEDGER_SCHEMA_VERSION)
    with Ledger(ledger_url) as ledger, ledger.engine.connect() as conn:
        probes = conn.execute(select(func.count()).select_from(s.events).where(s.events.c.kind == "health.probe"))
        assert probes.scalar_one() == 0


def test_schema_constant_matches_the_migrations():
    from sigmax_cli.ledger.migrations import SCHEMA_VERSION

    assert db.LEDGER_SCHEMA_VERSION == SCHEMA_VERSION, "bump sigmax_cli.ledger.reader.LEDGER_SCHEMA_VERSION"


def test_ledger_schema_older_and_newer(ledger_url):
    with Ledger(ledger_url) as ledger, ledger.engine.begin() as conn:
        conn.execute(delete(s.schema_version).where(s.schema_version.c.version >= 2))
    older = by_key(run_checks(settings_for(ledger_url), ["ledger"]), "ledger:schema")
    assert older.status is Status.WARNING and "older" in older.message and older.value == 1
    with Ledger(ledger_url) as ledger, ledger.engine.begin() as conn:  # opening upgrades it back
        conn.execute(s.schema_version.insert().values(version=99, applied_ms=NOW, description="from the future"))
    newer = by_key(run_checks(settings_for(ledger_url), ["ledger"]), "ledger:schema")
    assert newer.status is Status.CRITICAL and "newer than this sigmax" in newer.message


def spill_rows(url: str, home: Path, run_id: str) -> Path:
    """A spill file as a bot leaves it when it gives up on a ledger outage: a buffered event,
    spilled through the real Ledger into the folder paper and run use."""
    from sigmax_cli.paper import spill_dir

    with Ledger(url) as ledger:  # opened without it: opening with a spill_dir writes earlier spills in
        ledger.spill_dir = spill_dir(load_settings(home=home, overrides={"database_url": url}))
        ledger.record_event(run_id, NOW, "info", "test.row", "a row the outage kept")
        path = ledger.spill()
    assert path is not None and path.parent == home / "ledger-spill"
    return path


def test_pending_spill_files_warn_with_count_age_and_fix_until_a_bot_writes_them_in(tmp_path, ledger_url):
    home = tmp_path / "home"
    settings = load_settings(home=home, overrides={"database_url": ledger_url, "health": WIDE_LATENCY})
    ok = by_key(run_checks(settings, ["ledger"], clock=pinned), "ledger:spill")
    assert (ok.status, ok.value) == (Status.OK, 0)
    first = spill_rows(ledger_url, home, "paper-spilled-1")
    spill_rows(ledger_url, home, "paper-spilled-2")
    other = spill_rows(f"sqlite:///{tmp_path / 'other.db'}", home, "paper-elsewhere")
    (home / "ledger-spill" / "torn.json").write_text('{"format": 1, "id"')
    written = json.loads(first.read_text())["written_ms"]
    report = run_checks(settings, ["ledger"], clock=lambda: written + 3 * HOUR)
    spill = by_key(report, "ledger:spill")
    assert (spill.status, spill.value) == (Status.WARNING, 4) and report.status is Status.WARNING
    assert spill.message.startswith(f"2 file(s) of ledger rows spilled in an outage wait in {home / 'ledger-spill'} "
                                    "(oldest 3.0 h)")
    assert "start a bot on this ledger with this SIGMAX_HOME (`sigmax paper` or `sigmax run`)" in spill.message
    assert "1 file(s) there (oldest 3.0 h) belong to another ledger" in spill.message
    assert "1 file(s) cannot be read (torn.json)" in spill.message
    # the fix named is the real one: a bot opening this ledger (Ledger with the run's spill_dir) writes them in
    from sigmax_cli.paper import spill_dir

    with Ledger(ledger_url, spill_dir=spill_dir(settings)) as ledger, ledger.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(s.events).where(s.events.c.kind == "test.row"))
        assert rows.scalar_one() == 2
    other.unlink()
    (home / "ledger-spill" / "torn.json").unlink()
    after = by_key(run_checks(settings, ["ledger"], clock=pinned), "ledger:spill")
    assert (after.status, after.value) == (Status.OK, 0)


def test_spill_files_are_reported_when_the_ledger_cannot_be_opened(tmp_path):
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    path = spill_rows(url, home, "paper-spilled")
    (tmp_path / "ledger.db").unlink()  # the database is gone; its spilled rows are not
    report = run_checks(load_settings(home=home, overrides={"database_url": url}), ["ledger"], clock=pinned)
    assert by_key(report, "ledger:latency").status is Status.CRITICAL
    spill = by_key(report, "ledger:spill")
    assert spill.status is Status.WARNING and spill.value == 1 and str(path.parent) in spill.message


def test_missing_sqlite_ledger_is_critical_and_not_created(tmp_path):
    path = tmp_path / "nowhere" / "ledger.db"
    report = run_checks(settings_for(f"sqlite:///{path}"), ["ledger", "heartbeat", "backup", "data"])
    latency = by_key(report, "ledger:latency")
    assert latency.status is Status.CRITICAL and f"no ledger at {path}" in latency.message
    for key in ("heartbeat:age", "backup:age", "data:candle_age"):  # they cannot tell; the ledger says why
        assert by_key(report, key).status is Status.UNKNOWN
    assert report.status is Status.CRITICAL
    assert not path.exists() and not path.parent.exists()


def test_empty_and_corrupt_sqlite_files(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    report = run_checks(settings_for(f"sqlite:///{empty}"), ["ledger"])
    assert by_key(report, "ledger:schema").status is Status.WARNING
    assert "ledger:latency" in skipped_keys(report)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database, just bytes " * 200)
    report = run_checks(settings_for(f"sqlite:///{corrupt}"), ["ledger", "heartbeat"])
    latency = by_key(report, "ledger:latency")
    assert latency.status is Status.CRITICAL and "not a database" in latency.message
    assert by_key(report, "heartbeat:age").status is Status.UNKNOWN


# -- heartbeats ----------------------------------------------------------------------------
def test_heartbeat_ages_and_edges(ledger_url):
    beat(ledger_url, "fresh", None, NOW - 10_000)
    beat(ledger_url, "at-warning", None, NOW - 60_000)        # exactly 60 s: not past the threshold
    beat(ledger_url, "past-warning", None, NOW - 60_100)
    beat(ledger_url, "at-critical", None, NOW - 300_000)      # exactly 300 s: still WARNING
    beat(ledger_url, "past-critical", None, NOW - 300_100)
    beat(ledger_url, "stopped-long-ago", None, NOW - 30 * 86_400_000, status="stopped")
    report = run_checks(settings_for(ledger_url), ["heartbeat"], clock=pinned)
    got = {r.component: (r.status, r.value) for r in report.results}
    assert got == {
        "fresh": (Status.OK, 10.0),
        "at-warning": (Status.OK, 60.0),
        "past-warning": (Status.WARNING, 60.1),
        "at-critical": (Status.WARNING, 300.0),
        "past-critical": (Status.CRITICAL, 300.1),
    }
    assert report.status is Status.CRITICAL
    assert "last seen 5 min ago" in by_key(report, "heartbeat:age", "past-critical").message


def test_heartbeat_thresholds_come_from_settings(ledger_url):
    beat(ledger_url, "bot", None, NOW - 90_000)
    loose = settings_for(ledger_url, heartbeat_age_s={"warning": 120, "critical": 600})
    assert by_key(run_checks(loose, ["heartbeat"], clock=pinned), "heartbeat:age").status is Status.OK
    tight = settings_for(ledger_url, heartbeat_age_s={"warning": 30, "critical": 60})
    assert by_key(run_checks(tight, ["heartbeat"], clock=pinned), "heartbeat:age").status is Status.CRITICAL


def test_no_running_bot_is_skipped_not_failed(ledger_url):
    with Ledger(ledger_url):
        pass
    report = run_checks(settings_for(ledger_url), ["heartbeat"], clock=pinned)
    assert report.results == [] and report.skipped[0].reason == "no bot has written a heartbeat yet"
    assert report.status is Status.UNKNOWN  # nothing was measured at all
    beat(ledger_url, "done", None, NOW - 86_400_000, status="stopped")
    report = run_checks(settings_for(ledger_url), ["heartbeat"], clock=pinned)
    assert report.skipped[0].reason == "no bot is running (1 stopped)"


# -- data freshness --------------------------------------------------------------------------
def test_candle_age_of_live_bots_only(ledger_url):
    start_run(ledger_url, "live-ok")
    start_run(ledger_url, "live-late")
    start_run(ledger_url, "live-waiting", started_ms=NOW - 7_801_000)
    start_run(ledger_url, "live-15m", timeframe="15m")
    start_run(ledger_url, "replay", files=[{"symbol": "BTC/USDT", "path": "/data/BTC_USDT-1h.feather",
                                            "sha256": "ab" * 32, "bars": 5000}])
    # newest 1h bar opened 2 h + 120 s ago: it closed one bar + 120 s ago, exactly the warning edge
    beat(ledger_url, "bot-ok", "live-ok", NOW - 5_000, bar_ms=NOW - 2 * HOUR - 120_000)
    beat(ledger_url, "bot-late", "live-late", NOW - 5_000, bar_ms=NOW - 2 * HOUR - 120_100)
    beat(ledger_url, "bot-waiting", "live-waiting", NOW - 5_000)  # no bar 2 h 10 min after its start
    beat(ledger_url, "bot-15m", "live-15m", NOW - 5_000, bar_ms=NOW - 15 * 60_000 - 900_000 - 600_100)
    beat(ledger_url, "bot-replay", "replay", NOW - 5_000, bar_ms=1_609_459_200_000)  # 2021: a replay, not stale
    report = run_checks(settings_for(ledger_url), ["data"], clock=pinned)
    got = {r.component: (r.status, r.value) for r in report.results if r.measurement == "candle_age"}
    assert got == {
        "bot-ok": (Status.OK, 3720.0),
        "bot-late": (Status.WARNING, 3720.1),
        "bot-waiting": (Status.CRITICAL, 7801.0),
        "bot-15m": (Status.CRITICAL, 1500.1),
    }
    late = by_key(report, "data:candle_age", "bot-late")
    assert (late.limits.warning, late.limits.critical) == (3720.0, 4200.0)  # one 1h bar + data_age_s
    assert "closed 62 min ago" in late.message
    assert "data:research_age" in skipped_keys(report)


def test_research_age(ledger_url):
    start_run(ledger_url, "replay-only", files=[{"symbol": "BTC/USDT", "path": "/x.json", "sha256": "cd" * 32}])
    add_research(ledger_url, NOW - 2 * HOUR - 100, guid="old")
    add_research(ledger_url, NOW - 2 * HOUR, guid="newest")  # exactly 7200 s: at the warning edge
    report = run_checks(settings_for(ledger_url), ["data"], clock=pinned)
    research = by_key(report, "data:research_age")
    assert (research.status, research.value, research.unit) == (Status.OK, 7200.0, "s")
    assert skipped_keys(report) == {"data:candle_age"}
    stale = settings_for(ledger_url, research_age_s={"warning": 600, "critical": 3600})
    assert by_key(run_checks(stale, ["data"], clock=pinned), "data:research_age").status is Status.CRITICAL


# -- backups ---------------------------------------------------------------------------------
def test_backup_age_and_verification(ledger_url, tmp_path):
    with Ledger(ledger_url):
        pass
    none = by_key(run_checks(settings_for(ledger_url), ["backup"], clock=pinned), "backup:age")
    assert none.status is Status.WARNING and "no backup recorded" in none.message
    archive = tmp_path / "sigmax-backup-20251231.tar.zst"
    archive.write_bytes(b"archive bytes")
    add_backup(ledger_url, archive, NOW - 26 * HOUR, NOW - 25 * HOUR)  # exactly 26 h: not past the warning
    report = run_checks(settings_for(ledger_url), ["backup"], clock=pinned)
    assert (by_key(report, "backup:age").status, by_key(report, "backup:age").value) == (Status.OK, 26.0)
    assert by_key(report, "backup:verified").status is Status.OK and report.status is Status.OK

    add_backup(ledger_url, archive, NOW - 50 * HOUR + 1, None)  # older row: the newest one still counts
    newer = tmp_path / "sigmax-backup-20260101.tar.zst"
    newer.write_bytes(b"archive bytes")
    add_backup(ledger_url, newer, NOW - 25 * HOUR + 1, None)
    report = run_checks(settings_for(ledger_url), ["backup"], clock=pinned)
    assert by_key(report, "backup:age").status is Status.OK
    unverified = by_key(report, "backup:verified")
    assert unverified.status is Status.WARNING and "never verified" in unverified.message
    assert f"sigmax backup verify {newer}" in unverified.message

    newer.unlink()
    gone = by_key(run_checks(settings_for(ledger_url), ["backup"], clock=pinned), "backup:verified")
    assert gone.status is Status.WARNING and "missing on this host" in gone.message

    old = settings_for(ledger_url, backup_age_h={"warning": 12, "critical": 24})
    assert by_key(run_checks(old, ["backup"], clock=pinned), "backup:age").status is Status.CRITICAL


# -- kill switch -----------------------------------------------------------------------------
def test_killswitch_engaged_is_critical_with_its_reason(tmp_path):
    from sigmax_cli.risk.killswitch import KillSwitch

    settings = load_settings()
    released = run_checks(settings, ["killswitch"]).results[0]
    assert (released.status, released.value, released.message) == (Status.OK, 0, "released (file)")
    KillSwitch.from_settings(settings).engage("drawdown 12% on BTC/USDT", by="ops@desk")
    report = run_checks(settings, ["killswitch"])
    engaged = report.results[0]
    assert engaged.status is Status.CRITICAL and engaged.value == 1
    assert "engaged (file): drawdown 12% on BTC/USDT by ops@desk since" in engaged.message
    KillSwitch.from_settings(settings).release("checked the positions")
    assert run_checks(settings, ["killswitch"]).results[0].status is Status.OK


def test_heartbeat_detail_is_real_engine_json(ledger_url):
    """The detail the engine writes ({"bar_ms", "equity"}) is what the data check reads."""
    start_run(ledger_url, "live-eq")
    with Ledger(ledger_url) as ledger:
        ledger.heartbeat("bot-eq", "live-eq", "paper", "running", {"bar_ms": NOW - 2 * HOUR, "equity": 10_012.5})
        with ledger.engine.connect() as conn:
            detail = conn.execute(select(s.heartbeats.c.detail_json)).scalar_one()
    assert json.loads(detail)["bar_ms"] == NOW - 2 * HOUR
    result = by_key(run_checks(settings_for(ledger_url), ["data"], clock=pinned), "data:candle_age", "bot-eq")
    assert (result.status, result.value) == (Status.OK, 3600.0)
