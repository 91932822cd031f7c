"""Tick latency of `sigmax run`: from a new closed bar to the order handed to the exchange
client, network excluded: features -> strategy -> RiskGuard -> live broker (precision,
funds, write-ahead to a SQLite ledger) -> ``exchange.create_order``.

The exchange is an in-process stand-in that answers every call at once (a filled market
order with one trade), so only sigmax's own work is timed. Real BTC/USDT 1h candles from
../shared/data are replayed; the strategy alternates buy and sell so that every tick sends
an order. The baseline, measured in the same run on the same bars, is the paper broker's
path (bar -> ``PaperBroker.submit``). Prints p50/p99 per tick and the ratio live / paper,
and the live path without its write-ahead ledger commit, to show what that commit costs.

    python benchmarks/tick_latency.py [--ticks 3000] [--data DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data")) / "ohlcv" / \
    "binance_spot_freqtrade_2020-12_2021-07"


class Alternate:
    """Buys when flat, sells when long: one order per bar."""

    name, warmup = "alternate", 1

    def features(self, candles):
        return {"close": candles.close.tolist()}

    def on_bar(self, bar, position):
        from sigmax_cli.strategies.base import Signal

        return Signal(0.0 if position.qty > 0 else 1.0, "bench")

    def params(self):
        return {"name": self.name}


class OfflineExchange:
    """Answers like ccxt binance would, at once; records when each order was handed over."""

    id = "binance"
    has = {"fetchOrders": True}

    def __init__(self, market: dict) -> None:
        self.markets = {"BTC/USDT": market}
        self.handed: list[float] = []
        self._ids = itertools.count(1)

    def create_order(self, symbol, kind, side, amount, price=None, params=None):
        self.handed.append(time.perf_counter())
        n = next(self._ids)
        px = 30_000.0
        return {"id": str(n), "clientOrderId": params["clientOrderId"], "status": "closed", "filled": amount,
                "cost": amount * px, "timestamp": 0, "type": kind, "side": side, "amount": amount,
                "trades": [{"id": f"t{n}", "price": px, "amount": amount, "fee": {"cost": amount * px * 0.001,
                                                                                  "currency": "USDT"}}]}

    def fetch_balance(self):
        return {"free": {"USDT": 1e9, "BTC": 1e9}, "total": {"USDT": 1e9, "BTC": 1e9}}


class TimedFeed:
    """The replay feed, stamping when each bar arrives."""

    def __init__(self, feed, broker=None) -> None:
        self.feed, self.broker = feed, broker
        self.symbols, self.timeframe = feed.symbols, feed.timeframe
        self.arrived: list[float] = []

    @property
    def bars_total(self):
        return self.feed.bars_total

    def data_files(self):
        return self.feed.data_files()

    def steps(self, stop):
        for step in self.feed.steps(stop):
            if self.broker is not None:
                self.broker.begin_tick()
            self.arrived.append(time.perf_counter())
            yield step


def run_once(kind: str, candles, home: Path) -> list[float]:
    from sigmax_cli.brokers.live import LiveBroker
    from sigmax_cli.brokers.paper import PaperBroker
    from sigmax_cli.engine import Engine, EngineConfig
    from sigmax_cli.feeds import ReplayFeed
    from sigmax_cli.ledger import Ledger
    from sigmax_cli.markets import from_ccxt
    from sigmax_cli.risk.guard import build_guard
    from sigmax_cli.settings import RiskSettings

    market = json.loads((REPO.parent / "shared" / "data" / "exchange_api" / "ccxt_static" /
                         "binance_markets_spot_subset.json").read_text())["BTC/USDT"]
    rules = {"BTC/USDT": from_ccxt(market)}
    risk = RiskSettings(max_order_notional=1e9, max_position_notional=1e9, max_total_notional=1e9,
                        max_orders_per_minute=1_000, max_consecutive_losses=1_000_000, cooldown_minutes=0,
                        daily_loss_limit_pct=99, weekly_loss_limit_pct=99, max_drawdown_pct=99,
                        max_slippage_bps=1e9, stale_data_bars=1_000_000)
    strategy = Alternate()
    with Ledger(f"sqlite:///{home / f'{kind}.db'}") as ledger:
        run_id = f"bench-{kind}"
        ledger.start_run(run_id=run_id, mode=kind, profile="bench", exchange="binance", strategy="alternate",
                         params={}, symbols=["BTC/USDT"], timeframe="1h", data_files=[], initial_equity=10_000.0)
        handed: list[float]
        if kind == "paper":
            broker = PaperBroker({"USDT": 10_000.0}, rules)
            submit = broker.submit
            handed = []

            def timed_submit(request, now_ms):
                handed.append(time.perf_counter())
                return submit(request, now_ms)

            broker.submit = timed_submit
        else:
            exchange = OfflineExchange(market)
            handed = exchange.handed

            def journal(order):
                ledger.record_order(order.record(run_id))
                if order.status == "new":
                    ledger.flush()

            broker = LiveBroker(exchange, rules, clock=lambda: 0, journal=journal if kind == "live" else None)
            broker.seed({"USDT": 10_000.0})
        feed = TimedFeed(ReplayFeed({"BTC/USDT": candles}, strategy.features, skip=1),
                         None if kind == "paper" else broker)
        config = EngineConfig(run_id=run_id, mode=kind, profile="bench", quote="USDT", initial_equity=10_000.0,
                              position_fraction=0.5, max_order_notional=1e9, max_position_notional=1e9,
                              taker_fee=0.001, slippage_bps=5.0, daily_loss_limit_pct=99.0, heartbeat_s=0.0)
        Engine(config=config, feed=feed, strategy=strategy, broker=broker, guard=build_guard(risk, 3_600_000),
               ledger=ledger, observer=None).run(threading.Event())
    # each tick sends one order: pair the order with the bar it was decided on
    latencies = []
    arrived = feed.arrived
    j = 0
    for t in handed:
        while j + 1 < len(arrived) and arrived[j + 1] <= t:
            j += 1
        latencies.append(t - arrived[j])
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    from sigmax_cli.data.candles import load_candles

    source = args.data / "BTC_USDT-1h.json"
    if not source.is_file():
        sys.exit(f"{source} not found; pass --data")
    full = load_candles(source)
    candles = full.slice(None, int(full.ts[min(len(full) - 1, args.ticks + 1)]))
    runs = {}
    kinds = ("paper", "live", "live-no-journal")
    for kind in kinds + kinds:  # the first of each warms imports and caches up
        with tempfile.TemporaryDirectory() as tmp:
            runs[kind] = run_once(kind, candles, Path(tmp))
    paper, live, bare = runs["paper"], runs["live"], runs["live-no-journal"]
    p50p, p99p = pct(paper, 0.5) * 1e6, pct(paper, 0.99) * 1e6
    p50l, p99l = pct(live, 0.5) * 1e6, pct(live, 0.99) * 1e6
    print(f"ticks (bars with an order)   live {len(live):,}   paper {len(paper):,}")
    print(f"paper  bar -> submit         p50 {p50p:9.1f} us   p99 {p99p:9.1f} us   mean "
          f"{statistics.mean(paper) * 1e6:9.1f} us")
    print(f"live   bar -> create_order   p50 {p50l:9.1f} us   p99 {p99l:9.1f} us   mean "
          f"{statistics.mean(live) * 1e6:9.1f} us")
    p50b, p99b = pct(bare, 0.5) * 1e6, pct(bare, 0.99) * 1e6
    print(f"  without the write-ahead    p50 {p50b:9.1f} us   p99 {p99b:9.1f} us   (ledger commit before each send)")
    print(f"ratio live / paper           p50 {p50l / p50p:9.2f}      p99 {p99l / p99p:9.2f}")
    print(f"ratio live w/o journal/paper p50 {p50b / p50p:9.2f}      p99 {p99b / p99p:9.2f}")


if __name__ == "__main__":
    main()
