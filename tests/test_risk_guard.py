"""RiskGuard: state gate, pre-trade rules, trips and resumes, and the guarded broker."""

from __future__ import annotations

import pytest

from sigmax_cli.brokers.paper import PaperBroker
from sigmax_cli.errors import RiskBlocked
from sigmax_cli.model import OrderRequest
from sigmax_cli.risk.base import RiskView, TradingState
from sigmax_cli.risk.guard import GuardedBroker, build_guard
from sigmax_cli.settings import RiskSettings

DAY = 86_400_000
T0 = 1_620_777_600_000  # 2021-05-12 00:00 UTC


def view(equity=10_000.0, peak=10_000.0, day_start=10_000.0, now=T0 + 3_600_000, positions=None, open_orders=0):
    return RiskView(equity, peak, day_start, now, positions or {}, open_orders)


def buy(notional=100.0, symbol="BTC/USDT", reduce_only=False):
    return OrderRequest(symbol, "buy", "market", notional / 50_000, "c", 50_000.0, reduce_only=reduce_only)


def sell(notional=100.0, symbol="BTC/USDT"):
    return OrderRequest(symbol, "sell", "market", notional / 50_000, "c", 50_000.0, reduce_only=True)


@pytest.fixture
def guard():
    return build_guard(RiskSettings(max_order_notional=500, max_position_notional=1000, max_total_notional=1500,
                                    max_open_orders=2, daily_loss_limit_pct=2.0, max_drawdown_pct=8.0))


def test_pre_trade_limits(guard):
    assert guard.check(buy(400), view()) is None
    d = guard.check(buy(600), view())
    assert d.rule == "max_order_notional" and d.value == pytest.approx(600) and d.limit == 500
    d = guard.check(buy(400), view(positions={"BTC/USDT": 700}))
    assert d.rule == "max_position_notional" and d.value == pytest.approx(1100)
    d = guard.check(buy(400, "ETH/USDT"), view(positions={"BTC/USDT": 900, "SOL/USDT": 400}))
    assert d.rule == "max_total_notional"
    d = guard.check(buy(100), view(open_orders=2))
    assert d.rule == "max_open_orders"
    # exits are never capped by the exposure rules
    assert guard.check(sell(5_000), view(positions={"BTC/USDT": 5_000}, open_orders=2)) is None


def test_daily_loss_trips_reducing_until_next_utc_day(guard):
    changes = guard.evaluate(view(equity=9_850, day_start=10_000))
    assert changes == [] and guard.state is TradingState.ACTIVE  # 1.5 % < 2 %
    (trip,) = guard.evaluate(view(equity=9_790, day_start=10_000, now=T0 + 5 * 3_600_000))
    assert guard.state is TradingState.REDUCING
    assert trip.rule == "daily_loss_limit" and trip.value == pytest.approx(2.1) and trip.limit == 2.0
    assert trip.resume == "next_utc_day" and trip.until_ms == T0 + DAY
    assert guard.check(buy(100), view()).rule == "trading_state"
    assert guard.check(sell(100), view()) is None  # REDUCING lets exits through
    # still the same day: stays REDUCING even if equity recovers
    assert guard.evaluate(view(equity=10_000, now=T0 + DAY - 1)) == []
    assert guard.state is TradingState.REDUCING
    (resumed,) = guard.evaluate(view(equity=9_790, day_start=9_790, now=T0 + DAY))
    assert resumed.rule == "daily_loss_limit" and guard.state is TradingState.ACTIVE


def test_drawdown_stops_entries_until_operator_release(guard):
    (trip,) = guard.evaluate(view(equity=9_100, peak=10_000, day_start=9_100))
    assert trip.state is TradingState.REDUCING and trip.resume == "operator" and trip.until_ms is None
    assert guard.check(buy(100), view()).rule == "trading_state"
    assert guard.check(sell(100), view()) is None  # stop-losses can still cut positions
    assert guard.evaluate(view(equity=12_000, peak=12_000, day_start=12_000, now=T0 + 10 * DAY)) == []
    assert guard.state is TradingState.REDUCING
    guard.release("operator checked the account")
    assert guard.state is TradingState.ACTIVE


def test_halt_refuses_everything_until_release(guard):
    guard.halt("kill_switch", "panic by operator")
    assert guard.check(sell(100), view()).rule == "trading_state"
    assert guard.evaluate(view(now=T0 + 3 * DAY)) == []
    assert guard.state is TradingState.HALTED
    guard.release("released")
    assert guard.check(buy(100), view()) is None


