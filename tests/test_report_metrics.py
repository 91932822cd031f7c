"""Known answers for sigmax_cli.report.metrics, computed by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sigmax_cli.errors import DataError
from sigmax_cli.report import metrics as m
from sigmax_cli.timeframes import MS_PER_YEAR, bars_per_year

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_609_459_200_000  # 2021-01-01 00:00 UTC, a Friday

# A 5-point daily curve: returns +20 %, -20 %, +10 %, +20 %.
FIVE = np.array([100.0, 120.0, 96.0, 105.6, 126.72])
FIVE_TS = T0 + DAY * np.arange(5)


def test_bar_returns_and_total_return():
    assert m.bar_returns(FIVE) == pytest.approx([0.2, -0.2, 0.1, 0.2])
    # 126.72 / 100 - 1 = 26.72 %
    assert m.total_return_pct(FIVE) == pytest.approx(26.72)
    assert m.bar_returns(np.array([100.0])).size == 0


def test_sharpe_sortino_volatility_by_hand():
    r = m.bar_returns(FIVE)
    per_year = bars_per_year("1d")
    assert per_year == 365
    # mean = (0.2 - 0.2 + 0.1 + 0.2) / 4 = 0.075
    # deviations 0.125, -0.275, 0.025, 0.125; squares sum to
    #   0.015625 + 0.075625 + 0.000625 + 0.015625 = 0.1075
    # sample std (ddof=1) = sqrt(0.1075 / 3) = 0.189297
    # Sharpe = 0.075 / 0.189297 * sqrt(365) = 0.396203 * 19.104973 = 7.5694
    assert m.sharpe_ratio(r, per_year) == pytest.approx(
        0.075 / math.sqrt(0.1075 / 3) * math.sqrt(365)
    )
    assert m.sharpe_ratio(r, per_year) == pytest.approx(7.5694, abs=1e-4)
    # downside: min(0, r) = 0, -0.2, 0, 0 -> sqrt(0.04 / 4) = 0.1 (N = all 4 returns)
    assert m.downside_deviation(r) == pytest.approx(0.1)
    # Sortino = 0.075 / 0.1 * sqrt(365) = 14.3287
    assert m.sortino_ratio(r, per_year) == pytest.approx(14.3287, abs=1e-4)
    # volatility = 0.189297 * sqrt(365) * 100 = 361.65 %
    assert m.annual_volatility_pct(r, per_year) == pytest.approx(361.6513, abs=1e-3)


def test_max_drawdown_and_duration_recovered():
    dd = m.max_drawdown(FIVE_TS, FIVE)
    # peak 120 (day 1), trough 96 (day 2): 96 / 120 - 1 = -20 %;
    # back at >= 120 first on day 4 (126.72): 3 days, 3 bars from the peak.
    assert dd.max_drawdown_pct == pytest.approx(20.0)
    assert (dd.peak_ms, dd.trough_ms, dd.recovery_ms) == (FIVE_TS[1], FIVE_TS[2], FIVE_TS[4])
    assert dd.duration_ms == 3 * DAY
    assert dd.duration_bars == 3
    assert dd.recovered is True
    assert m.drawdown_series(FIVE) == pytest.approx([0.0, 0.0, -20.0, -12.0, 0.0])


def test_max_drawdown_not_recovered_runs_to_the_end():
    dd = m.max_drawdown(FIVE_TS[:4], FIVE[:4])
    # 105.6 < 120 at the last point: duration is peak (day 1) to the end (day 3)
    assert dd.max_drawdown_pct == pytest.approx(20.0)
    assert dd.recovered is False and dd.recovery_ms is None
    assert dd.duration_ms == 2 * DAY and dd.duration_bars == 2


def test_drawdown_starts_at_the_last_visit_of_the_peak():
    values = np.array([100.0, 120.0, 110.0, 120.0, 90.0, 130.0])
    ts = T0 + HOUR * np.arange(6)
    dd = m.max_drawdown(ts, values)
    # 90 / 120 - 1 = -25 %; the fall to 90 starts at the second 120 (index 3),
    # recovers at index 5: 2 bars, 2 hours.
    assert dd.max_drawdown_pct == pytest.approx(25.0)
    assert dd.peak_ms == ts[3] and dd.trough_ms == ts[4] and dd.recovery_ms == ts[5]
    assert dd.duration_bars == 2 and dd.duration_ms == 2 * HOUR


def test_cagr_and_calmar():
    # 100 -> 121 over two 365-day years: sqrt(1.21) - 1 = 10 %
    assert m.cagr_pct(100.0, 121.0, 2 * MS_PER_YEAR) == pytest.approx(10.0)
    # half a year, +10 %: 1.1 ** 2 - 1 = 21 %
    assert m.cagr_pct(100.0, 110.0, MS_PER_YEAR // 2) == pytest.approx(21.0)
    assert m.cagr_pct(100.0, 0.0, MS_PER_YEAR) == -100.0
    assert m.cagr_pct(100.0, 110.0, 0) is None
    # +100 % in one hour annualises past the largest float: None, not inf
    assert m.cagr_pct(100.0, 200.0, HOUR) is None
    perf = m.curve_performance(FIVE_TS, FIVE, 365)
    # 4 days: 1.2672 ** (365 / 4) - 1, Calmar = that / 20
    expected = (1.2672 ** (365 / 4) - 1) * 100
    assert perf.cagr_pct == pytest.approx(expected)
    assert perf.calmar == pytest.approx(expected / 20.0)


def test_flat_equity_has_no_ratios_and_no_nan():
    ts = T0 + HOUR * np.arange(6)
    perf = m.curve_performance(ts, np.full(6, 1000.0), bars_per_year("1h"))
    assert perf.return_pct == 0.0
    assert perf.sharpe is None and perf.sortino is None and perf.calmar is None
    assert perf.volatility_pct == 0.0
    assert perf.cagr_pct == 0.0
    assert perf.drawdown == m.Drawdown(0.0, None, None, None, 0, 0, True)
    json.dumps(perf.__dict__ | {"drawdown": perf.drawdown.__dict__}, allow_nan=False)


def test_one_bar_and_rising_only_curves():
    # initial equity + one snapshot: a single return, sample std undefined
    one = m.curve_performance(np.array([T0, T0 + HOUR]), np.array([1000.0, 1010.0]), 8760)
    assert one.return_pct == pytest.approx(1.0)
    assert one.sharpe is None and one.volatility_pct is None
    # never below 0: no downside deviation, Sortino undefined (not infinite)
    rising = np.array([100.0, 101.0, 103.0, 104.0])
    r = m.bar_returns(rising)
    assert m.sortino_ratio(r, 365) is None
    assert m.sharpe_ratio(r, 365) is not None


def test_bar_returns_refuse_non_positive_equity():
    with pytest.raises(DataError):
        m.bar_returns(np.array([100.0, 0.0, 50.0]))


def _fill(symbol, side, price, amount, fee, ts):
    return {
        "symbol": symbol,
        "side": side,
        "price": price,
        "amount": amount,
        "fee": fee,
        "ts_ms": ts,
    }


# BTC: buy 1 @ 100 (fee 0.10), sell 0.4 @ 110 (0.044), sell 0.6 @ 90 (0.054):
#   gross 0.4 * 10 + 0.6 * -10 = -2.0, fees 0.198, net -2.198 (one trip, partial exits)
# ETH: buy 2 @ 10 (0.02), buy 2 @ 12 (0.024) -> avg 11; sell 4 @ 13 (0.052):
#   gross 4 * 2 = 8.0, fees 0.096, net 7.904
# BTC again: buy 0.5 @ 100 (0.05), sell 0.5 @ 120 (0.06): gross 10, net 9.89
# BTC: buy 0.1 @ 100 (0.01) stays open: no trip, fee counted in total fees
FILLS = [
    _fill("BTC/USDT", "buy", 100.0, 1.0, 0.10, T0 + 1 * HOUR),
    _fill("ETH/USDT", "buy", 10.0, 2.0, 0.02, T0 + 1 * HOUR),
    _fill("BTC/USDT", "sell", 110.0, 0.4, 0.044, T0 + 2 * HOUR),
    _fill("ETH/USDT", "buy", 12.0, 2.0, 0.024, T0 + 2 * HOUR),
    _fill("BTC/USDT", "sell", 90.0, 0.6, 0.054, T0 + 3 * HOUR),
    _fill("ETH/USDT", "sell", 13.0, 4.0, 0.052, T0 + 5 * HOUR),
    _fill("BTC/USDT", "buy", 100.0, 0.5, 0.05, T0 + 6 * HOUR),
    _fill("BTC/USDT", "sell", 120.0, 0.5, 0.06, T0 + 8 * HOUR),
    _fill("BTC/USDT", "buy", 100.0, 0.1, 0.01, T0 + 9 * HOUR),
]


def test_round_trips_with_partial_exits_and_scale_in():
    book = m.round_trips(list(reversed(FILLS)))  # order of the input does not matter
    assert [t.symbol for t in book.closed] == ["BTC/USDT", "ETH/USDT", "BTC/USDT"]
    btc, eth, btc2 = book.closed
    assert btc.pnl == pytest.approx(-2.198) and btc.gross_pnl == pytest.approx(-2.0)
    assert btc.fees == pytest.approx(0.198) and btc.fills == 3
    assert (btc.entry_ms, btc.exit_ms, btc.holding_ms) == (T0 + HOUR, T0 + 3 * HOUR, 2 * HOUR)
    # exit price = (0.4 * 110 + 0.6 * 90) / 1 = 98
    assert btc.entry_price == pytest.approx(100.0) and btc.exit_price == pytest.approx(98.0)
    assert btc.return_pct == pytest.approx(-2.198)  # -2.198 / 100 notional * 100
    assert (
        eth.pnl == pytest.approx(7.904)
        and eth.entry_price == pytest.approx(11.0)
        and eth.qty == 4.0
    )
    assert btc2.pnl == pytest.approx(9.89)
    assert book.open_qty == {"BTC/USDT": pytest.approx(0.1)}
    assert book.fees["BTC/USDT"] == pytest.approx(0.10 + 0.044 + 0.054 + 0.05 + 0.06 + 0.01)


def test_scale_in_after_partial_exit_uses_average_cost():
    # buy 1 @ 100, sell 0.5 @ 110 (+5), buy 0.5 @ 120 -> avg (0.5*100 + 0.5*120) = 110,
    # sell 1 @ 130 (+20): gross 25 = sells 185 - buys 160; no fees
    fills = [
        _fill("X/USDT", "buy", 100.0, 1.0, 0.0, 1),
        _fill("X/USDT", "sell", 110.0, 0.5, 0.0, 2),
        _fill("X/USDT", "buy", 120.0, 0.5, 0.0, 3),
        _fill("X/USDT", "sell", 130.0, 1.0, 0.0, 4),
    ]
    (trip,) = m.round_trips(fills).closed
    assert trip.pnl == pytest.approx(25.0) and trip.qty == pytest.approx(1.0)


def test_float_residue_closes_the_trip():
    # three thirds do not sum to exactly 0.3 in floating point
    fills = [_fill("X/USDT", "buy", 10.0, 0.1, 0.0, i) for i in range(3)]
    fills.append(_fill("X/USDT", "sell", 11.0, 0.3, 0.0, 5))
    book = m.round_trips(fills)
    assert len(book.closed) == 1 and book.open_qty == {}
    assert book.closed[0].pnl == pytest.approx(0.3)


def test_selling_more_than_held_is_a_data_error():
    with pytest.raises(DataError, match="exceeds"):
        m.round_trips(
            [_fill("X/USDT", "buy", 10.0, 1.0, 0.0, 1), _fill("X/USDT", "sell", 10.0, 2.0, 0.0, 2)]
        )
    with pytest.raises(DataError, match="side"):
        m.round_trips([_fill("X/USDT", "short", 10.0, 1.0, 0.0, 1)])


def test_trade_stats_by_hand():
    stats = m.trade_stats(m.round_trips(FILLS))
    assert (stats.trades, stats.wins, stats.losses) == (3, 2, 1)
    assert stats.win_rate_pct == pytest.approx(200 / 3)
    # gross profit 7.904 + 9.89 = 17.794, gross loss 2.198: 17.794 / 2.198 = 8.0955
    assert stats.gross_profit == pytest.approx(17.794) and stats.gross_loss == pytest.approx(2.198)
    assert stats.profit_factor == pytest.approx(17.794 / 2.198)
    # (17.794 - 2.198) / 3 = 5.198667
    assert stats.expectancy == pytest.approx(5.198667, abs=1e-6)
    assert stats.best_trade == pytest.approx(9.89) and stats.worst_trade == pytest.approx(-2.198)
    # holding 2 h, 4 h, 2 h -> mean 8/3 h
    assert stats.avg_holding_ms == round(8 * HOUR / 3)
    assert stats.total_fees == pytest.approx(0.198 + 0.096 + 0.11 + 0.01)
    assert stats.open_positions == 1


def test_profit_factor_without_losers_and_without_winners():
    winner = [_fill("X/USDT", "buy", 10.0, 1.0, 0.0, 1), _fill("X/USDT", "sell", 12.0, 1.0, 0.0, 2)]
    loser = [_fill("Y/USDT", "buy", 10.0, 1.0, 0.0, 1), _fill("Y/USDT", "sell", 9.0, 1.0, 0.0, 2)]
    flat = [_fill("Z/USDT", "buy", 10.0, 1.0, 0.0, 1), _fill("Z/USDT", "sell", 10.0, 1.0, 0.0, 2)]
    only_win = m.trade_stats(m.round_trips(winner + flat))
    assert only_win.profit_factor is None  # no losing trip: infinite ratio is reported as None
    assert only_win.gross_profit == pytest.approx(2.0)
    assert (only_win.wins, only_win.losses, only_win.win_rate_pct) == (
        1,
        0,
        50.0,
    )  # break-even is neither
    only_loss = m.trade_stats(m.round_trips(loser))
    assert only_loss.profit_factor == 0.0 and only_loss.win_rate_pct == 0.0


def test_zero_trades():
    stats = m.trade_stats(m.round_trips([]))
    assert stats.trades == 0 and stats.total_fees == 0.0 and stats.open_positions == 0
    for name in (
        "win_rate_pct",
        "profit_factor",
        "expectancy",
        "avg_holding_ms",
        "best_trade",
        "worst_trade",
    ):
        assert getattr(stats, name) is None, name


def test_per_symbol_rows():
    rows = m.per_symbol(m.round_trips(FILLS), ["ETH/USDT", "SOL/USDT"])
    assert [r.symbol for r in rows] == ["ETH/USDT", "SOL/USDT", "BTC/USDT"]
    eth, sol, btc = rows
    assert (eth.trades, eth.wins, eth.win_rate_pct) == (1, 1, 100.0)
    assert eth.net_pnl == pytest.approx(7.904) and eth.fees == pytest.approx(0.096)
    assert (sol.trades, sol.win_rate_pct, sol.net_pnl, sol.fees) == (0, None, 0.0, 0.0)
    assert btc.trades == 2 and btc.win_rate_pct == 50.0
    assert btc.net_pnl == pytest.approx(-2.198 + 9.89)
    assert btc.fees == pytest.approx(0.318)  # both trips and the open buy


def test_exposure_pct():
    assert m.exposure_pct(np.array([0.0, 5.0, 0.0, 10.0])) == 50.0
    assert m.exposure_pct(np.array([])) == 0.0


def test_daily_and_weekly_pnl_from_period_ends():
    # 2021-01-03 is a Sunday (ISO week 2020-W53), 2021-01-04 a Monday (2021-W01).
    sun = 1_609_632_000_000  # 2021-01-03 00:00 UTC
    ts = np.array(
        [sun + 10 * HOUR, sun + 23 * HOUR, sun + DAY + 5 * HOUR, sun + 2 * DAY + 1 * HOUR]
    )
    eq = np.array([1010.0, 1030.0, 1000.0, 1060.0])
    daily = m.period_pnl(ts, eq, 1000.0, "day")
    # 01-03 ends at 1030 (+30 from 1000); 01-04 ends 1000 (-30, -2.9126 %);
    # 01-05 ends 1060 (+60, +6 %)
    assert [d.period for d in daily] == ["2021-01-03", "2021-01-04", "2021-01-05"]
    assert [d.pnl for d in daily] == pytest.approx([30.0, -30.0, 60.0])
    assert [d.return_pct for d in daily] == pytest.approx([3.0, -30 / 1030 * 100, 6.0])
    assert daily[1].start_ms == sun + DAY and daily[1].end_ms == ts[2]
    weekly = m.period_pnl(ts, eq, 1000.0, "week")
    # week 53 ends at 1030 (+30); week 1 ends at 1060 (+30 from 1030)
    assert [(w.period, w.start_ms) for w in weekly] == [
        ("2020-W53", sun - 6 * DAY),
        ("2021-W01", sun + DAY),
    ]
    assert [w.pnl for w in weekly] == pytest.approx([30.0, 30.0])
    assert sum(d.pnl for d in daily) == pytest.approx(eq[-1] - 1000.0)
