"""The notional limits compare exactly: an order sized exactly at ``max_order_notional``,
or that brings a position exactly to ``max_position_notional`` / ``max_total_notional``,
passes; one amount step (or one price tick) more is denied, at every magnitude. The old
comparison (float product against the limit plus an absolute 1e-9) failed both ways: the
float product of an amount on its step and a price on its tick rounds up past the limit by
more than 1e-9 once the limit is above ~1e7, and 1e-9 hides a real excess at tiny prices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from sigmax_cli.markets import MarketRules
from sigmax_cli.model import OrderRequest
from sigmax_cli.risk.base import RiskView
from sigmax_cli.risk.guard import build_guard
from sigmax_cli.risk.rules.order_notional import MaxOrderNotional
from sigmax_cli.risk.rules.position_notional import MaxPositionNotional
from sigmax_cli.settings import RiskSettings

VIEW = RiskView(1e18, 1e18, 1e18, 0)


def as_float(d: Decimal) -> float:
    """``d`` as a float whose repr names ``d`` exactly (the test only uses such numbers)."""
    f = float(d)
    assume(Decimal(repr(f)) == d)
    return f


def buy(amount: Decimal, price: Decimal, limit_price: bool = False) -> OrderRequest:
    p = as_float(price)
    return OrderRequest("X/USDT", "buy", "limit" if limit_price else "market", as_float(amount), "c", p,
                        price=p if limit_price else None)


# an amount on a step of 10**k base units and a price on a tick of 10**j quote, with at most
# 15 significant digits in their product, so that the limit itself is a float a user can write
steps = st.integers(-8, 3).map(lambda k: Decimal(1).scaleb(k))
ticks = st.integers(-8, 3).map(lambda j: Decimal(1).scaleb(j))


@settings(max_examples=400, deadline=None)
@given(step=steps, n=st.integers(1, 10**8 - 1), tick=ticks, m=st.integers(1, 10**7 - 1), limit_price=st.booleans())
@example(step=Decimal("0.01"), n=7, tick=Decimal(1), m=100_000, limit_price=False)  # 0.07 * 100000 > 7000 in float
@example(step=Decimal(1), n=98_765_432, tick=Decimal("0.01"), m=3_000_001, limit_price=False)  # ~3e12 quote
@example(step=Decimal("1e-8"), n=1, tick=Decimal("1e-8"), m=1, limit_price=False)  # 1e-16 quote
def test_an_order_at_exactly_the_limit_passes_and_one_step_or_tick_above_does_not(step, n, tick, m, limit_price):
    amount, price = n * step, m * tick
    limit = as_float(amount * price)
    rule = MaxOrderNotional(limit)
    assert rule.check_order(buy(amount, price, limit_price), VIEW) is None
    assert rule.check_order(buy(amount + step, price, limit_price), VIEW) is not None
    assert rule.check_order(buy(amount, price + tick, limit_price), VIEW) is not None
    per_symbol = MaxPositionNotional(limit, 1e300)
    assert per_symbol.check_order(buy(amount, price, limit_price), VIEW) is None
    assert per_symbol.check_order(buy(amount + step, price, limit_price), VIEW).rule == "max_position_notional"
    total = MaxPositionNotional(1e300, limit)
    assert total.check_order(buy(amount, price, limit_price), VIEW) is None
    assert total.check_order(buy(amount + step, price, limit_price), VIEW).rule == "max_total_notional"


@settings(max_examples=300, deadline=None)
@given(step=steps, n=st.integers(1, 10**7), tick=ticks, m=st.integers(1, 10**6),
       held=st.integers(0, 10**6), other=st.integers(0, 10**6))
def test_a_buy_that_brings_a_position_exactly_to_its_limit_passes(step, n, tick, m, held, other):
    """Positions as the view holds them (floats that name decimal values): held + order at
    exactly ``max_position_notional``, and everything at exactly ``max_total_notional``."""
    amount, price = n * step, m * tick
    held_d, other_d = held * tick, other * tick
    view = RiskView(1e18, 1e18, 1e18, 0, {"X/USDT": as_float(held_d), "Y/USDT": as_float(other_d)})
    per_symbol = as_float(held_d + amount * price)
    total = as_float(held_d + other_d + amount * price)
    rule = MaxPositionNotional(per_symbol, total)
    assert rule.check_order(buy(amount, price), view) is None
    denial = rule.check_order(buy(amount + step, price), view)
    assert denial is not None and denial.rule == "max_position_notional"
    denial = MaxPositionNotional(1e300, total).check_order(buy(amount + step, price), view)
    assert denial is not None and denial.rule == "max_total_notional"


@pytest.mark.parametrize(("limit", "price", "step"), [(5_000.0, 18_000.0, 1e-5), (7_000.0, 100_000.0, 0.01),
                                                      (2.5e9, 0.00001234, 1.0), (12_345_678.9, 0.3, 0.001)])
def test_the_engine_s_own_sizing_at_the_limit_passes_the_guard(limit, price, step):
    """The engine sizes a buy as ``amount_to_precision(limit / price)``: never refused by the
    limit it was sized to, and one step more always is."""
    rules = MarketRules("X/USDT", "X", "USDT", amount_step=step)
    amount = rules.amount_to_precision(limit / price)
    guard = build_guard(RiskSettings(max_order_notional=limit, max_position_notional=limit, max_total_notional=limit))
    at = OrderRequest("X/USDT", "buy", "market", amount, "c", price)
    assert guard.check(at, RiskView(1e18, 1e18, 1e18, 0)) is None
    above = OrderRequest("X/USDT", "buy", "market", float(Decimal(repr(amount)) + Decimal(repr(step))), "c", price)
    assert guard.check(above, RiskView(1e18, 1e18, 1e18, 0)).rule == "max_order_notional"
