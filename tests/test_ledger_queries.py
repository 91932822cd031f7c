"""The ledger's query methods that callers outside the ledger use instead of SQL (issue 20):
``set_initial_equity``, ``outage_from`` and the bot queries, on real SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from sigmax_cli.errors import LedgerUnavailable
from sigmax_cli.ledger import Ledger, make_engine


def _start(ledger: Ledger, run_id: str, mode: str = "paper") -> None:
    ledger.start_run(run_id=run_id, mode=mode, profile="default", exchange="binance", strategy="sma_cross",
                     params={}, symbols=["BTC/USDT"], timeframe="1h", data_files=[], initial_equity=0.0)


def test_set_initial_equity_writes_the_run(ledger_url):
    with Ledger(ledger_url) as ledger:
        _start(ledger, "r1")
        ledger.set_initial_equity("r1", 10_000.5)
        assert ledger.get_run("r1").initial_equity == 10_000.5


def test_outage_from_tells_an_unreachable_database_from_other_errors(ledger_url):
    with Ledger(ledger_url) as ledger:
        assert ledger.outage_from(ValueError("a bug")) is None and ledger.outage is None
        unreachable = make_engine("postgresql://postgres@127.0.0.1:1/nothing")  # nothing listens on port 1
        with pytest.raises(DBAPIError) as caught:
            unreachable.connect()
        error = ledger.outage_from(caught.value)
        assert isinstance(error, LedgerUnavailable) and ledger.outage is not None and ledger.outages == 1
        assert ledger.outage_from(error) is error  # already noted: passed through
        ledger.probe()
        assert ledger.outage is None


def test_bot_queries(ledger_url):
    with Ledger(ledger_url) as ledger:
        _start(ledger, "r1")
        ledger.record_order({"client_order_id": "sx-1", "run_id": "r1", "exchange_order_id": None,
                             "symbol": "ETH/USDT", "side": "buy", "type": "limit", "time_in_force": "GTC",
                             "reduce_only": False, "price": 100.0, "amount": 1.0, "filled": 0.0, "average": None,
                             "fee": 0.0, "status": "open", "reason": "", "created_ms": 1, "updated_ms": 1})
        ledger.record_event("r1", 5, "warning", "risk.test", "first")
        ledger.record_event("r1", 6, "critical", "risk.test", "second")
        ledger.flush()
        ledger.heartbeat("bot-1", "r1", "paper", "running")
        ledger.heartbeat("bot-2", None, "paper", "stopped")
        assert [b["bot_id"] for b in ledger.running_heartbeats()] == ["bot-1"]
        assert ledger.count_heartbeats() == 2
        assert ledger.open_order_counts(["r1", "r2"]) == {"r1": 1}
        assert ledger.open_order_symbols() == ["ETH/USDT"]
        assert [e["message"] for e in ledger.newest_events("r1", 1)] == ["second"]
        assert {b["bot_id"] for b in ledger.heartbeats(since_ms=10**15)} == {"bot-1"}  # running: always listed
        assert {b["bot_id"] for b in ledger.heartbeats()} == {"bot-1", "bot-2"}
