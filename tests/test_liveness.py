"""Runs whose bot is gone become ``lost``: a paper bot killed with SIGKILL (a real process),
runs of "another host" (a host id that is not ours) judged by heartbeat silence, pid reuse,
the ledger migration that adds the columns, acknowledging through `sigmax runs ack`, and
SIGHUP ending a run like SIGTERM. SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, update

from sigmax_cli.health.runner import run_checks
from sigmax_cli.ledger import Ledger, liveness, make_engine, migrations
from sigmax_cli.ledger import schema as s
from tests.conftest import FREQTRADE_1H, REPO
from tests.test_health_ledger import settings_for, start_run

MIN = 60_000


def _paper_bot(home: Path, run_id: str, *extra: str) -> subprocess.Popen:
    """A real paper bot replaying 1h bars at 36,000x (0.1 s a bar: it runs for minutes)."""
    env = {**os.environ, "SIGMAX_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "commands.app", "paper", "--data", str(FREQTRADE_1H), "--symbols", "BTC/USDT",
         "--timeframe", "1h", "--speed", "36000", "--no-tui", "--run-id", run_id, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_heartbeat(home: Path, run_id: str, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with sqlite3.connect(home / "ledger.db") as conn:
                if conn.execute("select count(*) from heartbeats where run_id = ?", (run_id,)).fetchone()[0]:
                    return
        except sqlite3.OperationalError:  # the file may exist before its tables do
            pass
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} wrote no heartbeat within {timeout_s} s")


def _runs(home: Path) -> dict[str, dict]:
    with sqlite3.connect(home / "ledger.db") as conn:
        conn.row_factory = sqlite3.Row
        return {r["run_id"]: dict(r) for r in conn.execute("select * from runs")}


def test_a_sigkilled_bot_is_lost_reported_once_as_warning_until_acknowledged(cli, tmp_path):
    home = tmp_path / "home"
    bot = _paper_bot(home, "killed")
    try:
        _wait_for_heartbeat(home, "killed")
    finally:
        bot.kill()  # SIGKILL: no handler runs, the run stays `running` in the ledger
        bot.communicate(timeout=30)
    assert _runs(home)["killed"]["status"] == "running"

    first = cli("health", "--check", "heartbeat,killswitch")
    assert first.exit_code == 1, first.stdout  # WARNING, not CRITICAL
    line = first.stdout.splitlines()[0]
    assert line.startswith(f"SIGMAX WARNING - heartbeat: run killed (paper on {os.uname().nodename}, pid {bot.pid}) "
                           f"was lost: its process (pid {bot.pid} on ")
    assert "acknowledge it with `sigmax runs ack killed`" in line
    run = _runs(home)["killed"]
    assert run["status"] == "lost" and run["lost_ms"] and run["ended_ms"] and run["lost_acked_ms"] is None
    again = cli("health", "--check", "heartbeat,killswitch", "--json")
    doc = json.loads(again.stdout)
    assert again.exit_code == 1 and [c["status"] for c in doc["checks"]["heartbeat:lost"]] == ["warn"]
    with sqlite3.connect(home / "ledger.db") as conn:  # marked once, however often it is read
        assert conn.execute("select count(*) from events where kind = 'run.lost'").fetchone()[0] == 1

    listed = json.loads(cli("runs", "list", "--lost", "--json").stdout)
    assert [r["run_id"] for r in listed["runs"]] == ["killed"] and listed["lost_unacknowledged"] == 1
    monitored = json.loads(cli("monitor", "--json").stdout)
    assert monitored["lost"] == 1 and monitored["bots"][0]["status"] == "lost"
    assert "sigmax runs ack killed" in monitored["bots"][0]["lost"]
    report = json.loads(cli("report", "--list", "--format", "json").stdout)
    assert report["runs"][0]["status"] == "lost"

    acked = cli("runs", "ack", "killed")
    assert acked.exit_code == 0 and acked.stdout.strip() == "acknowledged 1 lost run: killed"
    assert _runs(home)["killed"]["lost_acked_ms"] is not None
    after = cli("health", "--check", "heartbeat,killswitch")
    assert after.exit_code == 0 and after.stdout.startswith("SIGMAX OK")
    assert "heartbeat:age - no bot is running (1 lost)" in after.stdout
    assert cli("runs", "ack", "killed").stdout.strip() == "no lost run was waiting for an acknowledgement"


def test_a_new_paper_run_marks_the_runs_of_dead_bots_lost(cli, tmp_path):
    home = tmp_path / "home"
    bot = _paper_bot(home, "dead")
    try:
        _wait_for_heartbeat(home, "dead")
    finally:
        bot.kill()
        bot.communicate(timeout=30)
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--max-bars", "300", "--json",
                 "--run-id", "next")
    assert result.exit_code == 0, result.stderr
    runs = _runs(home)
    assert runs["dead"]["status"] == "lost" and runs["next"]["status"] == "completed"
    assert runs["next"]["host_id"] == liveness.host_id() and runs["next"]["heartbeat_interval_ms"] == 10_000


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_sighup_ends_a_run_like_sigterm(tmp_path, sig):
    """A closed terminal sends SIGHUP: the bot finishes its bar, marks the run interrupted, exits 130."""
    home = tmp_path / "home"
    bot = _paper_bot(home, "hup")
    try:
        _wait_for_heartbeat(home, "hup")
        bot.send_signal(sig)
        _out, err = bot.communicate(timeout=60)
    finally:
        if bot.poll() is None:
            bot.kill()
    assert bot.returncode == 130, err.decode()
    assert b"Traceback" not in err
    run = _runs(home)["hup"]
    assert run["status"] == "interrupted" and run["ended_ms"] is not None


# -- the rules, on both backends ------------------------------------------------------------
def _foreign(url: str, run_id: str, *, interval_ms: int = MIN, host_id: str | None = "another-host",
             pid: int | None = None, started_ms: int | None = None) -> None:
    """Make ``run_id`` look like a run of another host (or of an older sigmax: ``host_id=None``)."""
    values = {"host_id": host_id, "heartbeat_interval_ms": interval_ms, "host": "elsewhere"}
    if pid is not None:
        values["pid"] = pid
    if started_ms is not None:
        values["started_ms"] = started_ms
    with Ledger(url) as ledger, ledger.engine.begin() as conn:
        conn.execute(update(s.runs).where(s.runs.c.run_id == run_id).values(**values))


def _beat_at(url: str, run_id: str, ts_ms: int) -> None:
    with Ledger(url) as ledger:
        ledger.heartbeat(f"live:elsewhere:{run_id}", run_id, "testnet", "running")
        with ledger.engine.begin() as conn:
            conn.execute(update(s.heartbeats).where(s.heartbeats.c.run_id == run_id).values(ts_ms=ts_ms))


def test_another_hosts_run_is_lost_after_five_silent_intervals_and_revives_when_it_beats(ledger_url):
    start_run(ledger_url, "far", mode="testnet")
    seen = int(time.time() * 1000) - 60 * MIN
    _foreign(ledger_url, "far", interval_ms=5 * MIN, started_ms=seen - MIN)  # a 5m bot: lost after 25 min silent
    _beat_at(ledger_url, "far", seen)
    with Ledger(ledger_url) as ledger:
        assert ledger.mark_lost_runs(now_ms=seen + 25 * MIN) == []  # exactly at the limit: not yet
        assert ledger.get_run("far").status == "running"
        (lost,) = ledger.mark_lost_runs(now_ms=seen + 25 * MIN + 1)
        assert lost.run_id == "far" and lost.reason == ("elsewhere has not heard from it for 25 min "
                                                         "(5 heartbeat intervals, 25 min, is the limit)")
        assert ledger.get_run("far").status == "lost"
        ledger.heartbeat("live:elsewhere:far", "far", "testnet", "running")  # it was only cut off
        run = ledger.get_run("far")
        assert run.status == "running" and run.lost_ms is None and run.ended_ms is None
        assert ledger.mark_lost_runs() == []


def test_the_ten_minute_floor_and_a_run_that_never_beat(ledger_url):
    start_run(ledger_url, "quick", mode="testnet")
    started = int(time.time() * 1000)
    _foreign(ledger_url, "quick", interval_ms=10_000, started_ms=started)  # 5 x 10 s < the 10 min floor
    with Ledger(ledger_url) as ledger:
        assert ledger.mark_lost_runs(now_ms=started + 10 * MIN) == []
        (lost,) = ledger.mark_lost_runs(now_ms=started + 10 * MIN + 1)  # no heartbeat: its start counts
        assert lost.last_seen_ms == started


def test_a_container_sharing_the_host_name_is_another_host(ledger_url):
    """Same host name, different PID namespace: its pid means nothing here, so a missing pid
    does not make it lost; only its silence could."""
    start_run(ledger_url, "boxed", mode="testnet")
    _foreign(ledger_url, "boxed", pid=2**22 + 12345)  # no such pid here
    with Ledger(ledger_url) as ledger, ledger.engine.begin() as conn:
        conn.execute(update(s.runs).where(s.runs.c.run_id == "boxed").values(host=os.uname().nodename))
    with Ledger(ledger_url) as ledger:
        assert ledger.mark_lost_runs() == []


def test_on_this_host_a_reused_pid_does_not_keep_a_run_alive(ledger_url):
    start_run(ledger_url, "reused")
    newcomer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Ledger(ledger_url) as ledger, ledger.engine.begin() as conn:  # the run started an hour before it
            conn.execute(update(s.runs).where(s.runs.c.run_id == "reused").values(
                pid=newcomer.pid, started_ms=int(time.time() * 1000) - 60 * MIN))
        with Ledger(ledger_url) as ledger:
            (lost,) = ledger.mark_lost_runs()
            assert lost.run_id == "reused" and f"pid {newcomer.pid}" in lost.reason
    finally:
        newcomer.kill()
        newcomer.wait(timeout=10)


def test_this_process_is_alive_and_a_hung_bot_stays_critical_not_lost(ledger_url):
    """A bot whose process lives but whose heartbeat is old is stuck, not gone: CRITICAL by age."""
    from tests.test_health_ledger import by_key

    start_run(ledger_url, "stuck")
    _beat_at(ledger_url, "stuck", int(time.time() * 1000) - 60 * MIN)
    report = run_checks(settings_for(ledger_url), ["heartbeat"])
    assert by_key(report, "heartbeat:age").status.name == "CRITICAL"
    assert not [r for r in report.results if r.key == "heartbeat:lost"]


def test_health_on_both_backends_reports_a_lost_run_once(ledger_url):
    from tests.test_health_ledger import by_key

    start_run(ledger_url, "gone", mode="testnet")
    _foreign(ledger_url, "gone", started_ms=int(time.time() * 1000) - 180 * MIN)
    _beat_at(ledger_url, "gone", int(time.time() * 1000) - 120 * MIN)
    for _ in range(2):
        report = run_checks(settings_for(ledger_url), ["heartbeat", "data"])
        lost = by_key(report, "heartbeat:lost", "gone")
        assert lost.status.name == "WARNING" and "`sigmax runs ack gone`" in lost.message
        assert lost.value == pytest.approx(7200, abs=60)
        assert not [r for r in report.results if r.key in ("heartbeat:age", "data:candle_age")]
    with Ledger(ledger_url) as ledger:
        assert ledger.acknowledge_lost(["gone"]) == ["gone"]
    report = run_checks(settings_for(ledger_url), ["heartbeat"])
    assert not [r for r in report.results if r.key == "heartbeat:lost"]


def test_acknowledging_a_run_that_is_not_lost_is_refused(cli, ledger_url):
    from sigmax_cli.errors import ConfigError, NotFoundError

    start_run(ledger_url, "fine")
    with Ledger(ledger_url) as ledger:
        with pytest.raises(ConfigError, match="run 'fine' is running, not lost"):
            ledger.acknowledge_lost(["fine"])
        with pytest.raises(NotFoundError, match="no run 'nope'"):
            ledger.acknowledge_lost(["nope"])
    result = cli("runs", "ack", "fine", env={"SIGMAX_DATABASE_URL": ledger_url})
    assert result.exit_code == 2
    assert result.stderr == ("error: run 'fine' is running, not lost; only lost runs are acknowledged; list the "
                             "lost runs with `sigmax runs list --lost`.\n")


def test_a_schema_2_ledger_gains_the_columns_and_keeps_its_running_run(tmp_path):
    """A ledger as sigmax wrote it before schema 3 (the four columns dropped again after
    creating it at version 2); its running run has no host id, so it is judged by silence."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    migrations.upgrade(engine, target=2)
    with engine.begin() as conn:
        for column in ("host_id", "heartbeat_interval_ms", "lost_ms", "lost_acked_ms"):
            conn.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        conn.exec_driver_sql(
            "INSERT INTO runs (run_id, mode, profile, exchange, strategy, params_json, symbols_json, timeframe, "
            "data_files_json, initial_equity, started_ms, status, host, pid) VALUES ('old', 'paper', 'p', 'binance', "
            f"'rules', '{{}}', '[]', '1h', '[]', 1.0, {int(time.time() * 1000) - 6 * 3_600_000}, 'running', "
            f"'{os.uname().nodename}', {os.getpid()})")
    assert "lost_ms" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    engine.dispose()
    report = run_checks(settings_for(url), ["heartbeat"])  # health reads it as it is: judged, not written
    from tests.test_health_ledger import by_key

    assert by_key(report, "heartbeat:lost", "old").status.name == "WARNING"
    with Ledger(url) as ledger:  # opening upgrades it in place
        assert ledger.schema_version == migrations.SCHEMA_VERSION
        (lost,) = ledger.mark_lost_runs()  # 6 h of silence > 5 x 1 h
        assert lost.run_id == "old" and ledger.get_run("old").status == "lost"


