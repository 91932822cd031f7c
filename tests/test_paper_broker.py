"""The paper broker's fill model on real candles and real Binance market rules."""

from __future__ import annotations

import random

import pytest

from sigmax_cli.brokers.paper import PaperBroker
from sigmax_cli.data.candles import load_candles
from sigmax_cli.errors import InsufficientFunds, OrderRejected
from sigmax_cli.markets import load_markets_file
from sigmax_cli.model import Bar, IllegalTransition, OrderRequest
from tests.conftest import FREQTRADE_1H

HOUR = 3_600_000


@pytest.fixture(scope="module")
def markets(data_dir):
    return load_markets_file(data_dir / "exchange_api" / "ccxt_static" / "binance_markets_spot_subset.json")


@pytest.fixture(scope="module")
def btc(data_dir):
    return load_candles(FREQTRADE_1H / "BTC_USDT-1h.json")


def bar_at(c, i, symbol="BTC/USDT"):
    return Bar(symbol, int(c.ts[i]), float(c.open[i]), float(c.high[i]), float(c.low[i]), float(c.close[i]),
               float(c.volume[i]), i, {})


def req(side, amount, cid, price=None, ref=20000.0, type_="market", tif="GTC", symbol="BTC/USDT"):
    return OrderRequest(symbol=symbol, side=side, type=type_ if price is None else "limit", amount=amount,
                        client_order_id=cid, reference_price=ref, price=price, time_in_force=tif)


def test_market_buy_fills_next_open_with_slippage_and_taker_fee(markets, btc):
    broker = PaperBroker({"USDT": 10_000.0}, markets, maker_fee=0.0005, taker_fee=0.001, slippage_bps=10,
                         participation=1.0)
    b0, b1 = bar_at(btc, 0), bar_at(btc, 1)
    order = broker.submit(req("buy", 0.0123456, "c1", ref=b0.close), now_ms=b0.ts_ms + HOUR)
    assert order.amount == 0.01234  # truncated to the 1e-05 step of BTC/USDT
    assert broker.on_bar(b0).fills == []  # submitted at b0's close: cannot fill inside b0
    update = broker.on_bar(b1)
    (fill,) = update.fills
    assert fill.price == pytest.approx(b1.open * 1.001)
    assert fill.fee == pytest.approx(fill.price * 0.01234 * 0.001)
    assert fill.liquidity == "taker"
    assert order.status == "filled"
    assert broker.total("BTC") == pytest.approx(0.01234)
    assert broker.total("USDT") == pytest.approx(10_000 - fill.price * 0.01234 - fill.fee)
    assert broker.balances()["USDT"].used == 0


def test_limit_orders_fill_only_when_traded_through_as_maker(markets, btc):
    broker = PaperBroker({"USDT": 10_000.0}, markets, maker_fee=0.0002, taker_fee=0.001, participation=1.0)
    b0 = bar_at(btc, 0)
    # find a later bar whose low is below b0.close * 0.99
    limit = round(b0.close * 0.99, 2)
    idx = next(i for i in range(1, len(btc)) if btc.low[i] <= limit)
    order = broker.submit(req("buy", 0.01, "l1", price=limit), now_ms=b0.ts_ms + HOUR)
    for i in range(1, idx):
        assert broker.on_bar(bar_at(btc, i)).fills == []
    (fill,) = broker.on_bar(bar_at(btc, idx)).fills
    assert fill.price == pytest.approx(min(limit, btc.open[idx]))
    assert fill.liquidity == ("maker" if btc.open[idx] > limit else "taker")
    assert order.status == "filled"


def test_participation_cap_gives_partial_fills_over_several_bars(markets, btc):
    broker = PaperBroker({"USDT": 10_000_000.0}, markets, participation=0.01)
    b0 = bar_at(btc, 0)
    amount = round(float(btc.volume[1]) * 0.025, 5)  # 2.5 % of the next bar's volume
    order = broker.submit(req("buy", amount, "p1", ref=b0.close), now_ms=b0.ts_ms + HOUR)
    (first,) = broker.on_bar(bar_at(btc, 1)).fills
    assert first.amount <= 0.01 * btc.volume[1] + 1e-9
    assert order.status == "partially_filled"
    i = 2
    while order.is_active:
        broker.on_bar(bar_at(btc, i))
        i += 1
    assert order.status == "filled"
    assert order.filled == pytest.approx(order.amount)
    assert broker.balances()["USDT"].used == pytest.approx(0, abs=1e-6)


