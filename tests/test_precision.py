"""Exact quantities (issue 14): precision in all three ccxt modes, step comparisons, the
paper broker's funds, and values through the ledger.

The table cases are freqtrade's own (``tests/exchange/test_exchange_utils.py``,
``test_amount_to_precision`` / ``test_price_to_precision``), whose expected values are
what ccxt's ``decimal_to_precision`` gives; the property tests then cover steps from 1e-8 to
1000 and amounts from 1e-8 to 1e12 in all three modes.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigmax_cli.brokers.paper import PaperBroker
from sigmax_cli.errors import ConfigError, OrderRejected
from sigmax_cli.ledger import Ledger
from sigmax_cli.markets import (
    DECIMAL_PLACES,
    SIGNIFICANT_DIGITS,
    TICK_SIZE,
    MarketRules,
    from_ccxt,
    load_markets_file,
    to_decimal,
)
from sigmax_cli.model import Bar, OrderRequest

DP, SD, TS = DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE


def rules_for(mode: int, precision, price_precision=None, **kw) -> MarketRules:
    """A market in ``mode`` with ccxt ``precision`` for amounts (and prices)."""
    market = {"symbol": "X/USDT", "base": "X", "quote": "USDT",
              "precision": {"amount": precision, "price": precision if price_precision is None else price_precision}}
    return from_ccxt(market, precision_mode=mode, **kw)


# freqtrade tests/exchange/test_exchange_utils.py::test_amount_to_precision
@pytest.mark.parametrize("amount,mode,precision,expected", [
    (2.34559, DP, 4, 2.3455), (2.34559, DP, 5, 2.34559), (2.34559, DP, 3, 2.345), (2.9999, DP, 3, 2.999),
    (2.9909, DP, 3, 2.99), (2.9909, DP, 0, 2), (29991.5555, DP, 0, 29991), (29991.5555, DP, -1, 29990),
    (29991.5555, DP, -2, 29900),
    (2.34559, SD, 4, 2.345), (2.34559, SD, 5, 2.3455), (2.34559, SD, 3, 2.34), (2.9999, SD, 3, 2.99),
    (2.9909, SD, 3, 2.99), (7.7723e-06, SD, 5, 7.7723e-06), (7.7723e-06, SD, 3, 7.77e-06), (7.7723e-06, SD, 1, 7e-06),
    (2.34559, TS, 0.0001, 2.3455), (2.34559, TS, 1e-05, 2.34559), (2.34559, TS, 0.001, 2.345),
    (2.9999, TS, 0.001, 2.999), (2.9909, TS, 0.001, 2.99), (2.9909, TS, 0.005, 2.99), (2.9999, TS, 0.005, 2.995),
])
def test_amount_to_precision_matches_freqtrades_table(amount, mode, precision, expected):
    assert rules_for(mode, precision).amount_to_precision(amount) == expected


# freqtrade tests/exchange/test_exchange_utils.py::test_price_to_precision (ROUND cases)
@pytest.mark.parametrize("price,mode,precision,expected", [
    (2.34559, DP, 4, 2.3456), (2.34559, DP, 5, 2.34559), (2.34559, DP, 3, 2.346), (2.9999, DP, 3, 3.0),
    (2.9909, DP, 3, 2.991), (2.345600000000001, DP, 4, 2.3456), (2.345551, DP, 4, 2.3456), (2.49, DP, 0, 2.0),
    (2.51, DP, 0, 3.0),
    (2.34559, TS, 0.0001, 2.3456), (2.34559, TS, 0.00001, 2.34559), (2.34559, TS, 0.001, 2.346),
    (2.9999, TS, 0.001, 3.0), (2.9909, TS, 0.001, 2.991), (2.9909, TS, 0.005, 2.99), (2.9973, TS, 0.005, 2.995),
    (2.9977, TS, 0.005, 3.0), (234.43, TS, 0.5, 234.5), (234.53, TS, 0.5, 234.5), (0.891534, TS, 0.0001, 0.8915),
    (64968.89, TS, 0.01, 64968.89), (0.000000003483, TS, 1e-12, 0.000000003483),
])
def test_price_to_precision_rounds_as_ccxt(price, mode, precision, expected):
    assert rules_for(mode, precision).price_to_precision(price) == expected


def test_the_reported_cases():
    btc = rules_for(TS, 1e-8, 1.0)
    # "truncation" used to round up at 1e-8 steps above ~10,000 units
    assert btc.amount_to_precision(26082.42044866) == 26082.42044866
    assert btc.amount_to_precision(26082.420448669) == 26082.42044866
    assert btc.price_to_precision(62540.5) == 62541.0  # half away from zero, as ccxt (was 62540)
    whole = rules_for(TS, 1, 1)  # step 1 and tick 1 stay 1 and 1 (were guessed to be 0.1 / 0.1)
    assert (whole.amount_step, whole.price_tick, whole.amount_to_precision(12.9)) == (1.0, 1.0, 12.0)
    zero_dp = rules_for(DP, 0, 2)  # 0 decimal places: whole units, not a division by zero
    assert (zero_dp.amount_to_precision(12.9), zero_dp.price_to_precision(1.234)) == (12.0, 1.23)
    with pytest.raises(ValueError, match="positive number in TICK_SIZE mode"):
        rules_for(TS, 0, 0.01)


def test_significant_digits_step_depends_on_magnitude():
    r = rules_for(SD, 4)
    assert r.amount_to_precision(12345.6) == 12340 and r.amount_to_precision(0.0123456) == 0.01234
    assert r.amount_step_at(12345.6) == Decimal(10) and r.amount_step_at(0.0123456) == Decimal("0.00001")
    assert r.same_amount(12346, 12340) is False and r.same_amount(12344, 12340) is True  # half a step of 10


def test_a_markets_file_without_precision_mode_is_refused_not_guessed(tmp_path, data_dir):
    bare = {"A/USDT": {"symbol": "A/USDT", "base": "A", "quote": "USDT", "precision": {"amount": 1, "price": 1}}}
    path = tmp_path / "markets.json"
    path.write_text(json.dumps(bare))
    with pytest.raises(ConfigError) as err:
        load_markets_file(path)
    assert "has no precisionMode" in err.value.sentence() and "sigmax data download" in err.value.sentence()
    path.write_text(json.dumps({"A/USDT": {**bare["A/USDT"], "precisionMode": DP}}))
    assert load_markets_file(path)["A/USDT"].amount_step == 0.1  # 1 decimal place, now said, not guessed
    # ccxt's own static binance markets carry Binance's filters: their steps are tick sizes by definition
    real = load_markets_file(data_dir / "exchange_api" / "ccxt_static" / "binance_markets_spot_subset.json")
    assert real["BTC/USDT"].precision_mode == TICK_SIZE and real["BTC/USDT"].amount_step == 1e-05


# ------------------------------------------------------------------ properties
TICKS = [float(f"{m}e{k}") for k in range(-8, 4) for m in (1, 2, 5)]  # as exchanges state them: "5e-06"
AMOUNTS = st.floats(min_value=1e-8, max_value=1e12, allow_nan=False, allow_infinity=False)


@st.composite
def markets(draw) -> MarketRules:
    mode = draw(st.sampled_from([TS, DP, SD]))
    if mode == TS:
        return rules_for(TS, draw(st.sampled_from([t for t in TICKS if t <= 1000])), 0.01)
    if mode == DP:
        return rules_for(DP, draw(st.integers(min_value=-3, max_value=8)), 2)
    return rules_for(SD, draw(st.integers(min_value=1, max_value=12)), 5)


@settings(max_examples=600, deadline=None)
@given(markets(), AMOUNTS)
def test_truncation_never_exceeds_its_input_and_is_less_than_one_step_below(rules, amount):
    truncated = rules.amount_to_precision(amount)
    exact_in, exact_out = to_decimal(amount), rules.amount_to_decimal(amount)
    assert truncated <= amount  # as floats, never above
    assert exact_out <= exact_in or float(exact_out) == amount  # or the float *is* that multiple of the step
    assert exact_in - exact_out < rules.amount_step_at(amount)
    assert rules.amount_to_precision(truncated) == truncated  # idempotent
    assert rules.covers(amount, truncated) and rules.covers(truncated, truncated)


@settings(max_examples=300, deadline=None)
@given(markets(), st.lists(AMOUNTS, min_size=1, max_size=6))
def test_selling_the_whole_position_the_broker_reports_is_always_accepted(rules, buys):
    """A holding built from fills of whole steps, then "sell what free() says": accepted,
    filled in full, nothing stranded. No minimums, so only precision and funds can refuse."""
    lots = [rules.amount_to_decimal(b) for b in buys]
    lots = [lot for lot in lots if lot > 0] or [rules.amount_step_at(1)]
    broker = PaperBroker({"USDT": 0.0}, {"X/USDT": rules}, slippage_bps=0.0, participation=1.0)
    for lot in lots:
        broker._credit("X", lot)  # the broker's own booking path of a buy fill's base
    held = broker.free("X")
    amount = rules.amount_to_precision(held)
    order = broker.submit(OrderRequest("X/USDT", "sell", "market", amount, "c1", reference_price=1.0, reduce_only=True),
                          0)
    bar = Bar("X/USDT", 0, 1.0, 1.0, 1.0, 1.0, float(sum(lots)) * 2, 0, {})
    fill = broker.on_bar(bar).fills[0]
    assert order.status == "filled" and rules.covers(fill.amount, amount)
    left = broker.total_exact("X")
    assert left >= 0
    if rules.precision_mode == SIGNIFICANT_DIGITS:  # a sum of lots may need more digits than one order has
        assert left < rules.amount_step_at(held)
    else:
        assert rules.is_flat(left)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-8, max_value=1e12, allow_nan=False, allow_infinity=False),
       st.sampled_from([1e-8, 1e-5, 0.01, 1.0, 1000.0]), st.sampled_from([1e-8, 0.01, 1.0]))
def test_funds_check_is_in_steps_never_an_epsilon(held, step, tick):
    """A sell of exactly the truncated free balance passes; one step more is refused."""
    rules = rules_for(TS, step, tick)
    holding = rules.amount_to_decimal(held)
    if holding <= 0:
        return
    broker = PaperBroker({"USDT": 0.0, "X": holding}, {"X/USDT": rules})
    broker.submit(OrderRequest("X/USDT", "sell", "market", float(holding), "ok", 1.0, reduce_only=True), 0)
    broker2 = PaperBroker({"USDT": 0.0, "X": holding}, {"X/USDT": rules})
    more = float(holding + 2 * to_decimal(step))
    if to_decimal(more) - holding > to_decimal(step):  # representable as a float at all
        with pytest.raises(OrderRejected, match="needs"):
            broker2.submit(OrderRequest("X/USDT", "sell", "market", more, "no", 1.0, reduce_only=True), 0)


@pytest.mark.postgres
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(markets(), AMOUNTS, st.floats(min_value=1e-12, max_value=1e7)), min_size=1,
                       max_size=20))
def test_amounts_and_prices_round_trip_through_the_ledger_exactly(ledger_url, values):
    with Ledger(ledger_url) as ledger:
        run_id = f"rt-{abs(hash(tuple((v[1], v[2]) for v in values))) % 10**12}"
        if any(r.run_id == run_id for r in ledger.list_runs(1000)):
            return
        ledger.start_run(run_id=run_id, mode="paper", profile="p", exchange="binance", strategy="s", params={},
                         symbols=["X/USDT"], timeframe="1h", data_files=[], initial_equity=1.0)
        written = []
        for i, (rules, amount, price) in enumerate(values):
            row = {"run_id": run_id, "client_order_id": f"c{i}", "trade_id": str(i), "symbol": "X/USDT",
                   "side": "buy", "price": rules.price_to_precision(price), "amount": rules.amount_to_precision(amount),
                   "fee": 0.0, "fee_currency": "USDT", "liquidity": "taker", "ts_ms": i}
            ledger.record_fill(row)
            written.append((row["price"], row["amount"]))
        ledger.flush()
        back = [(r["price"], r["amount"]) for r in ledger.rows("fills", run_id, order_by=("ts_ms",))]
    assert back == written
