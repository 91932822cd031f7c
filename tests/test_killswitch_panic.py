"""Kill switch (file and Redis, across processes), bots obeying it, and `sigmax panic`
against the Binance emulator with 50 open orders over 5 symbols and faults."""

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

from sigmax_cli.errors import ConfigError
from sigmax_cli.risk.killswitch import KillSwitch, KillSwitchWatcher
from tests.conftest import FREQTRADE_1H, REDIS_URL
from tests.support.binance_emulator import BinanceEmulator, Fault
from tests.support.binance_orders import SpotAccount, install

REPO = Path(__file__).resolve().parent.parent


def test_file_switch_engage_status_release(tmp_path):
    switch = KillSwitch(tmp_path)
    assert not switch.status().engaged and not switch.engaged()
    first = switch.engage("drill", "ops@host")
    assert first.engaged and first.source == "file" and first.by == "ops@host"
    again = switch.engage("second reason", "someone@else")  # idempotent: the original stays
    assert again.reason == "drill" and again.since_ms == first.since_ms
    with pytest.raises(ConfigError, match="needs a reason"):
        switch.release("  ")
    assert switch.engaged()
    assert not switch.release("checked positions", "ops@host").engaged
    (tmp_path / "KILLSWITCH").write_text("")  # a hand-made flag engages too
    assert switch.status().engaged


def test_redis_switch_is_seen_from_another_home_and_survives_redis_outage(tmp_path, redis_prefix):
    here = KillSwitch(tmp_path / "host-a", REDIS_URL, redis_prefix)
    there = KillSwitch(tmp_path / "host-b", REDIS_URL, redis_prefix)
    with KillSwitchWatcher(there) as watcher:
        here.engage("exchange incident", "ops@a")
        deadline = time.time() + 5
        while not watcher.engaged() and time.time() < deadline:
            time.sleep(0.02)
        assert watcher.engaged()
        status = there.status()
        assert status.engaged and status.source == "redis" and status.reason == "exchange incident"
        here.release("resolved", "ops@a")
        deadline = time.time() + 5
        while watcher.engaged() and time.time() < deadline:
            time.sleep(0.02)
        assert not watcher.engaged()
    down = KillSwitch(tmp_path / "host-c", "redis://127.0.0.1:1/0", redis_prefix)
    status = down.engage("redis is down", "ops@c")
    assert status.engaged and status.source == "file"
    assert any(d.startswith("redis:") for d in status.degraded)


def _start_bot(home: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "SIGMAX_HOME": str(home), **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "commands.app", "paper", "--data", str(FREQTRADE_1H), "--symbols",
         "BTC/USDT,ETH/USDT,SOL/USDT", "--timeframe", "1h", "--speed", "180000", "--no-tui", "--json",
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


def test_panic_with_ledger_and_redis_down_still_engages_and_says_so(cli, tmp_path):
    env = {"SIGMAX_DATABASE_URL": "postgresql://sigmax@127.0.0.1:1/ledger", "SIGMAX_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = cli("panic", "--reason", "everything is down", "--json", env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcome"] == "degraded" and report["killswitch"]["engaged"]
    assert any(d.startswith("ledger:") for d in report["degraded"])
    assert any(d.startswith("redis:") for d in report["degraded"])
    assert (tmp_path / "home" / "KILLSWITCH").exists()


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