def test_ioc_remainder_expires(markets, btc):
    broker = PaperBroker({"USDT": 10_000_000.0}, markets, participation=0.01)
    b0 = bar_at(btc, 0)
    amount = round(float(btc.volume[1]) * 0.05, 5)
    order = broker.submit(req("buy", amount, "ioc", ref=b0.close, tif="IOC"), now_ms=b0.ts_ms + HOUR)
    broker.on_bar(bar_at(btc, 1))
    assert order.status == "expired"
    assert 0 < order.filled < order.amount
    assert broker.balances()["USDT"].used == 0


def test_refusals(markets, btc):
    broker = PaperBroker({"USDT": 100.0}, markets)
    with pytest.raises(OrderRejected, match="minimum notional"):
        broker.submit(req("buy", 0.0001, "r1", ref=20_000), now_ms=0)  # 2 USDT < 5 USDT
    with pytest.raises(OrderRejected, match="rounds to zero"):
        broker.submit(req("buy", 0.000001, "r2", ref=20_000), now_ms=0)
    with pytest.raises(InsufficientFunds):
        broker.submit(req("buy", 0.01, "r3", ref=20_000), now_ms=0)  # 200 USDT > 100 free
    with pytest.raises(InsufficientFunds):
        broker.submit(req("sell", 0.01, "r4", ref=20_000), now_ms=0)  # no BTC held
    broker.submit(req("buy", 0.001, "ok", ref=20_000), now_ms=0)
    with pytest.raises(OrderRejected, match="already used"):
        broker.submit(req("buy", 0.001, "ok", ref=20_000), now_ms=0)
    assert broker.free("USDT") >= 0


def test_cancel_releases_reservation_and_final_orders_cannot_move(markets):
    broker = PaperBroker({"USDT": 1000.0}, markets)
    order = broker.submit(req("buy", 0.01, "x", price=20_000), now_ms=0)
    assert broker.free("USDT") < 1000
    broker.cancel("x", now_ms=1)
    assert broker.free("USDT") == pytest.approx(1000)
    assert order.status == "cancelled"
    with pytest.raises(OrderRejected):
        broker.cancel("x", now_ms=2)
    with pytest.raises(IllegalTransition):
        order.move("filled", 3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_trading_never_makes_a_balance_negative_and_always_charges_fees(markets, btc, seed):
    """Random market and limit orders, cancels and IOCs over 1,500 real bars: after every
    bar no balance (free or used) is negative, every fill paid a positive fee at the
    configured rate, and the quote ledger balances exactly: start - buys - fees + sells."""
    rng = random.Random(seed)
    maker, taker = 0.0004, 0.001
    broker = PaperBroker({"USDT": 5_000.0}, markets, maker_fee=maker, taker_fee=taker, slippage_bps=5,
                         participation=0.02)
    spent = received = fees = 0.0
    bought = sold = 0.0
    cid = 0
    for i in range(1, 1500):
        bar = bar_at(btc, i)
        for fill in broker.on_bar(bar).fills:
            assert fill.fee > 0
            rate = maker if fill.liquidity == "maker" else taker
            assert fill.fee == pytest.approx(fill.price * fill.amount * rate)
            fees += fill.fee
            if fill.side == "buy":
                spent += fill.notional
                bought += fill.amount
            else:
                received += fill.notional
                sold += fill.amount
        for book in broker.balances().values():
            assert book.free >= 0 and book.used >= 0
        assert broker.open_order_count == len(broker.open_orders())
        action = rng.random()
        cid += 1
        try:
            if action < 0.35:
                broker.submit(req("buy", rng.uniform(0.0002, 0.2), f"o{cid}", ref=bar.close,
                                  tif=rng.choice(["GTC", "IOC"])), bar.ts_ms + HOUR)
            elif action < 0.6:
                broker.submit(req("sell", rng.uniform(0.0002, 0.2), f"o{cid}", ref=bar.close), bar.ts_ms + HOUR)
            elif action < 0.8:
                side = rng.choice(["buy", "sell"])
                px = bar.close * (1 + rng.uniform(-0.02, 0.02))
                broker.submit(req(side, rng.uniform(0.0002, 0.1), f"o{cid}", price=px), bar.ts_ms + HOUR)
            elif broker.open_orders():
                broker.cancel(rng.choice(broker.open_orders()).client_order_id, bar.ts_ms + HOUR)
        except OrderRejected:
            pass
    assert fees > 0 and bought > 0 and sold > 0
    assert broker.total("USDT") == pytest.approx(5_000.0 - spent - fees + received, rel=1e-9)
    assert broker.total("BTC") == pytest.approx(bought - sold, abs=1e-9)
