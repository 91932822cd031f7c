"""`sigmax run` end to end: the real CLI, real ccxt over HTTP to the Binance emulator on
127.0.0.1 (keys, signatures and timestamps checked as Binance does), real BTC/USDT 5m candles
replayed on a market clock running 3000x (a 5m bar every 0.1 s), the rule strategy tuned in
a profile to trade often. Bad input: one sentence, non-zero exit, nothing written, no order."""

from __future__ import annotations

import json
import os
import socket
import sqlite3

import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.risk.killswitch import KillSwitch
from tests.conftest import DATA
from tests.support.binance_orders import TEST_KEY, TEST_SECRET, AcceleratedClock, connect, spot_exchange

ORDER = "/api/v3/order"
FAST_PROFILE = """
# a profile that makes the rule strategy trade within a few 5m bars of real BTC/USDT data
symbols = ["BTC/USDT"]   # ccxt unified symbols
timeframe = "5m"         # bar length
[strategy]
trend_ema = 2            # bars
rsi_period = 3           # bars
rsi_entry = 80.0         # RSI points
rsi_exit = 50.0          # RSI points
macd_fast = 2            # bars
macd_slow = 3            # bars
macd_signal = 2          # bars
stop_loss_pct = 0.05     # percent
take_profit_pct = 0.05   # percent
position_fraction = 0.2  # fraction of equity per symbol
[risk]
cooldown_minutes = 0     # minutes
max_consecutive_losses = 1000  # round trips
stale_data_bars = 1000   # bars: a loaded test machine may lag the 3000x clock by a few bars
{risk}
[live]
poll_seconds = 0.01            # seconds
clock_sync_seconds = 0         # seconds: the market clock runs fast, read it every time
rate_limit_ms = 1              # milliseconds
signal_max_age_seconds = 6000  # seconds (20 bars of the fast clock)
timeout_seconds = 2.0          # seconds
stale_after_bars = 50.0        # bars
"""


