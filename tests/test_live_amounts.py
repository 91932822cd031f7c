"""Exact quantities and fees in the live broker, on the loopback Binance emulator (real ccxt,
real HTTP): an order filled in several trades settles as filled however large it is, and a
commission is booked once, in the currency the exchange charged (quote, base or BNB), so
that the run's book moves exactly as the exchange account does."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigmax_cli.brokers.live import LiveBroker
from sigmax_cli.exchange.errors import RetryPolicy
from sigmax_cli.markets import from_ccxt
from sigmax_cli.model import OrderRequest
from sigmax_cli.portfolio import Portfolio, Position
from tests.support.binance_orders import connect, spot_exchange, spot_market

BIG = "BIG/USDT"  # a 1e-4-step market priced at a thousandth of a USDT: 1e8 units are 100,000 USDT
STEP = 0.0001


def make_broker(exchange, symbols, **kwargs):
    rules = {s: from_ccxt(exchange.markets[s], precision_mode=exchange.precisionMode) for s in symbols}
    return LiveBroker(exchange, rules, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02), **kwargs)


@pytest.fixture(scope="module")
def big(data_dir):
    """An emulator with the BIG/USDT market, a deep account and a broker on it (module-wide:
    the hypothesis test below runs many orders through one world)."""
    emu, account = spot_exchange(data_dir, [], commission=0.001,
                                 balances={"USDT": [1e12, 0.0], "BIG": [0.0, 0.0]},
                                 extra_markets=[spot_market("BIG", step="0.00010000", tick="0.00000001",
                                                            max_qty="9000000000.00000000")])
    account.prices["BIGUSDT"] = 0.002  # limit buys at 0.001 rest until the test fills them
    exchange = connect(emu)
    broker = make_broker(exchange, [BIG])
    broker.seed({"USDT": 1e12})
    yield broker, account
    exchange.close()
    emu.stop()


_ids = itertools.count(1)


def fill_in_three(broker, account, steps: int, cut1: int, cut2: int):
    """A resting 0.001-USDT limit buy of ``steps`` steps, filled by the exchange in three
    trades at the given step counts, then polled once. Returns the order and the fills."""
    cid = f"sx-big-{next(_ids):07d}"
    amount = float(f"{steps * STEP:.4f}")
    order = broker.submit(OrderRequest(BIG, "buy", "limit", amount, cid, 0.001, price=0.001), 0)
    assert order.status == "open" and order.amount == amount
    first, second = sorted((cut1, cut2))
    for part in (first, second - first, steps - second):
        if part:
            account.fill(cid, float(f"{part * STEP:.4f}"))
    fills = broker.poll(BIG).fills
    return order, fills


def test_a_1e8_unit_order_filled_in_three_trades_settles_as_filled(big):
    broker, account = big
    # 53,297,906.8556 + 44,639,522.6396 + 2,062,570.5048: their float sum is 100000000.00000001,
    # 1.5e-8 off 1e8 (an absolute 1e-9 epsilon left such an order "open" for the whole run)
    order, fills = fill_in_three(broker, account, 1_000_000_000_000, 532_979_068_556, 979_374_294_952)
    assert order.status == "filled" and order.filled == 1e8
    assert len(fills) == 3 and not broker.has_open_orders(BIG)
    received = sum(f.amount - f.fee for f in fills)  # the commission was taken in BIG
    assert {f.fee_currency for f in fills} == {"BIG"}
    assert broker.rules(BIG).same_amount(received, account.balances["BIG"][0])
    assert broker.rules(BIG).same_amount(broker.total("BIG"), account.balances["BIG"][0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.integers(min_value=10**10, max_value=10**12), cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_random_three_trade_fills_of_large_orders_settle_as_filled(big, steps, cuts):
    broker, account = big
    order, fills = fill_in_three(broker, account, steps, int(steps * cuts[0]), int(steps * cuts[1]))
    assert order.status == "filled" and not broker.has_open_orders(BIG)  # the engine may trade the symbol again
    assert broker.rules(BIG).same_amount(order.filled, order.amount)


# ---------------------------------------------------------------- fees in the currency charged
@pytest.fixture
def btc_at_100(data_dir):
    """BTC/USDT at 100 USDT (fills at that price), an account with 2 BTC, 1000 USDT and 1 BNB."""
    emu, account = spot_exchange(data_dir, [], commission=0.001,
                                 balances={"USDT": [1_000.0, 0.0], "BTC": [2.0, 0.0], "BNB": [1.0, 0.0]})
    account.prices["BTCUSDT"] = 100.0
    exchange = connect(emu)
    yield emu, account, exchange
    exchange.close()
    emu.stop()


def exchange_totals(account):
    return {asset: free + locked for asset, (free, locked) in account.balances.items()}


def moved(before, after):
    return {a: after.get(a, 0.0) - before.get(a, 0.0) for a in set(before) | set(after)}


def test_a_sell_charged_in_base_is_booked_once(btc_at_100):
    """Issue 14: sell 1 BTC at 100 with a 0.001 BTC fee. The exchange gives 100 USDT and takes
    1.001 BTC; the run's book and position must move by exactly that, the fee counted once."""
    emu, account, exchange = btc_at_100
    account.commission_asset = "base"
    broker = make_broker(exchange, ["BTC/USDT"])
    broker.seed({"USDT": 0.0, "BTC": 2.0})
    portfolio = Portfolio(broker.markets)
    portfolio.positions["BTC/USDT"] = Position("BTC/USDT", avg_price=90.0, opened_ms=0)
    portfolio.positions["BTC/USDT"].set_qty(2.0)
    book0, exch0 = {"USDT": 0.0, "BTC": 2.0}, exchange_totals(account)

    order = broker.submit(OrderRequest("BTC/USDT", "sell", "market", 1.0, "sx-fee-base-01", 100.0), 0)
    assert order.status == "filled"
    (fill,) = broker.poll("BTC/USDT").fills
    exch = moved(exch0, exchange_totals(account))
    assert exch["USDT"] == pytest.approx(100.0) and exch["BTC"] == pytest.approx(-1.001)
    book = moved(book0, {"USDT": broker.total("USDT"), "BTC": broker.total("BTC")})
    assert book["USDT"] == pytest.approx(exch["USDT"], abs=1e-9)  # not 99.9: the fee is not charged twice
    assert book["BTC"] == pytest.approx(exch["BTC"], abs=1e-9)
    assert (fill.amount, fill.fee, fill.fee_currency) == (1.0, 0.001, "BTC")  # in the currency charged
    # the engine's position and P&L from that fill agree with the account
    pos = portfolio.apply(fill)
    assert pos.qty == pytest.approx(2.0 - 1.001) and pos.realized_pnl == pytest.approx(100.0 - 90.0 * 1.001)


