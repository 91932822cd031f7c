"""Parity with an independent backtester: backtesting.py (kernc/backtesting.py 0.6).

One fixed signal series (enter at bar i when i % 48 == 5, leave when i % 48 == 29: a
function of the bar index only, so neither side's indicators matter) goes through
``sigmax paper`` and through backtesting.py's ``FractionalBacktest`` on the same real
Binance BTC/USDT 1h candles. The two must agree on every trade (entry and exit bar, price
and size) and on the final equity to 1e-6 relative.

Why the comparison is fair, and what differs between the two fill models:

* both decide on a bar's close and fill a market order at the next bar's open
  (backtesting.py's default ``trade_on_close=False``); sigmax's slippage is set to 0 and
  its volume cap (``participation``) to 1, since backtesting.py models neither;
* both charge the commission ``f`` on each fill's notional, in cash (backtesting.py's
  relative ``commission``; sigmax's taker fee in the quote);
* sizing is sigmax's (position fraction of equity, truncated to the 1e-8 step, with its
  2 % reservation buffer for a market buy): the sizes sigmax decided are handed to
  backtesting.py as whole units of 1e-8 BTC (``fractional_unit=1e-8``), so the test
  compares the fill and accounting models, not two sizing rules;
* backtesting.py is a margin model (a buy does not debit cash; equity = cash + open P&L)
  and sigmax a spot account (a buy turns quote into base): for a long-only series that ends
  flat both give initial cash + sum(P&L) - sum(commissions);
* backtesting.py multiplies prices by ``fractional_unit`` and divides them back, which
  moves values by ~1e-16 relative: far inside the 1e-6 tolerance.
"""

from __future__ import annotations

import json
import threading

import pandas as pd
import pytest

from sigmax_cli.ledger import Ledger
from sigmax_cli.paper import PaperOptions, prepare_paper, run_paper
from sigmax_cli.settings import load_settings
from sigmax_cli.strategies.base import Signal

backtesting = pytest.importorskip("backtesting")
from backtesting import Strategy as BtStrategy  # noqa: E402
from backtesting.lib import FractionalBacktest  # noqa: E402

FEE = 0.001
UNIT = 1e-8
BARS = 2000


def enters(i: int) -> bool:
    return i % 48 == 5


def leaves(i: int) -> bool:
    return i % 48 == 29


class FixedSignals:
    """sigmax side: the fixed series, ignoring prices."""

    name, warmup = "fixed-signals", 0

    def features(self, candles):
        return {"close": candles.close}

    def params(self):
        return {"name": self.name}

    def on_bar(self, bar, position):
        if enters(bar.i) and position.qty <= 0:
            return Signal(1.0, "fixed enter")
        if leaves(bar.i) and position.qty > 0:
            return Signal(0.0, "fixed leave")
        return None


@pytest.mark.filterwarnings("ignore:DatetimeIndex.dayofweek is deprecated")  # inside backtesting.py's stats
def test_sigmax_paper_and_backtesting_py_agree_on_trades_and_equity(data_dir, tmp_path):
    rows = json.loads((data_dir / "ohlcv/binance_spot_freqtrade_2020-12_2021-07/BTC_USDT-1h.json").read_text())[:BARS]
    data = tmp_path / "data"
    data.mkdir()
    (data / "BTC_USDT-1h.json").write_text(json.dumps(rows))

    settings = load_settings(home=tmp_path / "home", overrides={
        "timeframe": "1h",
        "paper": {"slippage_bps": 0.0, "taker_fee": FEE, "maker_fee": FEE, "participation": 1.0},
        "strategy": {"position_fraction": 0.5},
        "risk": {"max_order_notional": 1e9, "max_position_notional": 1e9, "max_total_notional": 1e9,
                 "max_drawdown_pct": 99.0, "daily_loss_limit_pct": 99.0, "weekly_loss_limit_pct": 99.0,
                 "max_consecutive_losses": 1000, "cooldown_minutes": 0, "max_slippage_bps": 1e6}})
    plan = prepare_paper(settings, PaperOptions(data=data))
    plan.strategy = FixedSignals()
    plan.feed = type(plan.feed)({"BTC/USDT": plan.feed.candles["BTC/USDT"]}, plan.strategy.features, skip=0)
    summary = run_paper(plan, threading.Event())
    assert summary.invariants == [] and summary.rejected == 0
    with Ledger(settings.ledger_url) as ledger:
        fills = ledger.rows("fills", summary.run_id, order_by=("ts_ms", "id"))
    ts = [r[0] for r in rows]
    index = {t: i for i, t in enumerate(ts)}
    # sigmax fills at bar j's open for a decision on bar j - 1
    decided = {index[f["ts_ms"]] - 1: f for f in fills}
    assert len(fills) > 40 and all(enters(i) or leaves(i) for i in decided)

    class Replay(BtStrategy):
        def init(self):
            pass

        def next(self):
            i = len(self.data) - 1
            fill = decided.get(i)
            if fill is None:
                return
            if fill["side"] == "buy":
                self.buy(size=round(fill["amount"] / UNIT))
            else:
                self.position.close()

    frame = pd.DataFrame(
        [r[1:6] for r in rows], columns=["Open", "High", "Low", "Close", "Volume"],
        index=pd.to_datetime(ts, unit="ms", utc=True).tz_localize(None))
    bt = FractionalBacktest(frame, Replay, cash=settings.paper.balance, commission=FEE, fractional_unit=UNIT,
                            finalize_trades=False)
    stats = bt.run()
    trades = stats["_trades"]

    buys = [f for f in fills if f["side"] == "buy"]
    sells = [f for f in fills if f["side"] == "sell"]
    assert len(trades) == len(buys) == len(sells)
    for (_, t), buy, sell in zip(trades.iterrows(), buys, sells, strict=True):
        assert int(t["EntryBar"]) == index[buy["ts_ms"]] and int(t["ExitBar"]) == index[sell["ts_ms"]]
        assert t["EntryPrice"] == pytest.approx(buy["price"], rel=1e-12)
        assert t["ExitPrice"] == pytest.approx(sell["price"], rel=1e-12)
        assert t["Size"] == pytest.approx(buy["amount"], rel=1e-12) and sell["amount"] == buy["amount"]
    assert stats["Equity Final [$]"] == pytest.approx(summary.final_equity, rel=1e-6)
    assert summary.final_equity != pytest.approx(settings.paper.balance, rel=1e-3)  # the trades moved money
