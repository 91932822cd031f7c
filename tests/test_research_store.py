"""De-duplication in the ledger (SQLite and PostgreSQL), the research engine over the loopback
feeds server, and the sentiment aggregates."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from sigmax_cli.ledger import Ledger
from sigmax_cli.ledger import schema as s
from sigmax_cli.research.aggregate import HOUR_MS, aggregate, summarise
from sigmax_cli.research.base import Item, ScoredItem
from sigmax_cli.research.engine import EXIT_DEGRADED, EXIT_OK, ResearchOptions, research
from sigmax_cli.research.store import ResearchStore, StoredItem
from sigmax_cli.settings import load_settings
from tests.support.feeds_server import FEEDS, Fault, FeedsServer

NOW = 1_765_600_000_000  # 2025-12-13 04:26:40 UTC, a few hours after the saved feeds


@pytest.fixture
def feeds_server(data_dir):
    with FeedsServer(data_dir) as server:
        yield server


def settings_for(server, ledger_url: str, **research):
    base = {"feeds": server.feed_specs(), "feargreed_url": server.url, "coingecko_url": f"{server.url}/api/v3",
            "cryptopanic_url": f"{server.url}/cryptopanic", "market_coins": ["BTC"], "http_timeout_seconds": 0.5,
            "http_retries": 1}
    return load_settings(overrides={"database_url": ledger_url, "research": {**base, **research}})


def _feed_item_count(data_dir: Path) -> int:
    return sum(p.read_bytes().count(b"<item>") for p in (data_dir / "news_feeds").glob("*.rss"))


def test_two_runs_store_each_item_once_and_the_second_has_zero_new(feeds_server, ledger_url, data_dir):
    settings = settings_for(feeds_server, ledger_url)
    first = research(settings, ResearchOptions(), clock=lambda: NOW)
    total = _feed_item_count(data_dir)
    assert first.exit_code == EXIT_OK
    assert len(first.items) == first.new_count == total
    assert {st.name: st.status for st in first.sources} == {
        **{f: "ok" for f in FEEDS}, "feargreed": "ok", "coingecko": "ok", "cryptopanic": "skipped"}
    second = research(settings, ResearchOptions(), clock=lambda: NOW + 60_000)
    assert second.new_count == 0 and second.items == []
    assert [st.status for st in second.sources if st.kind == "rss"] == ["not_modified"] * len(FEEDS)
    assert second.aggregates["overall"]["count"] == first.aggregates["overall"]["count"]  # 304 feeds still count
    # without the validators every feed answers in full: de-duplication alone must find nothing new
    with Ledger(ledger_url) as ledger:
        with ledger.engine.begin() as conn:
            conn.execute(delete(s.http_cache))
        third = research(settings, ResearchOptions(), clock=lambda: NOW + 120_000)
        assert len(third.items) == total and third.new_count == 0
        assert ResearchStore(ledger).count_items() == total
        with ledger.engine.connect() as conn:
            seen = {r.first_seen_ms for r in conn.execute(select(s.research_items.c.first_seen_ms))}
    assert seen == {NOW}


def test_a_failed_feed_is_degraded_stores_nothing_and_is_fetched_whole_next_time(feeds_server, ledger_url):
    settings = settings_for(feeds_server, ledger_url, sources=["rss"])
    feeds_server.inject("/feeds/decrypt.rss", Fault(kind="malformed"))
    first = research(settings, ResearchOptions(), clock=lambda: NOW)
    decrypt = next(st for st in first.sources if st.name == "decrypt")
    assert first.exit_code == EXIT_DEGRADED and decrypt.status == "degraded" and decrypt.items == 0
    assert "malformed XML" in decrypt.detail
    second = research(settings, ResearchOptions(), clock=lambda: NOW)
    decrypt = next(st for st in second.sources if st.name == "decrypt")
    assert decrypt.status == "ok" and decrypt.items == decrypt.new > 0
    assert second.new_count == decrypt.new  # the other feeds: 304
    assert feeds_server.requests_to("/feeds/decrypt.rss")[-1].if_none_match is None


def _scored(n: int, source: str = "t") -> list[ScoredItem]:
    return [ScoredItem(Item(source, f"g{i}", None, f"title {i}", NOW - i * HOUR_MS, ""), ("BTC",), 0.1)
            for i in range(n)]


def test_concurrent_writers_agree_on_who_saw_an_item_first(ledger_url):
    batch = _scored(300)
    with Ledger(ledger_url) as ledger:
        ResearchStore(ledger)  # schema ready before the race
    results: list[set] = []
    barrier = threading.Barrier(3)

    def writer():
        with Ledger(ledger_url) as ledger:
            barrier.wait()
            results.append(ResearchStore(ledger).add_items(batch, seen_ms=NOW))

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    union = set().union(*results)
    assert len(union) == 300 and sum(len(r) for r in results) == 300  # each key claimed exactly once


def _stored(age_h: float, score: float, coins=("BTC",), published=True) -> StoredItem:
    ts = NOW - int(age_h * HOUR_MS)
    return StoredItem("t", f"{age_h}-{score}", "x", ts if published else None, ts, coins, score)


def test_summaries_mean_count_and_half_life_decay():
    rows = [_stored(0, 1.0), _stored(6, -1.0), _stored(12, 0.0, published=False)]
    agg = summarise(rows, NOW, half_life_hours=6)
    weights = [1.0, 0.5, 0.25]  # 0.5 ** (age / 6 h)
    assert agg["count"] == 3 and agg["mean"] == pytest.approx(0.0)
    assert agg["decayed"] == pytest.approx((1.0 * 1.0 + 0.5 * -1.0) / sum(weights))
    assert (agg["bullish"], agg["bearish"], agg["neutral"]) == (1, 1, 1)
    assert agg["newest_ms"] == NOW
    shifted = summarise([_stored(500, 1.0), _stored(506, -1.0)], NOW, 6)  # old items: no underflow
    assert shifted["decayed"] == pytest.approx(1 / 3)
    assert summarise([], NOW, 6) == {"count": 0, "mean": None, "decayed": None, "bullish": 0, "bearish": 0,
                                     "neutral": 0, "newest_ms": None}


def test_aggregate_keeps_the_window_and_every_configured_coin():
    rows = [_stored(1, 0.5, ("BTC", "ETH")), _stored(2, -0.5, ("ETH",)), _stored(30, 0.9, ("BTC",)),
            _stored(-0.5, 0.2, ("SOL",)), _stored(-3, 0.7, ("SOL",)), _stored(3, 0.3, ("DOGE",))]
    agg = aggregate(rows, ["BTC", "ETH", "SOL", "XRP"], NOW, half_life_hours=6, lookback_hours=24)
    assert agg["overall"]["count"] == 4  # 30 h old and 3 h in the future are out
    assert agg["coins"]["BTC"]["count"] == 1 and agg["coins"]["BTC"]["mean"] == 0.5
    assert agg["coins"]["ETH"]["count"] == 2 and agg["coins"]["ETH"]["mean"] == pytest.approx(0.0)
    assert agg["coins"]["SOL"]["count"] == 1 and agg["coins"]["XRP"]["count"] == 0
    assert "DOGE" not in agg["coins"]
    assert agg["window"] == {"since_ms": NOW - 24 * HOUR_MS, "until_ms": NOW, "half_life_hours": 6,
                             "lookback_hours": 24}