def test_guarded_broker_refuses_before_the_broker_sees_the_order(guard):
    broker = PaperBroker({"USDT": 10_000.0})
    gate = GuardedBroker(broker, guard, lambda now: view(now=now))
    with pytest.raises(RiskBlocked) as info:
        gate.submit(OrderRequest("BTC/USDT", "buy", "market", 0.02, "big", 50_000.0), now_ms=T0)
    assert info.value.denial.rule == "max_order_notional"
    assert broker.open_orders() == [] and broker.free("USDT") == 10_000.0
    order = gate.submit(OrderRequest("BTC/USDT", "buy", "market", 0.002, "ok", 50_000.0), now_ms=T0)
    assert order.status == "open"


def full_guard(**overrides):
    settings = dict(max_order_notional=500, max_position_notional=1000, max_total_notional=1500, max_open_orders=2,
                    daily_loss_limit_pct=2.0, max_drawdown_pct=8.0, max_consecutive_losses=3, cooldown_minutes=60,
                    weekly_loss_limit_pct=4.0, max_orders_per_minute=3, max_slippage_bps=50,
                    max_api_errors_per_minute=5, stale_data_bars=3, min_sentiment=-0.6)
    settings.update(overrides)
    return build_guard(RiskSettings(**settings), tf_ms=3_600_000)


def test_consecutive_losses_pause_entries_for_the_cooldown_and_trip_again_on_the_next_loss():
    guard = full_guard()
    assert guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, losing_streak=2)) == []
    (trip,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, losing_streak=3))
    assert trip.rule == "consecutive_losses" and trip.resume == "cooldown" and trip.until_ms == T0 + 3_600_000
    assert guard.check(buy(100), view()).rule == "trading_state"
    assert guard.evaluate(RiskView(10_000, 10_000, 10_000, T0 + 1_000, losing_streak=3)) == []  # same streak
    (resumed,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0 + 3_600_000, losing_streak=3))
    assert resumed.rule == "consecutive_losses" and guard.state is TradingState.ACTIVE
    (again,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0 + 3_700_000, losing_streak=4))
    assert again.rule == "consecutive_losses"


def test_stop_out_cooldown_blocks_re_entry_of_that_symbol_only():
    guard = full_guard()
    v = RiskView(10_000, 10_000, 10_000, T0 + 30 * 60_000, last_loss_ms={"BTC/USDT": T0})
    assert guard.check(buy(100, "BTC/USDT"), v).rule == "stop_out_cooldown"
    assert guard.check(buy(100, "ETH/USDT"), v) is None
    assert guard.check(sell(100, "BTC/USDT"), v) is None
    later = RiskView(10_000, 10_000, 10_000, T0 + 61 * 60_000, last_loss_ms={"BTC/USDT": T0})
    assert guard.check(buy(100, "BTC/USDT"), later) is None


def test_weekly_loss_limit_resumes_next_monday():
    guard = full_guard(daily_loss_limit_pct=50)
    wednesday = 1_620_777_600_000  # 2021-05-12 00:00 UTC was a Wednesday
    (trip,) = guard.evaluate(RiskView(9_500, 10_000, 9_900, wednesday, week_start_equity=10_000))
    assert trip.rule == "weekly_loss_limit" and trip.until_ms == 1_621_209_600_000  # Monday 2021-05-17 00:00


def test_order_rate_slippage_api_errors():
    guard = full_guard()
    assert guard.check(buy(100), RiskView(10_000, 10_000, 10_000, T0, orders_last_minute=3)).rule == "max_order_rate"
    assert guard.check(sell(100), RiskView(10_000, 10_000, 10_000, T0, orders_last_minute=9)) is None
    (slip,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, last_slippage_bps=75.0))
    assert slip.rule == "slippage_tolerance" and slip.value == 75.0 and slip.limit == 50
    (burst,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, last_slippage_bps=75.0, api_errors_last_minute=5))
    assert burst.rule == "api_error_burst" and guard.state is TradingState.HALTED
    assert guard.check(sell(100), view()).rule == "trading_state"


def test_stale_data_and_sentiment_resume_when_their_condition_clears():
    guard = full_guard()
    (stale,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, data_age_ms=4 * 3_600_000))
    assert stale.rule == "stale_data" and stale.resume == "condition" and guard.state is TradingState.HALTED
    (fresh,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0 + 60_000, data_age_ms=0))
    assert fresh.rule == "stale_data" and guard.state is TradingState.ACTIVE
    (bearish,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, sentiment=-0.7))
    assert bearish.rule == "extreme_sentiment" and guard.state is TradingState.REDUCING
    assert guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, sentiment=-0.65)) == []
    (calmer,) = guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, sentiment=-0.2))
    assert calmer.rule == "extreme_sentiment" and guard.state is TradingState.ACTIVE
    assert guard.evaluate(RiskView(10_000, 10_000, 10_000, T0, sentiment=None)) == []


