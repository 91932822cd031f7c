"""Kill switch (file and Redis, across processes), bots obeying it, and `sigmax panic`
against the Binance emulator with 50 open orders over 5 symbols and faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigmax_cli.errors import ConfigError
from sigmax_cli.risk.killswitch import KillSwitch, KillSwitchWatcher, SwitchState
from tests.conftest import FREQTRADE_1H, REDIS_URL
from tests.support.binance_emulator import BinanceEmulator, Fault
from tests.support.binance_orders import SpotAccount, install
from tests.support.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent


def test_file_switch_engage_status_release(tmp_path):
    switch = KillSwitch(tmp_path)
    assert switch.status().state is SwitchState.RELEASED and not switch.engaged()
    first = switch.engage("drill", "ops@host")
    assert first.engaged and first.source == "file" and first.by == "ops@host" and first.written == ("file",)
    again = switch.engage("second reason", "someone@else")  # idempotent: the original stays
    assert again.reason == "drill" and again.since_ms == first.since_ms and again.was_engaged
    with pytest.raises(ConfigError, match="needs a reason"):
        switch.release("  ")
    assert switch.engaged()
    released = switch.release("checked positions", "ops@host")
    assert released.state is SwitchState.RELEASED
    record = json.loads((tmp_path / "KILLSWITCH").read_text())  # a release is a record, not a missing file
    assert record["state"] == "released" and record["reason"] == "checked positions" and record["id"]
    (tmp_path / "KILLSWITCH").write_text("")  # a hand-made flag engages too
    assert switch.status().engaged


def test_an_unreadable_flag_file_is_unknown_never_released(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("not a directory")
    status = KillSwitch(home).status()
    assert status.state is SwitchState.UNKNOWN and not status.engaged and not status.released
    assert "unreadable" in status.unknown_reason


def test_redis_switch_is_seen_from_another_home_and_survives_redis_outage(tmp_path, redis_prefix):
    here = KillSwitch(tmp_path / "host-a", REDIS_URL, redis_prefix)
    there = KillSwitch(tmp_path / "host-b", REDIS_URL, redis_prefix)
    with KillSwitchWatcher(there, poll_s=0.05) as watcher:
        assert watcher.current().state is SwitchState.RELEASED
        here.engage("exchange incident", "ops@a")
        assert watcher.wait_for(SwitchState.ENGAGED, 10)
        status = there.status()
        assert status.engaged and status.source == "redis" and status.reason == "exchange incident"
        here.release("resolved", "ops@a")
        assert watcher.wait_for(SwitchState.RELEASED, 10)
        assert watcher.current().release["reason"] == "resolved"
    down = KillSwitch(tmp_path / "host-c", "redis://127.0.0.1:1/0", redis_prefix)
    status = down.engage("redis is down", "ops@c")
    assert status.engaged and status.source == "file" and status.written == ("file",)
    assert any(d.startswith("redis:") for d in status.degraded)


@pytest.fixture
def private_redis(tmp_path):
    """A private redis-server on a free port that the test stops, hangs and restarts."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_watcher_latches_engaged_through_outage_hang_and_empty_restart_until_a_release(tmp_path, private_redis):
    """Scenario 1 at the watcher level: ENGAGED from home A holds in home B while Redis is
    down, hung and back empty (the watcher then puts the lost engage back), until A releases."""
    prefix = "latch:"
    a = KillSwitch(tmp_path / "a", private_redis.url, prefix)
    b = KillSwitch(tmp_path / "b", private_redis.url, prefix)
    with KillSwitchWatcher(b, poll_s=0.05, max_backoff_s=0.2) as watcher:
        assert watcher.current().state is SwitchState.RELEASED
        a.engage("incident", "ops@a")
        assert watcher.wait_for(SwitchState.ENGAGED, 10)
        private_redis.stop()
        assert b.status().state is SwitchState.UNKNOWN  # a one-shot read cannot tell
        _wait(lambda: "Connection refused" in watcher.current().detail)  # the watcher's polls fail...
        polls = watcher.polls
        _wait(lambda: watcher.polls >= polls + 3)
        assert watcher.current().state is SwitchState.ENGAGED  # ...and it stays ENGAGED
        private_redis.start()                           # the same port, empty: the key is gone
        private_redis.hang()
        _wait(lambda: "Timeout" in watcher.current().detail)  # each poll times out after WATCH_TIMEOUT_S
        assert watcher.current().state is SwitchState.ENGAGED
        private_redis.resume()
        _wait(lambda: b.read_redis().state is SwitchState.ENGAGED)  # the watcher restored the lost engage
        assert watcher.current().state is SwitchState.ENGAGED
        assert json.loads(b.client().get(b.key))["reason"] == "incident"
        assert KillSwitch(tmp_path / "c", private_redis.url, prefix).status().engaged  # a new bot refuses
        a.release("all clear", "ops@a")
        assert watcher.wait_for(SwitchState.RELEASED, 10)


