"""Reconciliation of a live run with the exchange, on the Binance emulator: orders an earlier
run left behind (found filled, still open, never placed), orders the ledger never heard of
(sigmax's and foreign ones), trades, balances, and a run whose process died."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from sigmax_cli.brokers.base import Order
from sigmax_cli.data.candles import load_candles
from sigmax_cli.ledger import Ledger
from sigmax_cli.live import LiveOptions, prepare_live, run_live
from tests.conftest import DATA
from tests.support.binance_emulator import ManualClock
from tests.support.binance_orders import connect, spot_exchange
from tests.test_live_run import ledger_rows, settings

DEAD_RUN = "testnet-20210101T000000-dead00"


class Idle:
    """A strategy that never trades: these tests watch what reconciliation does alone."""

    name, warmup = "idle", 2

    def features(self, candles):
        return {}

    def on_bar(self, bar, position):
        return None

    def params(self):
        return {"name": self.name}


@pytest.fixture(scope="module")
def btc():
    full = load_candles(DATA / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07" / "BTC_USDT-5m.json")
    return full.slice(None, int(full.ts[4000]))


@pytest.fixture
def world(data_dir, btc, ledger_url, tmp_path):
    clock = ManualClock(int(btc.ts[3000]) + 1000)
    emu, account = spot_exchange(data_dir, [btc], clock=clock.now_ms,
                                 balances={"USDT": [10_000.0, 0.0], "BTC": [0.0, 0.0], "ETH": [0.0, 0.0]})
    exchange = connect(emu)
    yield emu, account, clock, exchange, ledger_url
    exchange.close()
    emu.stop()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leave_a_dead_run(url, orders):
    """A run that was killed: status running, its pid gone, ``orders`` in the ledger."""
    from sqlalchemy import update

    from sigmax_cli.ledger import schema

    with Ledger(url) as ledger:
        ledger.start_run(run_id=DEAD_RUN, mode="testnet", profile="conservative", exchange="binance",
                         strategy="rules", params={}, symbols=["BTC/USDT"], timeframe="5m", data_files=[],
                         initial_equity=10_000.0)
        for order in orders:
            ledger.record_order(order.record(DEAD_RUN))
        ledger.flush()
        with ledger.engine.begin() as conn:
            conn.execute(update(schema.runs).where(schema.runs.c.run_id == DEAD_RUN).values(pid=dead_pid()))


def ledger_order(cid, status, created_ms, kind="market", price=None, exchange_id=None, amount=0.01):
    return Order(cid, "BTC/USDT", "buy", kind, amount, price, "GTC", False, created_ms, created_ms, status=status,
                 exchange_order_id=exchange_id)


def test_start_resolves_adopts_rejects_recovers_and_cancels(world, tmp_path):
    emu, account, clock, exchange, url = world
    now = clock.now_ms()
    # what the exchange holds: the dead run's orders and someone's manual order
    exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "sx-dead-0000001"})
    resting = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 10_000.0, {"clientOrderId": "sx-dead-0000002"})
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 11_000.0, {"clientOrderId": "sx-dead-0000004"})
    exchange.create_order("BTC/USDT", "market", "buy", 0.02, None, {"clientOrderId": "sx-dead-0000005"})
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 9_000.0, {"clientOrderId": "manual-order-1"})
    # what the ledger knew when the run died: 1 sent (answer lost), 2 open, 3 never sent
    leave_a_dead_run(url, [
        ledger_order("sx-dead-0000001", "new", now - 1000),
        ledger_order("sx-dead-0000002", "open", now - 1000, "limit", 10_000.0, str(resting["id"])),
        ledger_order("sx-dead-0000003", "new", now - 3_600_000),
    ])
    s = settings(tmp_path, emu, ledger_url=url)
    plan = prepare_live(s, LiveOptions(max_ticks=3))
    plan.strategy = Idle()
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)

    start = result.reconciliation["start"]
    assert start["failed_runs"] == [DEAD_RUN]
    assert start["resolved"] == {"sx-dead-0000001": "filled", "sx-dead-0000005": "filled"}
    assert sorted(start["adopted"]) == ["sx-dead-0000002", "sx-dead-0000003", "sx-dead-0000004"]
    assert start["cancelled"] == ["manual-order-1"]
    assert [o["status"] for o in account.orders.values() if o["clientOrderId"] == "manual-order-1"] == ["CANCELED"]
    rows = {r["client_order_id"]: r for r in ledger_rows(url, "orders")}
    assert rows["sx-dead-0000001"]["status"] == "filled" and rows["sx-dead-0000001"]["run_id"] == DEAD_RUN
    assert rows["sx-dead-0000002"]["status"] == "open"
    assert rows["sx-dead-0000003"]["status"] == "rejected" and "never reached" in rows["sx-dead-0000003"]["reason"]
    assert rows["sx-dead-0000004"]["status"] == "open" and rows["sx-dead-0000004"]["run_id"] == result.run_id
    assert rows["sx-dead-0000005"]["status"] == "filled"
    fills = ledger_rows(url, "fills")
    assert sorted(f["trade_id"] for f in fills) == sorted(str(t["id"]) for t in account.trades)
    assert {f["run_id"] for f in fills if f["client_order_id"] == "sx-dead-0000001"} == {DEAD_RUN}
    runs = {r["run_id"]: r for r in ledger_rows(url, "runs")}
    assert runs[DEAD_RUN]["status"] == "failed"
    # the 0.03 BTC those orders bought is carried into the new run (net of the commission)
    carried = 0.03 * 0.999
    price = account.price("BTCUSDT")
    assert runs[result.run_id]["initial_equity"] == pytest.approx(
        account.balances["USDT"][0] + account.balances["USDT"][1] + carried * price, rel=1e-3)
    assert len({o["clientOrderId"] for o in account.orders.values()}) == len(account.orders)  # nothing resent


def test_adopted_orders_fill_into_the_run_and_unknown_ones_are_adopted_by_setting(world, tmp_path):
    emu, account, clock, exchange, url = world
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 9_000.0, {"clientOrderId": "manual-order-2"})
    s = settings(tmp_path, emu, ledger_url=url, live={"unknown_orders": "adopt"})
    plan = prepare_live(s, LiveOptions(max_ticks=4))
    plan.strategy = Idle()
    ticks = {"n": 0}

    def fill_it(_seconds):
        ticks["n"] += 1
        if ticks["n"] == 2:
            account.fill("manual-order-2", 0.004)

    clock.on_sleep = fill_it
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)
    assert result.reconciliation["start"]["adopted"] == ["manual-order-2"]
    assert result.summary.fills == 1
    fills = ledger_rows(url, "fills", f"where run_id = '{result.run_id}'")
    assert [(f["client_order_id"], f["amount"], f["fee_currency"]) for f in fills] == [("manual-order-2", 0.004, "BTC")]
    assert fills[0]["fee"] == pytest.approx(0.004 * 0.001)  # the commission, once, in the BTC it was taken in
    rows = {r["client_order_id"]: r for r in ledger_rows(url, "orders")}
    assert rows["manual-order-2"]["status"] == "partially_filled" and rows["manual-order-2"]["filled"] == 0.004


def test_periodic_reconciliation_cancels_a_new_foreign_order_and_reports_missing_coins(world, tmp_path):
    emu, account, clock, exchange, url = world
    s = settings(tmp_path, emu, ledger_url=url, live={"reconcile_every_ticks": 3})
    plan = prepare_live(s, LiveOptions(max_ticks=8))
    from tests.test_live_run import FlipStrategy

    plan.strategy = FlipStrategy(every=1000)  # buys once (at a bar divisible by 1000), then sells
    ticks = {"n": 0}

    def meddle(_seconds):
        ticks["n"] += 1
        if ticks["n"] == 2:
            exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 9_000.0, {"clientOrderId": "manual-order-3"})
            with account.lock:
                account.balances["USDT"][0] -= 9_000.0  # someone withdrew most of the quote

    clock.on_sleep = meddle
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)
    events = ledger_rows(url, "events", f"where run_id = '{result.run_id}'")
    kinds = [e["kind"] for e in events]
    assert "reconcile.cancelled_unknown" in kinds
    assert [o["status"] for o in account.orders.values() if o["clientOrderId"] == "manual-order-3"] == ["CANCELED"]
    critical = [e for e in events if e["kind"] == "reconcile.discrepancy"]
    assert len(critical) == 1 and critical[0]["level"] == "critical" and "USDT" in critical[0]["message"]