class _FlipOnce:
    """Buys, sells the bar after, then wants to buy again: one losing round trip (the fee
    below makes it lose) followed by a re-entry attempt on every later bar."""

    name = "flip-once"
    warmup = 1

    def features(self, candles):
        return {}

    def on_bar(self, bar, position):
        from sigmax_cli.strategies.base import Signal

        return Signal(0.0, "exit") if position.qty > 0 else Signal(1.0, "entry")

    def params(self):
        return {"name": self.name}


class _WallClockFills:
    """The paper broker, with every fill stamped ``ahead_ms`` after its bar, as the live
    broker stamps fills with the exchange's clock while a restarted bot still replays the
    bars it missed (no exchange is needed to reproduce the clash of the two clocks)."""

    def __init__(self, inner, ahead_ms: int) -> None:
        self._inner, self.ahead_ms = inner, ahead_ms

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def on_bar(self, bar):
        from dataclasses import replace

        update = self._inner.on_bar(bar)
        update.fills[:] = [replace(f, ts_ms=bar.ts_ms + self.ahead_ms) for f in update.fills]
        return update


def _catch_up_run(tmp_path, cooldown_minutes: int):
    import threading

    from sigmax_cli.brokers.paper import PaperBroker
    from sigmax_cli.data.candles import load_candles
    from sigmax_cli.engine import Engine, EngineConfig
    from sigmax_cli.feeds import ReplayFeed
    from sigmax_cli.ledger import Ledger
    from tests.conftest import FREQTRADE_1H

    candles = load_candles(FREQTRADE_1H / "BTC_USDT-1h.json")
    candles = candles.slice(int(candles.ts[100]), int(candles.ts[108]))
    strategy = _FlipOnce()
    feed = ReplayFeed({"BTC/USDT": candles}, strategy.features)
    broker = _WallClockFills(PaperBroker({"USDT": 10_000.0}, taker_fee=0.05, maker_fee=0.05), ahead_ms=50 * 3_600_000)
    config = EngineConfig(run_id=f"cool{cooldown_minutes}", mode="paper", profile="p", quote="USDT",
                          initial_equity=10_000.0, position_fraction=0.2, max_order_notional=5_000,
                          max_position_notional=5_000, taker_fee=0.05, slippage_bps=5, daily_loss_limit_pct=90)
    guard = full_guard(cooldown_minutes=cooldown_minutes, daily_loss_limit_pct=90, weekly_loss_limit_pct=90,
                       max_drawdown_pct=90, max_consecutive_losses=100, max_order_notional=5_000,
                       max_position_notional=5_000, max_total_notional=5_000, max_slippage_bps=10_000,
                       stale_data_bars=1_000, min_sentiment=-1.0)
    with Ledger(f"sqlite:///{tmp_path / f'c{cooldown_minutes}.db'}") as ledger:
        ledger.start_run(run_id=config.run_id, mode="paper", profile="p", exchange="binance", strategy="flip-once",
                         params={}, symbols=["BTC/USDT"], timeframe="1h", data_files=[], initial_equity=10_000.0)
        Engine(config=config, feed=feed, strategy=strategy, broker=broker, guard=guard, ledger=ledger).run(
            threading.Event())
        events = ledger.rows("events", config.run_id, order_by=("id",))
        orders = ledger.rows("orders", config.run_id, order_by=("created_ms",))
    return orders, [e for e in events if e["kind"] == "risk.denied.stop_out_cooldown"]


def test_a_cooldown_of_zero_never_blocks_even_when_fills_are_stamped_after_the_bar(tmp_path):
    orders, denied = _catch_up_run(tmp_path, 0)
    assert denied == []
    sides = [o["side"] for o in orders]
    assert sides[:3] == ["buy", "sell", "buy"]  # re-entered on the bar the losing exit filled


def test_the_cooldown_counts_bar_time_from_the_bar_the_stop_out_was_booked(tmp_path):
    orders, denied = _catch_up_run(tmp_path, 60)
    # the losing exit is booked at a bar close; the re-entry on that same bar is refused after
    # 0 min of bar time, the one a bar (60 min) later goes through, although the fill's own
    # (exchange clock) time is 50 h after both bars
    reasons = {e["message"].split(": ", 1)[1] for e in denied}
    assert denied and reasons == {"BTC/USDT stopped out 0 min ago; cooldown 60 min"}
    sides = [o["side"] for o in orders]
    assert sides[:3] == ["buy", "sell", "buy"]
    assert orders[2]["created_ms"] - orders[1]["created_ms"] == 2 * 3_600_000  # the sell fills one bar later