def test_a_bot_that_never_saw_an_engage_is_unknown_while_redis_is_down(tmp_path, private_redis):
    switch = KillSwitch(tmp_path / "b", private_redis.url, "unknown:")
    with KillSwitchWatcher(switch, poll_s=0.05, max_backoff_s=0.2) as watcher:
        assert watcher.current().state is SwitchState.RELEASED
        private_redis.stop()
        assert watcher.wait_for(SwitchState.UNKNOWN, 10)
        private_redis.start()
        assert watcher.wait_for(SwitchState.RELEASED, 10)  # nothing was engaged: readable again is enough


def _wait(condition, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (generous timeout; a set-up wait, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _start_bot(home: Path, extra_env: dict[str, str] | None = None, speed: str = "180000") -> subprocess.Popen:
    env = {**os.environ, "SIGMAX_HOME": str(home), **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "commands.app", "paper", "--data", str(FREQTRADE_1H), "--symbols",
         "BTC/USDT,ETH/USDT,SOL/USDT", "--timeframe", "1h", "--speed", speed, "--no-tui", "--json",
         "--run-id", "bot"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_run(home: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with sqlite3.connect(home / "ledger.db") as conn:
                if conn.execute("select count(*) from runs").fetchone()[0]:
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise AssertionError("the bot did not start")


@pytest.mark.parametrize("via", ["file", "redis"])
def test_a_running_bot_halts_within_a_tick_and_places_nothing_after(tmp_path, redis_prefix, via):
    """Process A replays at 20 ms a bar; process B (this test) engages the switch through the
    file in A's home, or through Redis from another home (another host). A must record the
    HALT, cancel its open orders and place no order after it."""
    home = tmp_path / "bot-home"
    env = {"SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_REDIS_PREFIX": redis_prefix} if via == "redis" else {}
    bot = _start_bot(home, env)
    try:
        _wait_for_run(home)
        time.sleep(1.0)
        if via == "file":
            KillSwitch(home).engage("two-process drill", "test@b")
        else:
            KillSwitch(tmp_path / "other-host", REDIS_URL, redis_prefix).engage("two-process drill", "test@b")
        time.sleep(1.0)
        bot.send_signal(signal.SIGINT)
        bot.communicate(timeout=30)
    finally:
        if bot.poll() is None:
            bot.kill()
    with sqlite3.connect(home / "ledger.db") as conn:
        halt = conn.execute("select ts_ms, message from events where kind='risk.kill_switch'").fetchall()
        assert len(halt) == 1 and "two-process drill" in halt[0][1] and "test@b" in halt[0][1]
        halted_at = halt[0][0]
        after = conn.execute("select count(*) from orders where created_ms > ?", (halted_at,)).fetchone()[0]
        assert after == 0
        active = conn.execute("select count(*) from orders where status in ('open','partially_filled','new')")
        assert active.fetchone()[0] == 0
        summary = json.loads(conn.execute("select summary_json from runs").fetchone()[0])
    assert summary["trading_state"] == "HALTED"


def test_a_bot_started_while_engaged_refuses_to_trade(cli, tmp_path):
    KillSwitch(tmp_path / "home").engage("maintenance", "ops@x")
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--json")
    assert result.exit_code == 1
    assert "the kill switch is engaged" in result.stderr and "maintenance" in result.stderr
    assert not (tmp_path / "home" / "ledger.db").exists()


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_a_bot_started_while_the_switch_is_unknown_refuses_to_trade(cli, tmp_path, private_redis, fault):
    private_redis.stop() if fault == "stopped" else private_redis.hang()
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--json",
                 env={"SIGMAX_REDIS_URL": private_redis.url})
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: the kill switch state is unknown (redis: ")
    assert result.stderr.count("\n") == 1 and "so no bot may start" in result.stderr
    assert not (tmp_path / "home" / "ledger.db").exists()


def test_scenario_1_two_homes_share_redis_zero_orders_after_engage_through_outage_until_release(
        tmp_path, private_redis):
    """Bot B (its own SIGMAX_HOME) trades on paper; ``panic`` runs from home A (another host)
    through the shared private Redis. B must place zero orders after the engage, while Redis
    is hung, stopped and back empty, and resume only after ``panic --release`` from A. Waits
    are on conditions read from B's ledger (bars keep coming: a Redis fault never stalls B)."""
    prefix = "scenario1:"
    env = {"SIGMAX_REDIS_URL": private_redis.url, "SIGMAX_REDIS_PREFIX": prefix}
    home_a, home_b = tmp_path / "host-a", tmp_path / "host-b"
    bot = _start_bot(home_b, env, speed="60000")
    ledger = home_b / "ledger.db"

    def count(sql: str, *args) -> int:
        try:
            with sqlite3.connect(ledger) as conn:
                return conn.execute(sql, args).fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    def bars() -> int:
        return count("select count(*) from equity")

    def more_bars(n: int = 30) -> None:
        target = bars() + n
        _wait(lambda: bars() >= target or bot.poll() is not None, 120)
        assert bot.poll() is None, "the bot ended before the scenario did"

    def panic_from_a(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "commands.app", "panic", *args, "--json"], cwd=REPO,
                              env={**os.environ, "SIGMAX_HOME": str(home_a), **env}, capture_output=True, text=True,
                              timeout=60)

    try:
        _wait_for_run(home_b)
        _wait(lambda: count("select count(*) from orders") > 0 or bot.poll() is not None, 120)  # B trades
        engaged = panic_from_a("--reason", "scenario 1")
        assert engaged.returncode == 0, engaged.stderr
        _wait(lambda: count("select count(*) from events where kind='risk.kill_switch'") == 1, 60)
        with sqlite3.connect(ledger) as conn:
            halted_at = conn.execute("select ts_ms from events where kind='risk.kill_switch'").fetchone()[0]
        more_bars()
        private_redis.hang()
        more_bars()
        private_redis.resume()
        private_redis.stop()
        more_bars()
        private_redis.start()  # empty: the engage is lost from Redis; B puts it back
        _wait(lambda: private_redis_get(private_redis, f"{prefix}killswitch") is not None, 60)
        more_bars()
        assert count("select count(*) from orders where created_ms > ?", halted_at) == 0
        assert count("select count(*) from events where kind like 'risk.resumed.kill_switch%'") == 0
        released = panic_from_a("--release", "--reason", "scenario 1 over")
        assert released.returncode == 0, released.stderr
        _wait(lambda: count("select count(*) from events where kind='risk.resumed.kill_switch'") == 1, 60)
        bot.send_signal(signal.SIGINT)
        bot.communicate(timeout=60)
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.communicate()
    with sqlite3.connect(ledger) as conn:
        resumed_at = conn.execute("select ts_ms from events where kind='risk.resumed.kill_switch'").fetchone()[0]
        between = conn.execute("select count(*) from orders where created_ms > ? and created_ms <= ?",
                               (halted_at, resumed_at)).fetchone()[0]
        unknown = conn.execute("select count(*) from events where kind='risk.kill_switch_unknown'").fetchone()[0]
        message = conn.execute("select message from events where kind='risk.resumed.kill_switch'").fetchone()[0]
    assert between == 0 and unknown == 0  # latched ENGAGED, never "unknown", never resumed before the release
    assert "scenario 1 over" in message


def test_a_running_bot_halts_while_redis_is_down_alerts_and_resumes_when_it_reads_released(tmp_path, private_redis):
    """A bot that never saw an engage: Redis stops, the state is UNKNOWN, the bot halts (no
    order while it cannot tell), alerts through a real webhook sink, and resumes once Redis
    answers RELEASED again (nothing was engaged, so readable again is release enough)."""
    from tests.support.alert_sinks import HttpSink

    with HttpSink() as sink:
        env = {"SIGMAX_REDIS_URL": private_redis.url, "SIGMAX_REDIS_PREFIX": "blind:",
               "SIGMAX_ALERT_WEBHOOK_URL": f"{sink.url}/hook"}
        home = tmp_path / "bot-home"
        bot = _start_bot(home, env, speed="60000")
        ledger = home / "ledger.db"

        def rows(sql: str) -> list[tuple]:
            try:
                with sqlite3.connect(ledger) as conn:
                    return conn.execute(sql).fetchall()
            except sqlite3.OperationalError:
                return []

        try:
            _wait_for_run(home)
            _wait(lambda: rows("select count(*) from equity")[0][0] > 20 or bot.poll() is not None, 120)
            private_redis.stop()
            _wait(lambda: rows("select ts_ms from events where kind='risk.kill_switch_unknown'") != [], 60)
            _wait(lambda: any("kill switch state unknown" in json.dumps(body) for _, body in sink.received), 60)
            bars = rows("select count(*) from equity")[0][0]
            _wait(lambda: rows("select count(*) from equity")[0][0] > bars + 30, 120)  # the loop never stalls
            private_redis.start()
            _wait(lambda: rows("select ts_ms from events where kind='risk.resumed.kill_switch_unknown'") != [], 60)
            bot.send_signal(signal.SIGINT)
            bot.communicate(timeout=60)
        finally:
            if bot.poll() is None:
                bot.kill()
                bot.communicate()
    (halted,), = rows("select ts_ms from events where kind='risk.kill_switch_unknown'")
    (resumed,), = rows("select ts_ms from events where kind='risk.resumed.kill_switch_unknown'")
    (during,), = rows(f"select count(*) from orders where created_ms > {halted} and created_ms <= {resumed}")
    assert halted < resumed and during == 0
    assert rows("select count(*) from events where kind='risk.kill_switch'") == [(0,)]  # unknown, not engaged


def test_paper_halted_by_the_kill_switch_ends_halted_with_exit_3(cli, tmp_path, monkeypatch):
    """The engage is put into the replay feed at its 40th step (so it lands at a known bar,
    without racing a background process); everything else is the real CLI and engine."""
    from sigmax_cli.feeds import ReplayFeed

    steps = ReplayFeed.steps

    def engaging_steps(self, stop):
        for n, step in enumerate(steps(self, stop)):
            if n == 40:
                KillSwitch(tmp_path / "home").engage("halt drill", "ops@test")
            yield step

    monkeypatch.setattr(ReplayFeed, "steps", engaging_steps)
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--max-bars", "200", "--json")
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "halted" and summary["trading_state"] == "HALTED" and summary["bars"] == 200
    assert result.stderr.startswith(f"error: run {summary['run_id']} ended HALTED by the kill switch after 200 bars")
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        assert conn.execute("select status from runs").fetchone()[0] == "halted"


def test_panic_cli_engage_status_release_and_bad_options(cli, tmp_path):
    result = cli("panic", "--reason", "drill", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcome"] == "ok" and report["killswitch"]["engaged"]
    assert any("no exchange keys" in n for n in report["notes"])
    md = Path(report["files"][1]).read_text()
    assert "# Incident" in md and "drill" in md
    again = json.loads(cli("panic", "--reason", "second", "--json").stdout)
    assert again["already_engaged"] and again["killswitch"]["reason"] == "drill"
    status = json.loads(cli("panic", "--status", "--json").stdout)
    assert status["engaged"] and status["reason"] == "drill"
    bad = cli("panic", "--release")
    assert bad.exit_code == 2 and "needs a reason" in bad.stderr
    assert cli("panic", "--status", "--release", "--reason", "x").exit_code == 2
    released = json.loads(cli("panic", "--release", "--reason", "drill over", "--json").stdout)
    assert not released["engaged"]
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        kinds = [k for (k,) in conn.execute("select kind from events order by id")]
    assert kinds == ["killswitch.engaged", "killswitch.engaged", "killswitch.released"]


def test_panic_with_ledger_and_redis_down_engages_this_host_only_and_says_so(cli, tmp_path):
    env = {"SIGMAX_DATABASE_URL": "postgresql://sigmax@127.0.0.1:1/ledger", "SIGMAX_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = cli("panic", "--reason", "everything is down", "--json", env=env)
    assert result.exit_code == 4, result.output  # this host only: other hosts were not told
    report = json.loads(result.stdout)
    assert report["reach"] == "this host only" and report["outcome"] == "degraded" and report["killswitch"]["engaged"]
    assert any(d.startswith("ledger:") for d in report["degraded"])
    assert any(d.startswith("redis:") for d in report["degraded"])
    assert "engaged on this host only" in result.stderr and result.stderr.count("\n") == 1
    assert (tmp_path / "home" / "KILLSWITCH").exists()
    status = cli("panic", "--status", env=env)  # the file says engaged: known, whatever Redis says
    assert status.exit_code == 1 and "ENGAGED" in status.stdout


def test_panic_exit_codes_and_status_for_each_reach(cli, tmp_path, private_redis):
    env = {"SIGMAX_REDIS_URL": private_redis.url, "SIGMAX_REDIS_PREFIX": "reach:"}
    released = cli("panic", "--status", env=env)
    assert released.exit_code == 0 and "bots may trade" in released.stdout
    everywhere = cli("panic", "--reason", "drill", "--json", env=env)
    assert everywhere.exit_code == 0, everywhere.output
    assert json.loads(everywhere.stdout)["reach"] == "everywhere"
    assert cli("panic", "--status", env=env).exit_code == 1
    private_redis.stop()
    unknown_home = {**env, "SIGMAX_HOME": str(tmp_path / "other-host")}
    unknown = cli("panic", "--status", "--json", env=unknown_home)
    assert unknown.exit_code == 3 and json.loads(unknown.stdout)["state"] == "UNKNOWN"
    text = cli("panic", "--status", env=unknown_home)
    assert "bots may trade" not in text.stdout and "UNKNOWN" in text.stdout and "Connection refused" in text.stdout
    half = cli("panic", "--release", "--reason", "redis is down", "--json", env=env)
    assert half.exit_code == 4 and json.loads(half.stdout)["reach"] == "this host only"
    assert "bots on other hosts stay halted" in half.stderr
    private_redis.start()  # empty: the release from this host alone never reached it
    full = cli("panic", "--release", "--reason", "redis is back", "--json", env=env)
    assert full.exit_code == 0 and json.loads(full.stdout)["reach"] == "everywhere"
    assert cli("panic", "--status", env=unknown_home).exit_code == 0


def private_redis_get(server: RedisServer, key: str) -> bytes | None:
    import redis

    return redis.Redis.from_url(server.url).get(key)


def test_panic_with_hung_redis_writes_the_local_flag_before_any_network_call(cli, tmp_path, private_redis):
    private_redis.hang()
    env = {"SIGMAX_REDIS_URL": private_redis.url, "SIGMAX_REDIS_PREFIX": "hung:"}
    result = cli("panic", "--reason", "redis hangs", "--json", env=env)
    assert result.exit_code == 4, result.output
    report = json.loads(result.stdout)
    steps = [t["step"] for t in report["timeline"]]
    assert steps[0].startswith("kill switch file written") and steps[1].startswith("redis: NOT told")
    assert "Timeout" in steps[1]
    assert report["file_written_ms"] is not None and report["file_written_ms"] <= report["timeline"][1]["ts_ms"]
    assert json.loads((tmp_path / "home" / "KILLSWITCH").read_text())["reason"] == "redis hangs"


def test_a_mistyped_redis_url_is_a_config_error_and_still_engages_locally(cli, tmp_path):
    result = cli("panic", "--reason", "typo drill", env={"SIGMAX_REDIS_URL": "redis//127.0.0.1:6379/0"})
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "SIGMAX_REDIS_URL must start with redis://" in result.stderr
    assert "IS engaged (this host only), but Redis and the exchange were not touched" in result.stderr
    assert (tmp_path / "home" / "KILLSWITCH").exists()
    for url in ("redis//host", "http://127.0.0.1:6379", "redis://127.0.0.1:port/0"):
        bad = cli("panic", "--status", env={"SIGMAX_REDIS_URL": url})
        assert bad.exit_code == 2 and "SIGMAX_REDIS_URL" in bad.stderr, url


FULL_DISK = r"""
set -e
mount -t tmpfs -o size=64k tmpfs "$SIGMAX_HOME"
dd if=/dev/zero of="$SIGMAX_HOME/filler" bs=4k count=100 2>/dev/null || true
exec "$PYTHON" -m commands.app panic --reason "disk is full" --json
"""


def _panic_on_a_full_disk(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``sigmax panic`` with SIGMAX_HOME on a full 64 KiB tmpfs, mounted in a private mount
    namespace (``unshare``) so that nothing outside this process sees it and it vanishes
    with it. This is a real ENOSPC from the kernel, as on a full disk (RLIMIT_FSIZE would give
    EFBIG and a signal instead)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.decode().strip()}")
    home = tmp_path / "full-home"
    home.mkdir()
    full_env = {**os.environ, "SIGMAX_HOME": str(home), "PYTHON": sys.executable,
                "PYTHONPATH": str(REPO), **env}
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", FULL_DISK], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=120)


def test_panic_on_a_full_disk_still_tells_redis_and_says_exactly_what_happened(tmp_path, private_redis):
    done = _panic_on_a_full_disk(tmp_path, {"SIGMAX_REDIS_URL": private_redis.url, "SIGMAX_REDIS_PREFIX": "full:"})
    assert done.returncode == 4, done.stderr  # Redis only
    report = json.loads(done.stdout)
    assert report["reach"] == "redis only" and report["killswitch"]["written"] == ["redis"]
    assert "file: No space left on device" in report["killswitch"]["degraded"]
    assert any("kill switch file NOT written" in t["step"] and "No space left on device" in t["step"]
               for t in report["timeline"])
    assert any(d.startswith("incident report not written") for d in report["degraded"])
    assert "engaged in Redis only: the local file could not be written" in done.stderr
    assert json.loads(private_redis_get(private_redis, "full:killswitch"))["reason"] == "disk is full"


def test_panic_on_a_full_disk_with_redis_down_says_nothing_is_engaged(tmp_path, private_redis):
    private_redis.stop()
    done = _panic_on_a_full_disk(tmp_path, {"SIGMAX_REDIS_URL": private_redis.url})
    assert done.returncode == 5, done.stderr
    report = json.loads(done.stdout)
    assert report["reach"] == "nothing" and report["outcome"] == "failed"
    assert report["killswitch"]["written"] == [] and report["killswitch"]["state"] == "UNKNOWN"
    assert "the kill switch is NOT engaged anywhere" in done.stderr and "No space left on device" in done.stderr


SYMBOLS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT"), "ADAUSDT": ("ADA", "USDT"),
           "LTCUSDT": ("LTC", "USDT"), "XRPUSDT": ("XRP", "USDT")}
PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 4_000.0, "ADAUSDT": 2.0, "LTCUSDT": 200.0, "XRPUSDT": 1.0}


@pytest.fixture
def exchange_with_50_orders(data_dir):
    from sigmax_cli.exchange.client import create_exchange

    account = SpotAccount(balances={"USDT": [1_000_000.0, 0.0], "BTC": [1.0, 0.0], "ETH": [10.0, 0.0]},
                          prices=dict(PRICES))
    with BinanceEmulator(data_dir) as emu:
        install(emu, account, SYMBOLS)
        exchange = create_exchange("binance", api_url=emu.url, sandbox=True, api_key="test-key-0001",
                                   api_secret="test-secret-0001")
        exchange.load_markets()
        for market_id, (base, quote) in SYMBOLS.items():
            symbol = f"{base}/{quote}"
            for k in range(10):
                price = PRICES[market_id] * (0.8 - 0.01 * k)
                amount = round(max(20.0 / price, 1.0 if base in ("XRP", "ADA") else 0.001), 3)
                exchange.create_order(symbol, "limit", "buy", amount, price)
        assert len(account.open_orders()) == 50
        yield emu, account


def _settings(emu, tmp_path, **extra):
    from sigmax_cli.settings import load_settings

    return load_settings(home=tmp_path / "home", overrides={
        "exchange_api_url": emu.url, "api_key": "test-key-0001", "api_secret": "test-secret-0001",
        "env": "testnet", "symbols": [f"{b}/{q}" for b, q in SYMBOLS.values()], **extra})


def test_panic_cancels_50_orders_over_5_symbols_despite_faults_and_verifies_zero(exchange_with_50_orders, tmp_path):
    from sigmax_cli.risk.panic import panic

    emu, account = exchange_with_50_orders
    # the first cancel-all attempts answer 503 and an HTML page, the next times out (dropped)
    emu.inject("/api/v3/openOrders", Fault(status=503), Fault(status=502, html=True), Fault(drop=True), after=1)
    report = panic(_settings(emu, tmp_path), "exchange drill", sleep=lambda s: None)
    assert report.outcome == "ok", report.to_dict()
    assert account.open_orders() == []  # verified on the emulator itself
    assert len(report.cancelled) == 50 and set(report.remaining_open_orders.values()) == {0}
    assert report.round_trips >= 5 * 2  # at least a cancel and a verification per symbol
    assert report.balances_before["USDT"] == pytest.approx(report.balances_after["USDT"])
    assert any(entry.status >= 500 for entry in emu.log if entry.path == "/api/v3/openOrders")
    text = Path(report.files[0]).read_text()
    assert "test-secret-0001" not in text and "test-key-0001" not in text


def test_panic_flatten_sells_spot_balances(exchange_with_50_orders, tmp_path):
    from sigmax_cli.risk.panic import panic

    emu, account = exchange_with_50_orders
    report = panic(_settings(emu, tmp_path), "flatten drill", flatten=True, sleep=lambda s: None)
    assert report.outcome == "ok", report.to_dict()
    sold = {f["symbol"]: f["amount"] for f in report.flattened}
    assert sold["BTC/USDT"] == pytest.approx(1.0) and sold["ETH/USDT"] == pytest.approx(10.0)
    assert account.balances["BTC"][0] == pytest.approx(0.0) and account.balances["ETH"][0] == pytest.approx(0.0)


def test_panic_with_an_unreachable_exchange_reports_failure_but_keeps_the_switch(cli, tmp_path):
    env = {"SIGMAX_EXCHANGE_API_URL": "http://127.0.0.1:9", "SIGMAX_API_KEY": "k-123456",
           "SIGMAX_API_SECRET": "s-123456", "SIGMAX_ENV": "testnet"}
    result = cli("panic", "--reason", "exchange down", "--json", env=env)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["outcome"] == "failed" and report["killswitch"]["engaged"]
    assert "could not be verified" in result.stderr
    assert (tmp_path / "home" / "KILLSWITCH").exists()


def test_dashboard_and_monitor_show_an_unknown_switch_with_its_reason(cli, tmp_path, private_redis):
    from rich.console import Console

    from sigmax_cli.snapshot import EngineSnapshot, RiskRow
    from sigmax_cli.ui.panels import risk_panel

    risk = RiskRow(10_000.0, 10_000.0, 0.0, 0.0, 200.0, "HALTED", "kill switch state unknown", "UNKNOWN",
                   "redis: Timeout reading from socket")
    snapshot = EngineSnapshot(mode="paper", profile="conservative", run_id="paper-x", strategy="rules",
                              bar_ms=1_614_556_800_000, bars_done=3, bars_total=None, speed=0.0, bars_per_second=0.0,
                              risk=risk)
    console = Console(record=True, width=120)
    console.print(risk_panel(snapshot))
    assert "Kill switch  UNKNOWN (redis: Timeout reading from socket)" in console.export_text()

    from sigmax_cli.ledger import Ledger

    with Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"):
        pass  # monitor reads an existing ledger only
    private_redis.stop()
    result = cli("monitor", "--json", env={"SIGMAX_REDIS_URL": private_redis.url})
    assert result.exit_code == 0, result.output
    switch = json.loads(result.stdout)["killswitch"]
    assert switch["state"] == "UNKNOWN" and "Connection refused" in switch["stores"]["redis"]["error"]
    text = cli("monitor", "--once", env={"SIGMAX_REDIS_URL": private_redis.url}).stdout
    assert "kill switch: UNKNOWN (redis: " in text and "bots halt and none may start" in text
