"""The ledger on both backends: SQLite in a temp dir and a real PostgreSQL database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, insert, inspect, select

from sigmax_cli.errors import ConfigError, LedgerError, LedgerUnavailable, NotFoundError
from sigmax_cli.ledger import Ledger, migrations
from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.store import make_engine


def _run(ledger, run_id="r1"):
    ledger.start_run(run_id=run_id, mode="paper", profile="conservative", exchange="binance", strategy="rules",
                     params={"risk": {"max_open_orders": 4}}, symbols=["BTC/USDT"], timeframe="1h",
                     data_files=[{"path": "BTC_USDT-1h.json", "sha256": "ab" * 32}], initial_equity=10_000.0)


def _order(cid, status, filled=0.0, run_id="r1"):
    return {"client_order_id": cid, "run_id": run_id, "exchange_order_id": None, "symbol": "BTC/USDT",
            "side": "buy", "type": "market", "time_in_force": "GTC", "reduce_only": False, "price": None,
            "amount": 0.5, "filled": filled, "average": 30_000.0 if filled else None, "fee": 0.0,
            "status": status, "reason": "test", "created_ms": 1, "updated_ms": 2}


def test_fresh_ledger_has_every_table_and_the_newest_schema(ledger_url):
    with Ledger(ledger_url) as ledger:
        assert ledger.schema_version == migrations.SCHEMA_VERSION
        names = set(inspect(ledger.engine).get_table_names())
    assert {"runs", "orders", "fills", "positions", "equity", "events", "heartbeats", "research_items",
            "http_cache", "backups", "schema_version"} <= names


def test_round_trip_of_a_run_with_batched_writes_and_order_upserts(ledger_url):
    with Ledger(ledger_url, batch_size=3) as ledger:
        _run(ledger)
        ledger.record_order(_order("c1", "open"))
        ledger.record_equity("r1", 1_000, 10_000.0, 10_000.0, 0.0, 10_000.0)
        assert ledger.count("equity", "r1") == 0  # still buffered
        ledger.record_order(_order("c1", "filled", filled=0.5))  # 3rd row: batch written
        assert ledger.count("equity", "r1") == 1
        ledger.record_fill({"run_id": "r1", "client_order_id": "c1", "trade_id": "t1", "symbol": "BTC/USDT",
                            "side": "buy", "price": 30_000.0, "amount": 0.5, "fee": 15.0, "fee_currency": "USDT",
                            "liquidity": "taker", "ts_ms": 1_500})
        ledger.record_event("r1", 1_600, "warning", "risk.daily_loss_limit", "REDUCING", {"value": 2.1})
        ledger.finish_run("r1", "completed", {"bars": 1}, first_bar_ms=1_000, last_bar_ms=1_000)
        (order,) = ledger.rows("orders", "r1")
        assert order["status"] == "filled" and order["filled"] == 0.5
        run = ledger.get_run("r1")
        assert run.status == "completed" and run.summary == {"bars": 1} and run.params["risk"]["max_open_orders"] == 4
        assert ledger.latest_run().run_id == "r1"
        assert ledger.count("fills", "r1") == 1 and ledger.count("events", "r1") == 1
        ledger.heartbeat("bot-1", "r1", "paper", "running")
        ledger.heartbeat("bot-1", "r1", "paper", "stopped")
        with ledger.engine.connect() as conn:
            beats = conn.execute(select(s.heartbeats)).mappings().all()
        assert len(beats) == 1 and beats[0]["status"] == "stopped"


def test_duplicate_run_id_and_unknown_run(ledger_url):
    with Ledger(ledger_url) as ledger:
        _run(ledger)
        with pytest.raises(ConfigError, match="already in the ledger"):
            _run(ledger)
        with pytest.raises(NotFoundError, match="no run 'nope'"):
            ledger.get_run("nope")


def test_empty_ledger_has_no_latest_run(ledger_url):
    with Ledger(ledger_url) as ledger, pytest.raises(NotFoundError, match="no runs yet"):
        ledger.latest_run()


def test_an_older_ledger_upgrades_in_place_and_keeps_its_rows(ledger_url):
    engine = make_engine(ledger_url)
    applied = migrations.upgrade(engine, target=1)  # a ledger written by a v1 sigmax
    assert applied == [1]
    with engine.begin() as conn:
        conn.execute(insert(s.runs).values(
            run_id="old", mode="paper", profile="p", exchange="binance", strategy="rules", params_json="{}",
            symbols_json='["BTC/USDT"]', timeframe="1h", data_files_json="[]", initial_equity=1.0,
            started_ms=1, status="completed", host="h", pid=1))
        assert not inspect(conn).has_table("backups")
    engine.dispose()
    with Ledger(ledger_url) as ledger:
        assert ledger.schema_version == migrations.SCHEMA_VERSION
        assert ledger.get_run("old").status == "completed"
        assert inspect(ledger.engine).has_table("backups")


def test_a_newer_ledger_is_refused_untouched(ledger_url):
    with Ledger(ledger_url) as ledger, ledger.engine.begin() as conn:
        conn.execute(insert(s.schema_version).values(version=99, applied_ms=1, description="future"))
    with pytest.raises(LedgerError, match="schema version 99, newer than this sigmax"):
        Ledger(ledger_url)


@pytest.mark.parametrize("url, match", [
    ("not a url", "malformed"),
    ("mysql://root@127.0.0.1/test", "does not support"),
])
def test_bad_database_urls(url, match):
    with pytest.raises(ConfigError, match=match):
        Ledger(url)


def test_unreachable_postgresql_is_one_sentence_without_the_password():
    with pytest.raises(LedgerError) as info:
        Ledger("postgresql://sigmax:hunter2@127.0.0.1:1/ledger")
    assert "hunter2" not in info.value.sentence()
    assert "cannot open the ledger at postgresql://sigmax:***@127.0.0.1:1/ledger" in info.value.sentence()


def test_sqlite_ledger_uses_wal_in_a_private_state_directory(tmp_path):
    url = f"sqlite:///{tmp_path / 'state' / 'l.db'}"
    with Ledger(url) as ledger, ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert create_engine(url)  # the file is a plain SQLite database
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


# -- writes across a lost COMMIT answer (real PostgreSQL behind a relay that drops it) ---------
def _lost_commit_ledger(pg_db, proxy, **kw):
    from sigmax_cli.ledger import Ledger

    ledger = Ledger(proxy.url(pg_db[1]), **kw)
    _run(ledger)
    ledger.record_order(_order("c1", "open"))
    ledger.record_equity("r1", 1_000, 10_000.0, 10_000.0, 0.0, 10_000.0)
    ledger.record_event("r1", 1_000, "info", "test.first", "first batch")
    proxy.lose_next_commit_answer()
    with pytest.raises(LedgerUnavailable, match="rows are kept in memory"):
        ledger.flush()  # the server committed; the client lost the answer
    assert proxy.commits_lost == 1 and ledger.outage is not None and ledger.buffered == 3
    ledger.record_order(_order("c1", "filled", filled=0.5))  # changed after the lost COMMIT
    ledger.record_equity("r1", 2_000, 10_010.0, 10_010.0, 0.0, 10_010.0)
    return ledger


def _assert_each_row_once(url):
    from sigmax_cli.ledger import Ledger

    with Ledger(url, create=False) as ledger:
        assert [e["ts_ms"] for e in ledger.rows("equity", "r1", ["ts_ms"])] == [1_000, 2_000]
        assert [e["kind"] for e in ledger.rows("events", "r1", ["id"])] == ["test.first"]
        (order,) = ledger.rows("orders", "r1")
        assert order["status"] == "filled"


def test_a_batch_whose_commit_answer_was_lost_is_written_once(pg_db):
    from tests.support.pg_proxy import PgProxy

    with PgProxy() as proxy:
        ledger = _lost_commit_ledger(pg_db, proxy)
        ledger.flush()  # asks ledger_writes: the first batch is in, so only what came after is written
        assert ledger.outage is None and ledger.buffered == 0
        ledger.close()
    _assert_each_row_once(pg_db[0])


def test_a_spilled_batch_whose_commit_answer_was_lost_is_replayed_once(pg_db, tmp_path):
    from sigmax_cli.ledger import Ledger
    from tests.support.pg_proxy import PgProxy

    with PgProxy() as proxy:
        ledger = _lost_commit_ledger(pg_db, proxy, spill_dir=tmp_path / "spill")
        path = ledger.spill()  # the bot gives up while the first batch is in doubt
        ledger.engine.dispose()
        assert path is not None and path.stat().st_mode & 0o777 == 0o600 and ledger.buffered == 0
        with Ledger(proxy.url(pg_db[1]), spill_dir=tmp_path / "spill") as again:  # the next bot writes it in
            assert not path.exists()
            assert again.replay_spills() == []  # and only once
    _assert_each_row_once(pg_db[0])


def test_a_spill_is_written_in_once_with_the_run_marked_failed(ledger_url, tmp_path):
    from sigmax_cli.ledger import Ledger

    spill = tmp_path / "spill"
    with Ledger(ledger_url, spill_dir=spill) as ledger:
        _run(ledger)
    doc = {"format": 1, "id": "abc", "ledger": None, "written_ms": 1, "orders": [_order("c9", "rejected")],
           "fills": [], "positions": [], "equity": [{"run_id": "r1", "ts_ms": 5, "equity": 1.0, "cash": 1.0,
                                                    "exposure": 0.0, "benchmark": 1.0}],
           "events": [], "finish": {"run_id": "r1", "status": "failed", "ended_ms": 9, "first_bar_ms": 5,
                                    "last_bar_ms": 5, "summary_json": '{"error": "ledger away"}'}}
    from sigmax_cli.ledger.store import ledger_fingerprint

    doc["ledger"] = ledger_fingerprint(ledger_url)
    spill.mkdir(exist_ok=True)
    (spill / "r1-1-1.json").write_text(json.dumps(doc))
    (spill / "other-ledger.json").write_text(json.dumps({**doc, "ledger": "someone else's"}))
    with Ledger(ledger_url, spill_dir=spill) as ledger:
        run = ledger.get_run("r1")
        assert run.status == "failed" and run.summary == {"error": "ledger away"}
        assert ledger.count("equity", "r1") == 1 and ledger.rows("orders", "r1")[0]["status"] == "rejected"
    assert sorted(p.name for p in spill.iterdir()) == ["other-ledger.json"]  # another ledger's file is left alone
    (spill / "again.json").write_text(json.dumps(doc))  # the same file twice (a crash before its removal)
    with Ledger(ledger_url, spill_dir=spill) as ledger:
        assert ledger.count("equity", "r1") == 1


def test_open_errors_name_their_cause():
    from sqlalchemy.exc import IntegrityError, OperationalError

    from sigmax_cli.ledger.store import describe_open_error

    dup = IntegrityError("CREATE TABLE runs", {}, Exception('duplicate key value violates unique constraint '
                                                            '"pg_type_typname_nsp_index"'))
    said = describe_open_error(dup, "postgresql://u:secret@db/x").sentence()
    assert "creating or upgrading the ledger's schema failed (duplicate key" in said
    assert "start the database" not in said and "secret" not in said
    disk = OperationalError("INSERT", {}, Exception("database or disk is full"))
    assert "out of disk space" in describe_open_error(disk, "sqlite:////x/l.db").sentence()
    down = OperationalError("connect", {}, Exception("connection refused"))
    assert "start the database" in describe_open_error(down, "postgresql://db/x").sentence()


def test_a_run_whose_rows_the_database_refuses_is_still_marked_failed(ledger_url):
    from sqlalchemy.exc import IntegrityError

    from sigmax_cli.ledger import Ledger

    ledger = Ledger(ledger_url)
    _run(ledger)
    ledger.record_equity("r1", 1_000, 1.0, 1.0, 0.0, 1.0)
    ledger.record_equity("r1", 1_000, 2.0, 2.0, 0.0, 2.0)  # the same bar twice: a bug upstream
    with pytest.raises(IntegrityError):
        ledger.finish_run("r1", "completed", {"bars": 2})
    run = ledger.get_run("r1")
    assert run.status == "failed" and "the ledger refused 2 buffered rows" in run.summary["error"]
    assert run.summary["bars"] == 2
    ledger.engine.dispose()


def test_fills_of_an_older_ledger_get_their_fees_in_the_currency_charged(ledger_url):
    """Migration 5: a live fill whose commission was taken in BTC used to store the fee's
    quote value and, for a buy, the amount net of it; it now stores both as charged."""
    engine = make_engine(ledger_url)
    migrations.upgrade(engine, target=4)
    price = 20_000.0
    old = [  # (side, amount, fee, fee_currency) as a v4 sigmax wrote them
        ("buy", 0.01 * 0.999, 0.01 * 0.001 * price, "BTC"),   # 0.01 BTC bought, 0.00001 BTC commission
        ("sell", 0.5, 0.0005 * price, "BTC"),                 # 0.5 BTC sold, 0.0005 BTC commission
        ("sell", 0.2, 4.0, "USDT"),                           # quote commission: already as charged
        ("buy", 0.1, 0.003, "BNB"),                           # a third asset: already as charged
    ]
    with engine.begin() as conn:
        conn.execute(insert(s.runs).values(
            run_id="live", mode="testnet", profile="p", exchange="binance", strategy="rules", params_json="{}",
            symbols_json='["BTC/USDT"]', timeframe="1h", data_files_json="[]", initial_equity=1.0,
            started_ms=1, status="completed", host="h", pid=1))
        for i, (side, amount, fee, currency) in enumerate(old):
            conn.execute(insert(s.fills).values(
                run_id="live", client_order_id=f"c{i}", trade_id=str(i), symbol="BTC/USDT", side=side, price=price,
                amount=amount, fee=fee, fee_currency=currency, liquidity="taker", ts_ms=i))
    engine.dispose()
    with Ledger(ledger_url) as ledger:
        rows = [(r["side"], r["amount"], r["fee"], r["fee_currency"]) for r in ledger.rows("fills", "live",
                                                                                            order_by=("ts_ms",))]
    assert rows[0] == ("buy", pytest.approx(0.01, rel=1e-12), pytest.approx(0.00001, rel=1e-12), "BTC")
    assert rows[1] == ("sell", 0.5, pytest.approx(0.0005, rel=1e-12), "BTC")
    assert rows[2:] == [("sell", 0.2, 4.0, "USDT"), ("buy", 0.1, 0.003, "BNB")]
