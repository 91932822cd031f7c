"""Reconciliation of a live run with the exchange, on the Binance emulator: orders an earlier
run left behind (found filled, still open, never placed), orders the ledger never heard of
(sigmax's and foreign ones), trades, balances, and a run whose process died."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.ledger import Ledger
from sigmax_cli.live import LiveOptions, prepare_live, run_live
from sigmax_cli.model import Order
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


def ledger_order(cid, status, created_ms, kind="market", price=None, exchange_id=None, amount=0.01, filled=0.0):
    return Order(cid, "BTC/USDT", "buy", kind, amount, price, "GTC", False, created_ms, created_ms, status=status,
                 exchange_order_id=exchange_id, filled=filled)


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
    assert start["discrepancies"] == []  # everything the exchange holds is accounted for
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
    assert runs[DEAD_RUN]["status"] == "lost"
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


# ---------------------------------------------------------------- both directions
def ledger_fill(cid, trade, price=None):
    """The ledger row a run wrote for one emulator trade (0.1 % commission in BTC on a buy)."""
    from sigmax_cli.model import Fill

    px = price if price is not None else float(trade["price"])
    return Fill(cid, "BTC/USDT", "buy", px, float(trade["qty"]), float(trade["commission"]), "BTC", "taker",
                int(trade["time"]), trade_id=str(trade["id"]))


def discrepancy_events(url, run_id):
    return [e for e in ledger_rows(url, "events", f"where run_id = '{run_id}'") if e["kind"] == "reconcile.discrepancy"]


def test_start_reports_a_duplicate_exchange_fill_the_ledger_lacks(world, tmp_path):
    """Issue 15 item 11, after the fact: the exchange filled two buys under one client order
    id, the ledger holds one. The next run's reconciliation must say so: the second order,
    its trade, and the BTC the ledger does not account for."""
    emu, account, clock, exchange, url = world
    now = clock.now_ms()
    first = exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "sx-dead-0000007"})
    second = exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "sx-dead-0000007"})
    assert first["id"] != second["id"] and len(account.trades) == 2  # the duplicate the exchange made
    leave_a_dead_run(url, [ledger_order("sx-dead-0000007", "filled", now - 1000, exchange_id=str(first["id"]),
                                        filled=0.01)])
    with Ledger(url) as ledger:
        ledger.record_fill(ledger_fill("sx-dead-0000007", account.trades[0]).record(DEAD_RUN))
        ledger.flush()
    s = settings(tmp_path, emu, ledger_url=url)
    plan = prepare_live(s, LiveOptions(max_ticks=2))
    plan.strategy = Idle()
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)

    found = result.reconciliation["start"]["discrepancies"]
    second_id, second_trade = str(second["id"]), str(account.trades[1]["id"])
    assert any("second BTC/USDT order with client order id sx-dead-0000007" in d and second_id in d for d in found)
    assert any(f"trade {second_trade}" in d and "the ledger lacks" in d for d in found)
    assert len(found) == 2  # the ledger's own order and trade match the exchange
    events = discrepancy_events(url, result.run_id)
    assert len(events) >= 3 and {e["level"] for e in events} >= {"critical"}
    # and the balance: the exchange holds the second buy's BTC beside the ledger's position
    assert any("holds" in w and "not the ledger's" in w for w in result.warnings)
    assert len(account.orders) == 2  # reconciliation reports; it never sends or adopts the duplicate


def test_start_reports_a_ledger_fill_the_exchange_does_not_have(world, tmp_path):
    emu, account, clock, exchange, url = world
    now = clock.now_ms()
    placed = exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "sx-dead-0000008"})
    leave_a_dead_run(url, [ledger_order("sx-dead-0000008", "filled", now - 1000, exchange_id=str(placed["id"]),
                                        amount=0.02, filled=0.02)])
    phantom = {**account.trades[0], "id": 999_999, "time": account.trades[0]["time"] + 1}
    with Ledger(url) as ledger:
        for trade in (account.trades[0], phantom):
            ledger.record_fill(ledger_fill("sx-dead-0000008", trade).record(DEAD_RUN))
        ledger.flush()
    s = settings(tmp_path, emu, ledger_url=url)
    plan = prepare_live(s, LiveOptions(max_ticks=2))
    plan.strategy = Idle()
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)

    found = result.reconciliation["start"]["discrepancies"]
    assert any("fill 999999" in d and "the exchange does not have" in d for d in found)
    assert any("executed 0.01 on the exchange but 0.02 in the ledger" in d for d in found)
    # the ledger's position (two fills) is more than the account holds: cut to the balance, reported
    assert any("exceeds the exchange balance" in w for w in result.warnings)
    assert len(discrepancy_events(url, result.run_id)) >= 2


def test_periodic_reconciliation_reports_an_exchange_fill_the_run_did_not_make(world, tmp_path):
    emu, account, clock, exchange, url = world
    s = settings(tmp_path, emu, ledger_url=url, live={"reconcile_every_ticks": 3})
    plan = prepare_live(s, LiveOptions(max_ticks=8))
    plan.strategy = Idle()
    ticks = {"n": 0}

    def meddle(_seconds):
        ticks["n"] += 1
        if ticks["n"] == 2:  # a sigmax client order id the ledger never heard of, filled at once
            exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "sx-ghost-0000001"})

    clock.on_sleep = meddle
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)
    events = discrepancy_events(url, result.run_id)
    messages = [e["message"] for e in events]
    trade_id = str(account.trades[0]["id"])
    assert any(f"trade {trade_id}" in m and "sx-ghost-0000001" in m for m in messages)
    # the account's BTC rose by more than the run's own (no) fills explain, and its USDT fell
    # below the run's book (its capital was the whole balance)
    assert any("BTC more than the run's own fills explain" in m for m in messages)
    assert any("the run's book holds 10000 USDT but the exchange account only" in m for m in messages)
    assert all(e["level"] == "critical" for e in events)
    assert len(messages) == len(set(messages))  # each difference once, not at every check


def test_periodic_reconciliation_reports_an_account_that_holds_less_than_the_fills_explain(world, tmp_path):
    """The account holds 1 BTC the ledger knows nothing of (reported at start, not traded);
    then 0.4 BTC leave it outside sigmax. The book (0 BTC) is still below the balance
    (0.6): only the change of the account that the run's fills do not explain shows it."""
    emu, account, clock, exchange, url = world
    with account.lock:
        account.balances["BTC"][0] = 1.0
    s = settings(tmp_path, emu, ledger_url=url, live={"reconcile_every_ticks": 3})
    plan = prepare_live(s, LiveOptions(max_ticks=8))
    plan.strategy = Idle()
    ticks = {"n": 0}

    def withdraw(_seconds):
        ticks["n"] += 1
        if ticks["n"] == 2:
            with account.lock:
                account.balances["BTC"][0] -= 0.4

    clock.on_sleep = withdraw
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)
    assert any("holds 1 BTC but the ledger's positions only 0" in w for w in result.warnings)
    events = discrepancy_events(url, result.run_id)
    assert [e["level"] for e in events if "not the ledger's" in e["message"]] == ["warning"]  # at start
    critical = [e["message"] for e in events if e["level"] == "critical"]
    assert len(critical) == 1 and "holds 0.4 BTC less than the run's own fills explain" in critical[0]


def test_a_resting_order_filling_between_bars_is_no_discrepancy(world, tmp_path):
    """Reconciliation at every tick while an adopted resting order fills between two bars (on
    the exchange before the broker polled it): taken in as a fill, not reported."""
    emu, account, clock, exchange, url = world
    exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 9_000.0, {"clientOrderId": "manual-order-4"})
    s = settings(tmp_path, emu, ledger_url=url, live={"unknown_orders": "adopt", "reconcile_every_ticks": 1})
    plan = prepare_live(s, LiveOptions(max_ticks=6))
    plan.strategy = Idle()
    ticks = {"n": 0}

    def fill_it(_seconds):
        ticks["n"] += 1
        if ticks["n"] in (2, 4):
            account.fill("manual-order-4", 0.004)

    clock.on_sleep = fill_it
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)
    assert result.summary.fills == 2
    assert discrepancy_events(url, result.run_id) == []
