"""Critical events of a live run reach a human: an order whose fate the exchange cannot
tell (``order.unknown``, raised by the live broker) and a difference between the ledger and
the exchange (``reconcile.discrepancy``, raised by reconciliation) each produce exactly one
alert on a real webhook (an HTTP sink on loopback), with the run against the Binance
emulator, and the delivery is recorded in the ledger as an ``alert.sent`` event."""

from __future__ import annotations

import threading

import pytest

from sigmax_cli.live import LiveOptions, prepare_live, run_live
from tests.support.alert_sinks import HttpSink
from tests.support.binance_emulator import Fault, ManualClock
from tests.support.binance_orders import spot_exchange
from tests.test_live_reconcile import Idle
from tests.test_live_run import btc, ledger_rows, run, settings  # noqa: F401 - btc is a fixture


@pytest.fixture
def world(data_dir, btc):  # noqa: F811 - the imported fixture
    clock = ManualClock(int(btc.ts[3000]) + 1000)
    emu, account = spot_exchange(data_dir, [btc], clock=clock.now_ms,
                                 balances={"USDT": [10_000.0, 0.0], "BTC": [0.0, 0.0], "ETH": [0.0, 0.0]})
    yield emu, account, clock
    emu.stop()


def alerts_of(sink: HttpSink, words: str) -> list[str]:
    return [body["text"] for _, body in sink.received if words in body["text"]]


def test_an_order_whose_fate_is_unknown_raises_exactly_one_alert(world, tmp_path):
    emu, _account, clock = world
    with HttpSink() as sink:
        s = settings(tmp_path, emu, live={"retry_attempts": 2}, alert_webhook_url=f"{sink.url}/hook")
        emu.inject("/api/v3/order", Fault.dropped(), *(Fault(status=503) for _ in range(4)))
        result = run(s, clock, 12)
    events = ledger_rows(s.ledger_url, "events", f"where run_id = '{result.run_id}'")
    assert [e["level"] for e in events if e["kind"] == "order.unknown"] == ["critical"]
    unknown = alerts_of(sink, "the exchange cannot tell whether it was placed")
    assert len(unknown) == 1 and unknown[0].startswith(f"[CRITICAL] {result.run_id}: BTC/USDT buy order")
    sent = [e for e in events if e["kind"] == "alert.sent" and "cannot tell" in e["message"]]
    assert len(sent) == 1 and sent[0]["message"].startswith("webhook: ")


def test_a_reconciliation_discrepancy_raises_exactly_one_alert(world, tmp_path, ledger_url):
    """0.4 BTC leave the account outside sigmax mid-run: the periodic reconciliation
    (every 3 ticks, so found at several checks) records one critical discrepancy, and one
    alert goes out. The start-up note about the coin the ledger does not know is a warning:
    no alert."""
    emu, account, clock = world
    with account.lock:
        account.balances["BTC"][0] = 1.0
    with HttpSink() as sink:
        s = settings(tmp_path, emu, ledger_url=ledger_url, live={"reconcile_every_ticks": 3},
                     alert_webhook_url=f"{sink.url}/hook")
        plan = prepare_live(s, LiveOptions(max_ticks=12))
        plan.strategy = Idle()
        ticks = {"n": 0}

        def withdraw(_seconds):
            ticks["n"] += 1
            if ticks["n"] == 2:
                with account.lock:
                    account.balances["BTC"][0] -= 0.4

        clock.on_sleep = withdraw
        result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)
    events = ledger_rows(ledger_url, "events", f"where run_id = '{result.run_id}'")
    critical = [e for e in events if e["kind"] == "reconcile.discrepancy" and e["level"] == "critical"]
    assert len(critical) == 1
    texts = [body["text"] for _, body in sink.received]
    assert texts == [f"[CRITICAL] {result.run_id}: {critical[0]['message']}"]
    assert "less than the run's own fills explain" in texts[0]
