"""Exact quantities through whole runs (issue 14): every real pair and profile exits
cleanly and the ledger adds up; SHIB-sized and 1e9-unit markets replay; a rejected exit is
reported once, backed off and blocks entries.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from sigmax_cli.brokers.paper import PaperBroker
from sigmax_cli.data.candles import load_candles
from sigmax_cli.engine import Engine, EngineConfig
from sigmax_cli.errors import OrderRejected
from sigmax_cli.feeds import ReplayFeed
from sigmax_cli.ledger import Ledger
from sigmax_cli.markets import from_ccxt
from sigmax_cli.model import OrderRequest
from sigmax_cli.risk.guard import build_guard
from sigmax_cli.settings import RiskSettings, load_settings
from sigmax_cli.strategies.base import Signal

FREQTRADE = "ohlcv/binance_spot_freqtrade_2020-12_2021-07"
STATIC_MARKETS = "exchange_api/ccxt_static/binance_markets_spot_subset.json"
REFUSED_FOR_MONEY = {"precision", "insufficient_funds", "min_amount", "min_notional"}


def ledger_rows(table: str, run_id: str) -> list[dict]:
    with Ledger(load_settings().ledger_url) as ledger:
        return ledger.rows(table, run_id)


def paper_json(cli, *args: str) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stdout
    return json.loads(result.stdout)


@pytest.mark.parametrize("profile", ["conservative", "balanced", "aggressive"])
@pytest.mark.parametrize("timeframe", ["1h", "5m"])
@pytest.mark.parametrize("markets", [False, True], ids=["default-rules", "binance-markets"])
def test_every_real_pair_exits_cleanly_and_the_ledger_adds_up(cli, data_dir, profile, timeframe, markets):
    """All 10 (1h) or 5 (5m) real Binance pairs, with sigmax's default rules (1e-8 steps)
    or with ccxt's recorded Binance markets (real steps, minQty and MIN_NOTIONAL for the 7 it
    has; the rest default): no exit is ever rejected, no order is refused for precision or
    funds, and the end-of-run invariants hold. Before issue 14, DOGE and MATIC positions
    could never be sold (9,825 rejections on the 1h set)."""
    extra = ["--markets", str(data_dir / STATIC_MARKETS)] if markets else []
    doc = paper_json(cli, "--profile", profile, "paper", "--data", str(data_dir / FREQTRADE), "--timeframe",
                     timeframe, *extra)
    assert doc["invariants"] == []
    assert not REFUSED_FOR_MONEY & set(doc["rejections"]), doc["rejections"]
    assert doc["exits_blocked"] == {}
    orders = ledger_rows("orders", doc["run_id"])
    assert [o for o in orders if o["status"] == "rejected" and o["side"] == "sell"] == []
    assert sum(o["side"] == "sell" and o["status"] == "filled" for o in orders) > 10  # exits really happened
    # nothing stuck "open": at most the orders decided at the very last bar are still working
    assert sum(o["status"] in ("new", "open", "partially_filled") for o in orders) <= len(doc["symbols"])


def scaled_candles(src: Path, dest: Path, price_factor: float) -> Path:
    """A real candle file with prices scaled by ``price_factor`` and volume by its inverse
    (the same market in another unit, e.g. SHIB-sized prices); written to a temp dir."""
    rows = json.loads(src.read_text())
    out = [[r[0], *(float(np.float64(v) * price_factor) for v in r[1:5]), r[5] / price_factor] for r in rows]
    dest.write_text(json.dumps(out))
    return dest


@pytest.mark.parametrize("name,source,factor,step,tick", [
    ("SHIB", "DOGE_USDT-1h.json", 1e-4, 1, 1e-8),        # price ~1e-5 .. 7e-5, whole units, 1e7-1e8 per order
    ("MICRO", "BTC_USDT-1h.json", 2.5e-11, 1e-8, 1e-13),  # price ~5e-7: 1e9 units at 1e-8 steps per order
])
def test_large_quantities_replay_with_exact_exits(cli, data_dir, tmp_path, name, source, factor, step, tick):
    data = tmp_path / "data"
    data.mkdir()
    scaled_candles(data_dir / FREQTRADE / source, data / f"{name}_USDT-1h.json", factor)
    market = {"symbol": f"{name}/USDT", "base": name, "quote": "USDT", "precisionMode": 4,
              "precision": {"amount": step, "price": tick}, "limits": {"amount": {"min": step}, "cost": {"min": 1.0}}}
    (data / "markets.json").write_text(json.dumps({market["symbol"]: market}))
    doc = paper_json(cli, "--profile", "balanced", "paper", "--data", str(data), "--timeframe", "1h")
    assert doc["invariants"] == [] and doc["rejections"] == {} and doc["fills"] > 20
    rules = from_ccxt(market)
    fills = ledger_rows("fills", doc["run_id"])
    assert max(f["amount"] for f in fills) > (1e7 if name == "SHIB" else 5e8)
    sells = [f for f in fills if f["side"] == "sell"]
    assert sells and all(rules.amount_to_precision(f["amount"]) == f["amount"] for f in fills)  # on the grid
    # nothing stranded: after every fill a position is exactly 0 or at least one whole step
    positions = ledger_rows("positions", doc["run_id"])
    assert all(p["qty"] == 0.0 or p["qty"] >= step for p in positions)
    assert sum(p["qty"] == 0.0 for p in positions) >= 5  # round trips closed to exactly nothing


# ------------------------------------------------------------ rejected exits
class RefusingExchange(PaperBroker):
    """The paper broker, refusing the first ``refuse`` sells as an exchange would
    ("market closed to sells"). A test double: no real exchange refuses on cue offline."""

    def __init__(self, *args, refuse: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refuse = refuse
        self.sell_attempts = 0

    def submit(self, request: OrderRequest, now_ms: int):
        if request.side == "sell":
            self.sell_attempts += 1
            if self.sell_attempts <= self.refuse:
                raise OrderRejected(f"{request.symbol} sells are suspended", "wait", kind="exchange")
        return super().submit(request, now_ms)


class BuyThenSellForever:
    """Buys at the first bar, then wants out on every bar after ``hold`` bars; buys again
    whenever flat."""

    name, warmup = "buy-then-sell", 0

    def __init__(self, hold: int = 3) -> None:
        self.hold = hold

    def features(self, candles):
        return {"close": candles.close}

    def params(self):
        return {}

    def on_bar(self, bar, position):
        if position.qty <= 0:
            return Signal(1.0, "enter")
        return Signal(0.0, "exit") if bar.i % 1000 >= self.hold else None


def test_a_rejected_exit_is_reported_once_backed_off_and_blocks_entries(data_dir, tmp_path):
    part = tmp_path / "ETH_USDT-1h.json"  # the first 400 real bars
    part.write_text(json.dumps(json.loads((data_dir / FREQTRADE / "ETH_USDT-1h.json").read_text())[:400]))
    candles = load_candles(part)
    rules = {"ETH/USDT": from_ccxt(json.loads((data_dir / STATIC_MARKETS).read_text())["ETH/USDT"])}
    broker = RefusingExchange({"USDT": 10_000.0}, rules, refuse=12)
    strategy = BuyThenSellForever()
    risk = RiskSettings(max_order_notional=1e6, max_position_notional=1e6, max_total_notional=1e6,
                        max_orders_per_minute=1_000, cooldown_minutes=0, max_consecutive_losses=1000,
                        daily_loss_limit_pct=99, weekly_loss_limit_pct=99, max_drawdown_pct=99,
                        max_consecutive_rejections=3)
    with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        ledger.start_run(run_id="rej", mode="paper", profile="t", exchange="binance", strategy="t", params={},
                         symbols=["ETH/USDT"], timeframe="1h", data_files=[], initial_equity=10_000.0)
        config = EngineConfig(run_id="rej", mode="paper", profile="t", quote="USDT", initial_equity=10_000.0,
                              position_fraction=0.2, max_order_notional=1e6, max_position_notional=1e6,
                              taker_fee=0.001, slippage_bps=5.0, daily_loss_limit_pct=99.0, heartbeat_s=0.0,
                              max_consecutive_rejections=3)
        engine = Engine(config=config, feed=ReplayFeed({"ETH/USDT": candles}, strategy.features), strategy=strategy,
                        broker=broker, guard=build_guard(risk), ledger=ledger)
        states = []
        step = engine._step

        def watching_step(ts, bars):  # what a dashboard would show, bar by bar
            step(ts, bars)
            states.append(dict(engine.rejections.exits_blocked))

        engine._step = watching_step
        summary = engine.run(threading.Event())
        events = [(e["kind"], e["level"]) for e in ledger.rows("events", "rej")]
        orders = ledger.rows("orders", "rej")
    kinds = [k for k, _ in events]
    # the first rejection and the streak at the threshold are reported, not all 12
    assert kinds.count("order.rejected") == 1 and ("risk.exit_blocked", "critical") in events
    assert kinds.count("risk.resumed.exit_blocked") == 1  # the 13th attempt went through
    # back-off: three bars in a row, then 2, 4, 8 ... at most 64 bars apart, not every bar
    rejected_ms = sorted(o["created_ms"] for o in orders if o["status"] == "rejected")
    gaps_h = [(b - a) // 3_600_000 for a, b in zip(rejected_ms, rejected_ms[1:], strict=False)]
    assert gaps_h == [1, 1, 2, 4, 8, 16, 32, 64, 64, 64, 64]
    blocked_bars = sum(1 for s in states if s)
    assert blocked_bars == sum(gaps_h[2:]) + 64 and states[-1] == {}  # until the 13th try, 64 bars on
    assert summary.rejections == {"exchange": 12} and summary.exits_blocked == {} and summary.invariants == []
    assert broker.sell_attempts > 13  # after the 13th went through, later exits were accepted at once


def test_exit_blocked_refuses_entries_and_shows_in_health_and_monitor(tmp_path, monkeypatch):
    from sigmax_cli.health.base import Status
    from sigmax_cli.health.runner import run_checks
    from sigmax_cli.monitor import collect
    from sigmax_cli.risk.base import RiskView
    from sigmax_cli.risk.rules.exit_blocked import ExitBlocked

    view = RiskView(equity=1.0, peak_equity=1.0, day_start_equity=1.0, now_ms=0,
                    exits_blocked={"ETH/USDT": "sells are suspended"})
    buy = OrderRequest("ETH/USDT", "buy", "market", 1.0, "b", 100.0)
    denial = ExitBlocked().check_order(buy, view)
    assert denial is not None and "no new entries" in denial.reason
    assert ExitBlocked().check_order(OrderRequest("BTC/USDT", "buy", "market", 1.0, "c", 1.0), view) is None
    assert ExitBlocked().check_order(
        OrderRequest("ETH/USDT", "sell", "market", 1.0, "s", 1.0, reduce_only=True), view) is None

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("SIGMAX_DATABASE_URL", url)
    with Ledger(url) as ledger:
        ledger.heartbeat("paper:h:rej", "rej", "paper", "running",
                         {"equity": 1.0, "initial_equity": 1.0, "exits_blocked": {"ETH/USDT": "sells are suspended"}})
        (row,) = collect(ledger)
    assert row.exits_blocked == {"ETH/USDT": "sells are suspended"}
    report = run_checks(load_settings(), ["exits"])
    (result,) = report.results
    assert result.status is Status.CRITICAL and "ETH/USDT" in result.message and result.value == 1
