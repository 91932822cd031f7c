"""Research throughput: items/s for parse + score + dedup over the saved real feeds.

The four feeds in ../shared/data/news_feeds (132 items) are parsed ``--repeat`` times
(guids suffixed per repetition, so every item is distinct: a few thousand items), then each
stage is timed on the whole set:

    parse      feedparser + normalisation (``rss.entry_to_item``)
    score      coin detection + VADER with the crypto supplement
    store new  ``ResearchStore.add_items`` into a fresh SQLite ledger (every item new)
    store dup  the same call again (every item already stored: the dedup path)

Baseline, measured in the same run: ``feedparser.parse`` of the same bytes alone (the
library floor). Each stage's cost is printed as a ratio to it, and the whole pipeline as
items/s.

    python benchmarks/research_throughput.py [--repeat 30] [--ledger-url URL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="times the 132 saved items are repeated")
    parser.add_argument("--ledger-url", default=None, help="ledger URL (default: a temporary SQLite file)")
    args = parser.parse_args()

    import feedparser

    from sigmax_cli.ledger import Ledger
    from sigmax_cli.research.base import ScoredItem
    from sigmax_cli.research.coins import CoinDetector
    from sigmax_cli.research.rss import entry_to_item
    from sigmax_cli.research.sentiment import analyzer, score
    from sigmax_cli.research.store import ResearchStore

    feeds = [(p.name.split("_")[0], p.read_bytes()) for p in sorted((DATA / "news_feeds").glob("*.rss"))]
    analyzer()  # build the lexicon outside the timings

    t0 = time.perf_counter()
    for _ in range(args.repeat):
        for _name, body in feeds:
            feedparser.parse(body)
    baseline_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    items = []
    for rep in range(args.repeat):
        for name, body in feeds:
            for entry in feedparser.parse(body).entries:
                item = entry_to_item(name, entry)
                items.append(replace(item, guid=f"{item.guid}#{rep}"))
    parse_s = time.perf_counter() - t0
    n = len(items)

    detector = CoinDetector(["BTC", "ETH", "SOL", "XRP"])
    t0 = time.perf_counter()
    scored = [ScoredItem(it, tuple(detector.detect(it.title, it.summary)), score(it.title)) for it in items]
    score_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        url = args.ledger_url or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        with Ledger(url) as ledger:
            store = ResearchStore(ledger)
            t0 = time.perf_counter()
            new = store.add_items(scored)
            new_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = store.add_items(scored)
            dup_s = time.perf_counter() - t0
    assert len(new) == n and not again, "dedup did not behave"

    total_s = parse_s + score_s + new_s
    print(f"items: {n:,} ({len(feeds)} saved feeds x {args.repeat}), ledger: {url.split(':')[0]}")
    print(f"baseline feedparser.parse only  {n / baseline_s:10,.0f} items/s   1.00x")
    for label, secs in (("parse + normalise", parse_s), ("score (coins + VADER)", score_s),
                        ("store new (dedup insert)", new_s), ("store dup (all known)", dup_s)):
        print(f"{label:<31} {n / secs:10,.0f} items/s   {secs / baseline_s:5.2f}x baseline time")
    print(f"pipeline parse+score+store       {n / total_s:10,.0f} items/s   {total_s / baseline_s:5.2f}x baseline time")


if __name__ == "__main__":
    main()
