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
