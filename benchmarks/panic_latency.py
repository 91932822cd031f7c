"""Panic latency: `panic` to verified zero open orders, and until a running bot is HALTED.

1. A Binance emulator on 127.0.0.1 (tests/support) holds 50 open orders over 5 symbols;
   `sigmax_cli.risk.panic.panic` engages the kill switch, cancels and verifies. Printed:
   wall time, exchange round trips, and the ratio to one plain `fetch_open_orders` round
   trip measured in the same run (the baseline).
2. A paper bot runs in another process (1h bars at 360,000x: a 10 ms tick); the kill switch
   is engaged through the file; printed: time until the bot's HALT is visible in the ledger.

    python benchmarks/panic_latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data"))

SYMBOLS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT"), "ADAUSDT": ("ADA", "USDT"),
           "LTCUSDT": ("LTC", "USDT"), "XRPUSDT": ("XRP", "USDT")}
PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 4_000.0, "ADAUSDT": 2.0, "LTCUSDT": 200.0, "XRPUSDT": 1.0}


def exchange_panic(home: Path) -> tuple[float, int, float, int]:
    from sigmax_cli.exchange.client import create_exchange
    from sigmax_cli.risk.panic import panic
    from sigmax_cli.settings import load_settings
    from tests.support.binance_emulator import BinanceEmulator
    from tests.support.binance_orders import SpotAccount, install

    account = SpotAccount(balances={"USDT": [1e7, 0.0]}, prices=dict(PRICES))
    with BinanceEmulator(DATA) as emu:
        install(emu, account, SYMBOLS)
        ex = create_exchange("binance", api_url=emu.url, sandbox=True, api_key="bench-key", api_secret="bench-secret")
        ex.load_markets()
        for market_id, (base, quote) in SYMBOLS.items():
            for k in range(10):
                price = PRICES[market_id] * (0.8 - 0.01 * k)
                ex.create_order(f"{base}/{quote}", "limit", "buy", round(max(20 / price, 1.0), 3), price)
        t0 = time.perf_counter()
        ex.fetch_open_orders("BTC/USDT")
        baseline = time.perf_counter() - t0
        settings = load_settings(home=home, overrides={
            "exchange_api_url": emu.url, "api_key": "bench-key", "api_secret": "bench-secret", "env": "testnet",
            "symbols": [f"{b}/{q}" for b, q in SYMBOLS.values()]})
        t0 = time.perf_counter()
        report = panic(settings, "benchmark")
        elapsed = time.perf_counter() - t0
        assert report.outcome == "ok" and not account.open_orders(), report.to_dict()
        return elapsed, report.round_trips, baseline, len(report.cancelled)


def bot_halt(home: Path) -> float:
    from sigmax_cli.risk.killswitch import KillSwitch

    env = {**os.environ, "SIGMAX_HOME": str(home)}
    data = DATA / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07"
    bot = subprocess.Popen([sys.executable, "-m", "commands.app", "paper", "--data", str(data), "--symbols",
                            "BTC/USDT", "--timeframe", "1h", "--speed", "360000", "--no-tui", "--json"],
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        db = home / "ledger.db"
        while True:
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("select count(*) from heartbeats").fetchone()[0]:
                        break
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.perf_counter()
        KillSwitch(home).engage("benchmark", "bench")
        while True:
            with sqlite3.connect(db) as conn:
                if conn.execute("select count(*) from events where kind='risk.kill_switch'").fetchone()[0]:
                    return time.perf_counter() - t0
            time.sleep(0.002)
    finally:
        bot.terminate()
        bot.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    panics, trips, bases, halts = [], [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, round_trips, baseline, cancelled = exchange_panic(Path(tmp))
        panics.append(elapsed)
        trips.append(round_trips)
        bases.append(baseline)
        with tempfile.TemporaryDirectory() as tmp:
            halts.append(bot_halt(Path(tmp)))
    p, b = statistics.median(panics), statistics.median(bases)
    print(f"orders cancelled                 {cancelled} over {len(SYMBOLS)} symbols (emulator on 127.0.0.1)")
    print(f"panic -> verified zero orders    {p * 1000:8.1f} ms   (median of {args.repeat})")
    print(f"exchange round trips             {statistics.median(trips):8.0f}")
    print(f"one fetch_open_orders (baseline) {b * 1000:8.1f} ms")
    print(f"ratio panic / one round trip     {p / b:8.1f}")
    print(f"engage -> bot HALTED in ledger   {statistics.median(halts) * 1000:8.1f} ms   (10 ms ticks)")


if __name__ == "__main__":
    main()
