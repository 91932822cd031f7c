"""Research state in the ledger: de-duplicated items and conditional-GET validators.

``research_items`` is keyed by ``(source, guid)``. :meth:`ResearchStore.add_items` inserts
with ``INSERT ... ON CONFLICT DO NOTHING RETURNING source, guid`` (SQLite >= 3.35 and
PostgreSQL alike), so the rows it returns are exactly those first seen now, even when two
bots run ``sigmax research`` against one PostgreSQL at the same moment: the database, not
a read-then-write in Python, decides which run saw an item first.

``http_cache`` holds ``ETag`` / ``Last-Modified`` per URL (:class:`ResearchStore` is the
:class:`~sigmax_cli.research.http.ValidatorCache` of production runs).

Times are UTC ms. Coins are stored as a JSON list of tickers, sentiment as a float in
[-1, 1].
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from sigmax_cli.errors import LedgerError
from sigmax_cli.ledger import Ledger, now_ms
from sigmax_cli.ledger import schema as s
from sigmax_cli.research.base import ScoredItem
from sigmax_cli.settings import redact_url

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
        self._insert = _insert_for(ledger.engine.dialect.name)

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
        stmt = (self._insert(s.research_items).on_conflict_do_nothing(
            index_elements=[s.research_items.c.source, s.research_items.c.guid])
            .returning(s.research_items.c.source, s.research_items.c.guid))
        with self._begin() as conn:
            result = conn.execute(stmt, list(rows.values()))
            return {(r[0], r[1]) for r in result}

    def items_since(self, since_ms: int, until_ms: int | None = None) -> list[StoredItem]:
        """Stored items whose publication time (or first sight) is at or after ``since_ms``
        (and at or before ``until_ms`` when given), oldest first."""
        t = s.research_items
        ts = func.coalesce(t.c.published_ms, t.c.first_seen_ms)
        query = (select(t.c.source, t.c.guid, t.c.title, t.c.published_ms, t.c.first_seen_ms, t.c.coins_json,
                        t.c.sentiment).where(ts >= since_ms).order_by(ts, t.c.source, t.c.guid))
        if until_ms is not None:
            query = query.where(ts <= until_ms)
        with self._connect() as conn:
            return [StoredItem(r.source, r.guid, r.title, r.published_ms, r.first_seen_ms,
                               tuple(json.loads(r.coins_json or "[]")), float(r.sentiment or 0.0))
                    for r in conn.execute(query)]

    def count_items(self) -> int:
        """Number of stored research items."""
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.research_items)).scalar_one())

    # -- conditional GET validators (ValidatorCache) ---------------------------------------
    def get_validators(self, url: str) -> tuple[str | None, str | None] | None:
        """``(etag, last_modified)`` remembered for ``url``, or ``None`` (also for URLs over 1024 chars)."""
        if len(url) > URL_CHARS:
            return None
        t = s.http_cache
        with self._connect() as conn:
            row = conn.execute(select(t.c.etag, t.c.last_modified).where(t.c.url == url)).first()
        return (row.etag, row.last_modified) if row else None

    def put_validators(self, entries: list[tuple[str, str | None, str | None]]) -> None:
        """Upsert ``(url, etag, last_modified)`` rows with ``fetched_ms`` = now (UTC ms)."""
        rows = [{"url": url, "etag": etag, "last_modified": lm, "fetched_ms": now_ms()}
                for url, etag, lm in entries if len(url) <= URL_CHARS]
        if not rows:
            return
        stmt = self._insert(s.http_cache)
        stmt = stmt.on_conflict_do_update(index_elements=[s.http_cache.c.url], set_={
            "etag": stmt.excluded.etag, "last_modified": stmt.excluded.last_modified,
            "fetched_ms": stmt.excluded.fetched_ms})
        with self._begin() as conn:
            conn.execute(stmt, rows)

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self.ledger.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise _ledger_error(self.ledger, exc) from None

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            with self.ledger.engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise _ledger_error(self.ledger, exc) from None


def _ledger_error(ledger: Ledger, exc: DBAPIError) -> LedgerError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    return LedgerError(f"the ledger at {redact_url(ledger.url)} failed while storing research ({reason})",
                       "check the database (disk space, connection) and run again")


def _insert_for(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert
