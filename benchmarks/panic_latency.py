"""Panic latency: the local flag with Redis hung, `panic` to verified zero open orders, and
until a running bot is HALTED. Every figure is also given as a ratio to a baseline measured
in the same run, so runs on different machines compare.

1. Local flag with Redis hung: a private redis-server on a free port is SIGSTOPped (the
   kernel accepts connections, nothing answers); `sigmax_cli.risk.panic.panic` runs with it.
   Printed: time from the call to the kill-switch file being on disk (fsynced) and how much
   of it came before the write, against one plain `write_atomic` of a record of the same
   size just before (the baseline: the least a durable flag costs on that disk then); and
   the whole panic's time (it waits out Redis's short timeout after the flag).
2. A Binance emulator on 127.0.0.1 (tests/support) holds 50 open orders over 5 symbols;
   `panic` engages the kill switch, cancels and verifies. Printed: time to verified zero
   and to the end of panic, exchange round trips in all and per symbol (requests naming the
   symbol: cancel-all and verification), and the ratio to one plain `fetch_open_orders`
   round trip measured in the same run (the baseline).
3. A paper bot runs in another process (1h bars at 360,000x: a 10 ms tick); the kill switch
   is engaged through the file; printed: time until the bot's HALT is visible in the ledger.

    python benchmarks/panic_latency.py [--repeat 3]

Figures of issue 15's change (medians of 3, the same machine, 2 shared cores, one run each;
"before" is main's code under this same script):

    local flag written, Redis hung   before 4036.9 ms (334.7x a write)   after 2.00 ms (0.2x; 0.39 ms pre-write)
    whole panic, Redis hung          before 8123.8 ms                    after 1147 ms (1 s timeout, no retry)
    exchange round trips             before 18 (3 per symbol)            after 13 (2 per symbol)
    panic -> verified zero           before 478 ms (8.0x a round trip)   after 140 ms (2.3x)
    panic, whole call                before 636 ms (10.6x a round trip)  after 211 ms (3.5x)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data"))

SYMBOLS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT"), "ADAUSDT": ("ADA", "USDT"),
           "LTCUSDT": ("LTC", "USDT"), "XRPUSDT": ("XRP", "USDT")}
PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 4_000.0, "ADAUSDT": 2.0, "LTCUSDT": 200.0, "XRPUSDT": 1.0}


def flag_with_redis_hung(home: Path) -> tuple[float, float, float, float]:
    """(seconds from the panic call to the flag on disk, of which before its write started,
    seconds of the whole panic, seconds of one plain write_atomic of the same size made just
    before the panic, on the same disk: the fsync's cost at that moment)."""
    from sigmax_cli.files import write_atomic
    from sigmax_cli.risk.killswitch import KillSwitch
    from sigmax_cli.risk.panic import panic
    from sigmax_cli.settings import load_settings
    from tests.support.redis_server import RedisServer

    server = RedisServer(home).start()
    marks: dict[str, float] = {}
    original = KillSwitch._write_file

    def timed(self, record):  # instrumentation only: note when the write starts and when it is on disk
        marks.setdefault("write", time.perf_counter())
        result = original(self, record)
        marks.setdefault("written", time.perf_counter())
        return result

    try:
        server.hang()
        (home / "home").mkdir()  # an installed bot's home exists; its first flag is the measurement
        settings = load_settings(home=home / "home", overrides={"redis_url": server.url})
        record = json.dumps({"state": "engaged", "id": "0" * 32, "reason": "benchmark: redis hung", "by": "bench",
                             "since_ms": 0})
        start = time.perf_counter()
        write_atomic(home / "baseline-flag", record)
        baseline = time.perf_counter() - start
        KillSwitch._write_file = timed
        start = time.perf_counter()
        report = panic(settings, "benchmark: redis hung")
        total = time.perf_counter() - start
    finally:
        KillSwitch._write_file = original
        server.stop()
    assert "written" in marks and (home / "home" / "KILLSWITCH").exists(), report.to_dict()
    return marks["written"] - start, marks["write"] - start, total, baseline


def exchange_panic(home: Path) -> dict[str, float]:
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
        emu.clear_log()
        t0 = time.perf_counter()
        started_ms = int(time.time() * 1000)
        report = panic(settings, "benchmark")
        elapsed = time.perf_counter() - t0
        assert report.outcome == "ok" and not account.open_orders(), report.to_dict()
        per_symbol = Counter(r.params.get("symbol") for r in emu.log if r.params.get("symbol"))
        zero_ms = max(t["ts_ms"] for t in report.timeline if "verified zero" in t["step"])
        return {"elapsed": elapsed, "verified": (zero_ms - started_ms) / 1000, "round_trips": report.round_trips,
                "per_symbol": max(per_symbol.values()), "baseline": baseline, "cancelled": len(report.cancelled)}


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
    flags, prewrites, hung_totals, writes, runs, halts = [], [], [], [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            flag, prewrite, total, write = flag_with_redis_hung(Path(tmp))
        flags.append(flag)
        prewrites.append(prewrite)
        hung_totals.append(total)
        writes.append(write)
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(exchange_panic(Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            halts.append(bot_halt(Path(tmp)))
    med = statistics.median
    f, w = med(flags), med(writes)
    print(f"local flag written, Redis hung   {f * 1000:8.2f} ms   (median of {args.repeat}; target <= 5 ms)")
    print(f"  of which before its write      {med(prewrites) * 1000:8.2f} ms   (the rest is the write and its fsync)")
    print(f"one write_atomic (baseline)      {w * 1000:8.2f} ms   (same disk, just before; fsync varies with load)")
    print(f"ratio flag / baseline write      {f / w:8.1f}")
    print(f"whole panic, Redis hung          {med(hung_totals) * 1000:8.1f} ms   (Redis's short timeout after "
          "the flag)")
    p, v, b = (med(r["elapsed"] for r in runs), med(r["verified"] for r in runs), med(r["baseline"] for r in runs))
    print(f"orders cancelled                 {runs[-1]['cancelled']} over {len(SYMBOLS)} symbols "
          "(emulator on 127.0.0.1)")
    print(f"panic -> verified zero orders    {v * 1000:8.1f} ms   (ms resolution)")
    print(f"panic, whole call                {p * 1000:8.1f} ms   (ledger and report included)")
    print(f"exchange round trips             {med(r['round_trips'] for r in runs):8.0f}   "
          f"(per symbol: {med(r['per_symbol'] for r in runs):.0f}; target <= 3)")
    print(f"one fetch_open_orders (baseline) {b * 1000:8.1f} ms")
    print(f"ratio verified zero / one trip   {v / b:8.1f}")
    print(f"ratio whole panic / one trip     {p / b:8.1f}")
    print(f"engage -> bot HALTED in ledger   {med(halts) * 1000:8.1f} ms   (10 ms ticks)")


if __name__ == "__main__":
    main()
