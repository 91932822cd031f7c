"""Research state in the ledger: de-duplicated items and conditional-GET validators.

``research_items`` is keyed by ``(source, guid)``. :meth:`ResearchStore.add_items` returns
exactly the items first seen now, even when two bots run ``sigmax research`` against one
PostgreSQL at the same moment: the database, not a read-then-write in Python, decides which
run saw an item first (the SQL is the ledger's: :mod:`sigmax_cli.ledger.queries.research`).

``http_cache`` holds ``ETag`` / ``Last-Modified`` per URL (:class:`ResearchStore` is the
:class:`~sigmax_cli.research.http.ValidatorCache` of production runs).

Times are UTC ms. Coins are stored as a JSON list of tickers, sentiment as a float in
[-1, 1].
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sigmax_cli.ledger import Ledger, now_ms
from sigmax_cli.research.base import ScoredItem

URL_CHARS = 1024  # http_cache.url is VARCHAR(1024)


@dataclass(frozen=True)
class StoredItem:
    """A ``research_items`` row as the aggregates need it (times UTC ms)."""

    source: str
    guid: str
    title: str
    published_ms: int | None
    first_seen_ms: int
    coins: tuple[str, ...]
    sentiment: float

    @property
    def ts_ms(self) -> int:
        """Publication time, or first sight when the source gave none."""
        return self.published_ms if self.published_ms is not None else self.first_seen_ms


class ResearchStore:
    """Research tables of an open :class:`~sigmax_cli.ledger.Ledger`.

    Raises (every method):
        LedgerError: the database failed mid-way (connection lost, disk full).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- items ---------------------------------------------------------------------------
    def add_items(self, scored: Iterable[ScoredItem], seen_ms: int | None = None) -> set[tuple[str, str]]:
        """Insert items not stored yet; returns the ``(source, guid)`` keys inserted now.

        Args:
            scored: items with coins and sentiment; duplicates within the batch count once.
            seen_ms: ``first_seen_ms`` of the new rows (now by default), UTC ms.
        """
        seen_ms = now_ms() if seen_ms is None else seen_ms
        rows: dict[tuple[str, str], dict] = {}
        for si in scored:
            it = si.item
            key = (it.source, it.guid)
            if key not in rows:
                rows[key] = {"source": it.source, "guid": it.guid, "url": it.url, "title": it.title,
                             "published_ms": it.published_ms, "summary": it.summary or None,
                             "coins_json": json.dumps(list(si.coins)), "sentiment": si.sentiment,
                             "first_seen_ms": seen_ms}
        if not rows:
            return set()
        return self.ledger.add_research_items(list(rows.values()))

    def items_since(self, since_ms: int, until_ms: int | None = None) -> list[StoredItem]:
        """Stored items whose publication time (or first sight) is at or after ``since_ms``
        (and at or before ``until_ms`` when given), oldest first."""
        return [StoredItem(r["source"], r["guid"], r["title"], r["published_ms"], r["first_seen_ms"],
                           tuple(json.loads(r["coins_json"] or "[]")), float(r["sentiment"] or 0.0))
                for r in self.ledger.research_items_since(since_ms, until_ms)]

    def count_items(self) -> int:
        """Number of stored research items."""
        return self.ledger.count_research_items()

    # -- conditional GET validators (ValidatorCache) ---------------------------------------
    def get_validators(self, url: str) -> tuple[str | None, str | None] | None:
        """``(etag, last_modified)`` remembered for ``url``, or ``None`` (also for URLs over 1024 chars)."""
        if len(url) > URL_CHARS:
            return None
        return self.ledger.http_validators(url)

    def put_validators(self, entries: list[tuple[str, str | None, str | None]]) -> None:
        """Upsert ``(url, etag, last_modified)`` rows with ``fetched_ms`` = now (UTC ms)."""
        self.ledger.put_http_validators([(url, etag, lm) for url, etag, lm in entries if len(url) <= URL_CHARS])