def test_a_read_only_ledger_is_judged_without_writing(cli, pg_url):
    """monitor and report as a PostgreSQL role that may only SELECT (an auditor's, a
    dashboard's): the lost run is shown lost, nothing is written, nothing crashes."""
    import uuid

    import psycopg

    from tests.conftest import PG_ADMIN_URL

    start_run(pg_url, "gone-ro", mode="testnet")
    _foreign(pg_url, "gone-ro", started_ms=int(time.time() * 1000) - 180 * MIN)
    role = f"sigmax_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    url = pg_url.replace("postgres@", f"{role}@", 1)
    try:
        with Ledger(url) as ledger:
            (lost,) = ledger.mark_lost_runs()
            assert lost.run_id == "gone-ro" and ledger.get_run("gone-ro").status == "running"
        monitored = cli("monitor", "--json", env={"SIGMAX_DATABASE_URL": url})
        assert monitored.exit_code == 0, monitored.stderr
        report = cli("report", "--list", "--format", "json", env={"SIGMAX_DATABASE_URL": url})
        assert report.exit_code == 0 and json.loads(report.stdout)["runs"][0]["status"] == "running"  # as stored
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")  # drops the grants with it
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_sighup_sets_the_stop_event_of_stop_on_signals():
    """paper and run both stop through stop_on_signals: a real SIGHUP to this process."""
    import threading

    from sigmax_cli.signals import stop_on_signals

    stop = threading.Event()
    before = signal.getsignal(signal.SIGHUP)
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGHUP)
        assert stop.wait(10)
    assert signal.getsignal(signal.SIGHUP) == before
