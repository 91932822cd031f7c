"""`sigmax monitor`: every bot of the ledger, read-only, with a live bot in another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sigmax_cli.ledger import Ledger
from tests.conftest import FREQTRADE_1H

REPO = Path(__file__).resolve().parent.parent


def test_monitor_sees_a_running_bot_then_its_halt_then_its_stop(cli, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "SIGMAX_HOME": str(home)}
    bot = subprocess.Popen(
        [sys.executable, "-m", "commands.app", "paper", "--data", str(FREQTRADE_1H), "--symbols", "BTC/USDT",
         "--timeframe", "1h", "--speed", "36000", "--no-tui", "--run-id", "watched"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        bots = []
        while time.time() < deadline:
            result = cli("monitor", "--json")
            if result.exit_code == 0:
                bots = json.loads(result.stdout)["bots"]
                if bots and bots[0]["status"] == "running":
                    break
            time.sleep(0.2)
        (row,) = bots
        assert row["run_id"] == "watched" and row["status"] == "running" and row["trading_state"] == "ACTIVE"
        assert row["heartbeat_age_s"] < 30 and row["equity"] > 0
        assert cli("panic", "--reason", "monitor drill").exit_code == 0
        deadline = time.time() + 15
        events = []
        while time.time() < deadline:
            (row,) = json.loads(cli("monitor", "--json").stdout)["bots"]
            events = [e["kind"] for e in row["events"]]
            if "risk.kill_switch" in events:
                break
            time.sleep(0.2)
        assert "risk.kill_switch" in events  # the halt is visible at once (critical events are flushed)
        bot.send_signal(signal.SIGINT)
        bot.communicate(timeout=30)
    finally:
        if bot.poll() is None:
            bot.kill()
    (row,) = json.loads(cli("monitor", "--json").stdout)["bots"]
    assert row["status"] == "stopped" and row["trading_state"] == "HALTED"


def test_a_silent_running_bot_is_shown_stale(cli, ledger_url):
    with Ledger(ledger_url) as ledger:
        ledger.heartbeat("ghost", None, "testnet", "running", {"equity": 100.0, "initial_equity": 100.0})
    time.sleep(1.2)
    doc = json.loads(cli("monitor", "--json", "--stale-after", "1", env={"SIGMAX_DATABASE_URL": ledger_url}).stdout)
    assert doc["stale"] == 1 and doc["bots"][0]["status"] == "stale" and doc["bots"][0]["pnl"] == 0.0
    table = cli("monitor", "--once", "--stale-after", "1", env={"SIGMAX_DATABASE_URL": ledger_url})
    assert table.exit_code == 0 and "ghost" in table.stdout and "stale" in table.stdout


def test_monitor_without_a_ledger_is_one_sentence(cli, tmp_path):
    result = cli("monitor", "--once")
    assert result.exit_code == 66 and "there is no ledger" in result.stderr
    assert not (tmp_path / "home").exists()


def _backdate(ledger_url: str, bot_id: str, hours: float) -> None:
    """Make ``bot_id``'s newest heartbeat ``hours`` old (the test writes the past directly)."""
    from sqlalchemy import update

    from sigmax_cli.ledger import schema

    with Ledger(ledger_url) as ledger, ledger.engine.begin() as conn:
        conn.execute(update(schema.heartbeats).where(schema.heartbeats.c.bot_id == bot_id)
                     .values(ts_ms=int(time.time() * 1000 - hours * 3_600_000)))


def test_monitor_lists_live_and_recent_bots_and_all_with_all(cli, ledger_url):
    with Ledger(ledger_url) as ledger:
        ledger.heartbeat("day", None, "paper", "stopped")
        ledger.heartbeat("week", None, "paper", "stopped")
        ledger.heartbeat("mute", None, "testnet", "running")
        ledger.heartbeat("now", None, "paper", "stopped")
    _backdate(ledger_url, "day", 23)
    _backdate(ledger_url, "week", 24 * 7)
    _backdate(ledger_url, "mute", 48)
    env = {"SIGMAX_DATABASE_URL": ledger_url}
    doc = json.loads(cli("monitor", "--json", env=env).stdout)
    assert [b["bot_id"] for b in doc["bots"]] == ["mute", "now", "day"]
    assert doc["hidden"] == 1 and doc["stale"] == 1  # a running bot is shown however old its heartbeat
    table = cli("monitor", "--once", env=env)
    assert table.exit_code == 0 and "week" not in table.stdout
    assert "1 bot stopped more than 24 h ago not shown (monitor --all lists them)" in table.stdout
    every = json.loads(cli("monitor", "--json", "--all", env=env).stdout)
    assert len(every["bots"]) == 4 and every["hidden"] == 0
    assert "week" in cli("monitor", "--once", "--all", env=env).stdout


def test_monitor_says_when_every_bot_is_older_than_a_day(cli, ledger_url):
    with Ledger(ledger_url) as ledger:
        ledger.heartbeat("long-gone", None, "paper", "stopped")
    _backdate(ledger_url, "long-gone", 25)
    table = cli("monitor", "--once", env={"SIGMAX_DATABASE_URL": ledger_url})
    assert table.exit_code == 0 and "no bot has run in the last 24 h" in table.stdout
    assert "long-gone" not in table.stdout
