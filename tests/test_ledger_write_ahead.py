"""A live order is never sent while its write-ahead record cannot be written (issue 15, 5).

The live broker talks real ccxt over HTTP to the loopback Binance emulator; its journal is
the one ``sigmax run`` uses (:func:`sigmax_cli.live._write_ahead`) on a real PostgreSQL ledger
of this test alone, which the test closes to connections (and whose sessions it terminates)
before the order is decided.
"""

from __future__ import annotations

import pytest

from sigmax_cli.brokers.live import LiveBroker
from sigmax_cli.errors import OrderRejected
from sigmax_cli.exchange.errors import RetryPolicy
from sigmax_cli.ledger import Ledger
from sigmax_cli.live import _write_ahead
from sigmax_cli.markets import from_ccxt
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