def test_a_buy_charged_in_base_is_booked_once(btc_at_100):
    emu, account, exchange = btc_at_100
    account.commission_asset = "base"
    broker = make_broker(exchange, ["BTC/USDT"])
    broker.seed({"USDT": 1_000.0})
    exch0 = exchange_totals(account)
    broker.submit(OrderRequest("BTC/USDT", "buy", "market", 1.0, "sx-fee-base-02", 100.0), 0)
    (fill,) = broker.poll("BTC/USDT").fills
    exch = moved(exch0, exchange_totals(account))
    assert exch["USDT"] == pytest.approx(-100.0) and exch["BTC"] == pytest.approx(0.999)
    assert broker.total("USDT") - 1_000.0 == pytest.approx(exch["USDT"], abs=1e-9)
    assert broker.total("BTC") == pytest.approx(exch["BTC"], abs=1e-12)
    assert (fill.amount, fill.fee, fill.fee_currency) == (1.0, 0.001, "BTC")


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_commission_in_bnb_is_booked_in_bnb_once(btc_at_100, side):
    emu, account, exchange = btc_at_100
    account.commission_asset, account.bnb_price = "BNB", 300.0
    broker = make_broker(exchange, ["BTC/USDT"])
    broker.seed({"USDT": 1_000.0, "BTC": 2.0})
    book0, exch0 = {"USDT": 1_000.0, "BTC": 2.0}, exchange_totals(account)
    broker.submit(OrderRequest("BTC/USDT", side, "market", 0.5, f"sx-fee-bnb-{side}", 100.0), 0)
    (fill,) = broker.poll("BTC/USDT").fills
    exch = moved(exch0, exchange_totals(account))
    sign = 1 if side == "buy" else -1
    assert exch["USDT"] == pytest.approx(-sign * 50.0) and exch["BTC"] == pytest.approx(sign * 0.5)
    assert exch["BNB"] == pytest.approx(-0.00016667)  # 0.1 % of 50 USDT in BNB at 300, to 8 decimals
    book = moved(book0, {a: broker.total(a) for a in ("USDT", "BTC", "BNB")})
    for asset in ("USDT", "BTC", "BNB"):
        assert book[asset] == pytest.approx(exch[asset], abs=1e-12), asset
    assert (fill.amount, fill.fee, fill.fee_currency) == (0.5, 0.00016667, "BNB")
    order = broker.get_order(f"sx-fee-bnb-{side}")
    assert order.fee == 0.0  # an order's fee is its quote value: a BNB fee's is not known here
