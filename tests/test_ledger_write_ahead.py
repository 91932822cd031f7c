"""A live order is never sent while its write-ahead record cannot be written (issue 15, 5).

The live broker talks real ccxt over HTTP to the loopback Binance emulator; its journal is
the one ``sigmax run`` uses (:func:`sigmax_cli.live._write_ahead`) on a real PostgreSQL ledger
of this test alone, which the test closes to connections (and whose sessions it terminates)
before the order is decided.
"""

from __future__ import annotations

import threading
import time

import pytest

from sigmax_cli.brokers.live import LiveBroker
from sigmax_cli.data.candles import load_candles
from sigmax_cli.errors import OrderRejected
from sigmax_cli.exchange.errors import RetryPolicy
from sigmax_cli.ledger import Ledger
from sigmax_cli.live import LiveOptions, _write_ahead, prepare_live, run_live
from sigmax_cli.markets import from_ccxt
from tests.conftest import DATA
from tests.support.binance_emulator import ManualClock
from tests.support.binance_orders import connect, spot_exchange
from tests.support.pg_faults import close_database, open_database
from tests.test_live_broker import btc, posts, request  # noqa: F401 - fixture

RUN = "wa-run"


@pytest.fixture
def live(data_dir, btc, pg_db):  # noqa: F811 - btc is a fixture
    url, name = pg_db
    clock = ManualClock(int(btc.ts[3000]) + 1000)
    emu, account = spot_exchange(data_dir, [btc], clock=clock.now_ms)
    exchange = connect(emu, timeout_ms=400, recv_window_ms=600)
    ledger = Ledger(url)
    ledger.start_run(run_id=RUN, mode="testnet", profile="conservative", exchange="binance", strategy="rules",
                     params={}, symbols=["BTC/USDT"], timeframe="5m", data_files=[], initial_equity=5_000.0)

    def journal(order) -> None:  # as sigmax run's: buffer the order, write it ahead when new
        ledger.record_order(order.record(RUN))
        if order.status == "new":
            _write_ahead(ledger, order)

    broker = LiveBroker(exchange, {"BTC/USDT": from_ccxt(exchange.markets["BTC/USDT"])}, clock=clock.now_ms,
                        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, sleep=clock.sleep),
                        recv_window_ms=600, journal=journal)
    broker.seed({"USDT": 5_000.0})
    yield broker, emu, account, clock, ledger, name
    open_database(name)
    ledger.engine.dispose()
    exchange.close()
    emu.stop()


def test_no_order_is_sent_while_its_write_ahead_record_cannot_be_written(live):
    broker, emu, account, clock, ledger, name = live
    close_database(name)

    with pytest.raises(OrderRejected, match="was not sent: its write-ahead record could not be written"):
        broker.submit(request("sx-wa-0000001"), clock.now_ms())

    assert posts(emu) == [] and not account.orders  # the exchange never heard of it
    assert not broker.has_open_orders("BTC/USDT") and broker.open_order_count == 0
    assert ledger.outage is not None and ledger.buffered >= 1  # kept in memory, as rejected

    open_database(name)
    order = broker.submit(request("sx-wa-0000002"), clock.now_ms())  # the ledger is back: this one goes
    assert order.status == "filled" and len(posts(emu)) == 1
    assert ledger.outage is None
    rows = {r["client_order_id"]: r for r in ledger.rows("orders", RUN)}
    assert rows["sx-wa-0000001"]["status"] == "rejected"
    assert "write-ahead record could not be written" in rows["sx-wa-0000001"]["reason"]
    assert rows["sx-wa-0000002"]["status"] in ("new", "filled")


# -- a whole live run (prepare_live + run_live) whose PostgreSQL ledger closes mid-run ------------
class _Halted:
    """An observer that notes the ledger halt and resume events (the dashboard's interface)."""

    def __init__(self) -> None:
        self.halted = threading.Event()
        self.resumed = threading.Event()
        self.states: list[str] = []

    def on_start(self, snapshot) -> None: ...

    def on_step(self, snapshot) -> None:
        self.states.append(snapshot().risk.trading_state)

    def on_event(self, event) -> None:
        if event.kind == "risk.ledger":
            self.halted.set()
        elif event.kind == "risk.resumed.ledger":
            self.resumed.set()

    def on_finish(self, snapshot) -> None: ...


def test_a_live_run_halts_on_a_closed_ledger_sends_nothing_unrecorded_and_resumes(tmp_path, pg_db):
    from tests.test_live_run import FlipStrategy, settings

    url, name = pg_db
    full = load_candles(DATA / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07" / "BTC_USDT-5m.json")
    candles = full.slice(None, int(full.ts[4000]))
    clock = ManualClock(int(candles.ts[3000]) + 1000)
    emu, account = spot_exchange(DATA, [candles], clock=clock.now_ms,
                                 balances={"USDT": [10_000.0, 0.0], "BTC": [0.0, 0.0], "ETH": [0.0, 0.0]})

    class ClosesTheLedger(FlipStrategy):
        """Flip, but close the ledger's database just before the 3rd buy is decided."""

        buys = 0

        def on_bar(self, bar, position):
            signal = super().on_bar(bar, position)
            if signal is not None and signal.target > 0:
                self.buys += 1
                if self.buys == 3:
                    close_database(name)
            return signal

    try:
        s = settings(tmp_path, emu, ledger_url=url, ledger={"outage_grace_seconds": 600})
        plan = prepare_live(s, LiveOptions(max_ticks=40))
        plan.strategy = ClosesTheLedger(every=2)
        observer = _Halted()
        result: dict = {}
        runner = threading.Thread(target=lambda: result.update(
            summary=run_live(plan, threading.Event(), observer, clock=clock.now_ms, sleep=clock.sleep)), daemon=True)
        runner.start()
        assert observer.halted.wait(120), "the run did not halt on the closed ledger"
        sent = len(account.orders)
        time.sleep(1.0)  # keep it closed a while; what matters is what happens in it, not how long
        assert runner.is_alive() and not observer.resumed.is_set()
        assert len(account.orders) == sent  # halted: nothing new reaches the exchange
        open_database(name)
        assert observer.resumed.wait(120), "the run did not resume"
        runner.join(240)
        assert not runner.is_alive()
    finally:
        open_database(name)
        emu.stop()
    summary = result["summary"].summary
    assert summary.status == "completed" and summary.rejected == 1
    assert "HALTED" in observer.states  # the dashboard saw the halt
    with Ledger(url, create=False) as ledger:
        orders = {r["client_order_id"]: r for r in ledger.rows("orders", plan.run_id)}
        kinds = [e["kind"] for e in ledger.rows("events", plan.run_id, ["id"])]
    on_exchange = {o["clientOrderId"] for o in account.orders.values()}
    assert on_exchange <= set(orders)  # every order the exchange holds was recorded first
    (unsent,) = [r for r in orders.values() if r["status"] == "rejected"]
    assert unsent["client_order_id"] not in on_exchange and "write-ahead" in unsent["reason"]
    assert kinds.count("risk.ledger") == 1 and kinds.count("risk.resumed.ledger") == 1