@pytest.fixture(scope="module")
def btc():
    full = load_candles(DATA / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07" / "BTC_USDT-5m.json")
    return full.slice(None, int(full.ts[4000]))


@pytest.fixture
def world(data_dir, btc, tmp_path):
    clock = AcceleratedClock(int(btc.ts[3000]) + 1000, 3000)
    emu, account = spot_exchange(data_dir, [btc], clock=clock.now_ms)
    yield emu, account, clock
    emu.stop()


def keys_file(folder, key=TEST_KEY, secret=TEST_SECRET, mode=0o600, name=".env.testnet"):
    path = folder / name
    path.write_text(f"SIGMAX_API_KEY={key}\nSIGMAX_API_SECRET={secret}\n")
    os.chmod(path, mode)
    return path


def profile(folder, risk=""):
    path = folder / "fast.toml"
    path.write_text(FAST_PROFILE.format(risk=risk))
    return path


def one_sentence(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    return result.stderr


def nothing_happened(tmp_path, emu):
    assert not (tmp_path / "home" / "ledger.db").exists()
    assert not [r for r in emu.log if r.path == ORDER]


def test_run_places_fills_and_cancels_on_the_testnet(cli, world, tmp_path):
    emu, account, clock = world
    keys_file(tmp_path)
    exchange = connect(emu)
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 9_000.0, {"clientOrderId": "manual-order-1"})
    clock.rearm()
    result = cli("--profile", profile(tmp_path), "run", "--max-ticks", "32", "--json",
                 env={"SIGMAX_EXCHANGE_API_URL": emu.url})
    assert result.exit_code == 0, result.output
    assert "testnet on binance" in result.stderr and "API key …0000" in result.stderr
    assert TEST_KEY not in result.output and TEST_SECRET not in result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["ticks"] == 32 and summary["mode"] == "testnet"
    assert summary["orders"] >= 2 and summary["fills"] >= 2
    assert summary["reconciliation"]["start"]["cancelled"] == ["manual-order-1"]
    statuses = {o["clientOrderId"]: o["status"] for o in account.orders.values()}
    assert statuses.pop("manual-order-1") == "CANCELED"
    assert statuses and set(statuses.values()) == {"FILLED"} and all(c.startswith("sx-") for c in statuses)
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        rows = dict(conn.execute("select client_order_id, status from orders").fetchall())
        trades = sorted(t for (t,) in conn.execute("select trade_id from fills"))
        beats = conn.execute("select status, mode from heartbeats").fetchall()
    assert rows == {cid: "filled" for cid in statuses}
    assert trades == sorted(str(t["id"]) for t in account.trades if t["orderId"] != 0)
    assert beats == [("stopped", "testnet")]
    assert summary["last_bar_ms"] + 300_000 <= clock.now_ms()  # only closed bars were traded


def test_keys_file_readable_by_others_is_used_with_a_warning(cli, world, tmp_path):
    emu, account, clock = world
    keys_file(tmp_path, mode=0o644)
    result = cli("--profile", profile(tmp_path), "run", "--max-ticks", "2", "--json",
                 env={"SIGMAX_EXCHANGE_API_URL": emu.url})
    assert result.exit_code == 0, result.output
    assert "readable by group or others (mode 0644); chmod 600" in result.stderr


def test_live_needs_confirmation_and_a_capital_cap_and_names_the_account(cli, world, tmp_path):
    emu, account, clock = world
    keys_file(tmp_path, name=".env.live")
    env = {"SIGMAX_EXCHANGE_API_URL": emu.url}
    text = one_sentence(cli("--profile", profile(tmp_path), "run", "--env", "live", env=env), 2,
                        "--env live trades real money on binance with API key …0000", "--confirm-live")
    assert "--env testnet" in text
    nothing_happened(tmp_path, emu)
    one_sentence(cli("--profile", profile(tmp_path), "run", "--env", "live", "--confirm-live", env=env), 2,
                 "risk.max_capital is not set")
    nothing_happened(tmp_path, emu)
    capped = profile(tmp_path, risk="max_capital = 500.0  # USDT: the most the bot may use")
    result = cli("--profile", capped, "run", "--env", "live", "--confirm-live", "--max-ticks", "2", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert "LIVE (real money) on binance" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["mode"] == "live" and summary["initial_equity"] == 500.0  # capped, from 10,000 USDT
    assert not [r for r in emu.log if "sandbox" in r.path]


@pytest.mark.parametrize(("setup", "code", "fragments"), [
    ("no keys", 2, ["no SIGMAX_API_KEY and SIGMAX_API_SECRET for binance testnet", ".env.testnet"]),
    ("unknown key", 77, ["refused the API key …AAAA", "Invalid API-key, IP, or permissions for action"]),
    ("malformed key", 77, ["API-key format invalid"]),
    ("wrong secret", 77, ["Signature for this request is not valid"]),
    ("unknown exchange", 2, ["unknown exchange 'binanse'"]),
    ("okx without passphrase", 2, ["no SIGMAX_API_PASSWORD for okx testnet"]),
    ("unlisted symbol", 2, ["has no market DOGE/BTC"]),
    ("clock skew", 2, ["refused the request's timestamp (Timestamp for this request is outside of the recvWindow.)",
                       "clock is off from the exchange's", "NTP"]),
    ("bad env", 2, ["--env 'prod' is not an environment"]),
    ("zero ticks", 2, ["--max-ticks must be positive"]),
    ("kill switch", 1, ["the kill switch is engaged"]),
    ("unreachable", 69, ["cannot reach binance testnet at http://127.0.0.1:9"]),
    ("port in use", 2, ["cannot serve metrics on 127.0.0.1:"]),
])
def test_bad_input_is_one_sentence_and_no_order(cli, world, tmp_path, setup, code, fragments):
    emu, account, clock = world
    args = ["--profile", str(profile(tmp_path)), "run", "--max-ticks", "3", "--json"]
    env = {"SIGMAX_EXCHANGE_API_URL": emu.url}
    blocker = None
    if setup != "no keys":
        key, secret = {"unknown key": ("A" * 64, TEST_SECRET), "malformed key": ("short-key", TEST_SECRET),
                       "wrong secret": (TEST_KEY, "not-the-secret")}.get(setup, (TEST_KEY, TEST_SECRET))
        keys_file(tmp_path, key, secret)
    if setup == "unknown exchange":
        env["SIGMAX_EXCHANGE"] = "binanse"
    elif setup == "okx without passphrase":
        env["SIGMAX_EXCHANGE"] = "okx"
    elif setup == "unlisted symbol":
        args += ["--symbols", "DOGE/BTC"]
    elif setup == "clock skew":
        account.skew_ms = 30_000  # the exchange's clock is 30 s ahead of this machine's
    elif setup == "bad env":
        args += ["--env", "prod"]
    elif setup == "zero ticks":
        args[4] = "0"
    elif setup == "kill switch":
        KillSwitch(tmp_path / "home").engage("maintenance", "ops@x")
    elif setup == "unreachable":
        env["SIGMAX_EXCHANGE_API_URL"] = "http://127.0.0.1:9"
    elif setup == "port in use":
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        args += ["--metrics-port", str(blocker.getsockname()[1])]
    try:
        result = cli(*args, env=env)
    finally:
        if blocker is not None:
            blocker.close()
    text = one_sentence(result, code, *fragments)
    assert TEST_SECRET not in text and TEST_KEY not in text
    if setup == "kill switch":
        assert not (tmp_path / "home" / "ledger.db").exists()
    else:
        nothing_happened(tmp_path, emu)


def test_run_halted_by_the_kill_switch_ticks_on_and_ends_halted_with_exit_3(cli, world, tmp_path):
    """The emulator engages the kill switch while it answers the 12th klines request (so the
    engage lands at a known tick, in the bot's own request/answer order, without racing it);
    the bot halts, ticks on to --max-ticks, and must end ``halted`` with exit 3."""
    emu, account, clock = world
    keys_file(tmp_path)
    served = {"n": 0}

    def klines(req):
        served["n"] += 1
        if served["n"] == 12:
            KillSwitch(tmp_path / "home").engage("halt drill", "ops@test")
        return emu._klines(req)

    emu.route("GET", "/api/v3/klines", klines)
    clock.rearm()
    result = cli("--profile", profile(tmp_path), "run", "--max-ticks", "24", "--json",
                 env={"SIGMAX_EXCHANGE_API_URL": emu.url})
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "halted" and summary["ticks"] == 24 and summary["trading_state"] == "HALTED"
    assert result.stderr.splitlines()[-1].startswith(f"error: run {summary['run_id']} ended HALTED by the kill switch")
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        assert conn.execute("select status from runs").fetchone()[0] == "halted"
