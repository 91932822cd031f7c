"""Research state in the ledger: de-duplicated research items and the conditional-GET
validators of feeds (:mod:`sigmax_cli.research.store` builds on these).

``research_items`` is keyed by ``(source, guid)``; :meth:`ResearchQueries.add_research_items`
inserts with ``INSERT ... ON CONFLICT DO NOTHING RETURNING source, guid`` (SQLite >= 3.35
and PostgreSQL alike), so the keys it returns are exactly those first seen now, even when
two bots insert at the same moment: the database decides which saw an item first.
``http_cache`` holds ``ETag`` / ``Last-Modified`` per URL. Times are UTC ms since epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from sigmax_cli.errors import LedgerError
from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.base import LedgerBase
from sigmax_cli.ledger.connection import db_reason, dialect_insert, now_ms
from sigmax_cli.settings import redact_url


class ResearchQueries(LedgerBase):
    """Research item and HTTP validator queries (a mixin of :class:`~sigmax_cli.ledger.Ledger`).

    Raises (every method):
        LedgerError: the database failed mid-way (connection lost, disk full).
    """

    def add_research_items(self, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """Insert ``research_items`` rows not stored yet; returns the ``(source, guid)`` keys inserted now."""
        if not rows:
            return set()
        t = s.research_items
        stmt = (dialect_insert(self.engine.dialect, t).on_conflict_do_nothing(index_elements=[t.c.source, t.c.guid])
                .returning(t.c.source, t.c.guid))
        with self._research(begin=True) as conn:
            return {(r[0], r[1]) for r in conn.execute(stmt, rows)}

    def research_items_since(self, since_ms: int, until_ms: int | None = None) -> list[dict[str, Any]]:
        """Items whose publication time (or first sight) is in ``[since_ms, until_ms]``,
        oldest first: ``source``, ``guid``, ``title``, ``published_ms``, ``first_seen_ms``,
        ``coins_json``, ``sentiment``."""
        t = s.research_items
        ts = func.coalesce(t.c.published_ms, t.c.first_seen_ms)
        query = (select(t.c.source, t.c.guid, t.c.title, t.c.published_ms, t.c.first_seen_ms, t.c.coins_json,
                        t.c.sentiment).where(ts >= since_ms).order_by(ts, t.c.source, t.c.guid))
        if until_ms is not None:
            query = query.where(ts <= until_ms)
        with self._research() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count_research_items(self) -> int:
        """Number of stored research items."""
        with self._research() as conn:
            return int(conn.execute(select(func.count()).select_from(s.research_items)).scalar_one())

    def http_validators(self, url: str) -> tuple[str | None, str | None] | None:
        """``(etag, last_modified)`` remembered for ``url``, or ``None``."""
        t = s.http_cache
        with self._research() as conn:
            row = conn.execute(select(t.c.etag, t.c.last_modified).where(t.c.url == url)).first()
        return (row.etag, row.last_modified) if row else None

    def put_http_validators(self, entries: list[tuple[str, str | None, str | None]]) -> None:
        """Upsert ``(url, etag, last_modified)`` rows with ``fetched_ms`` = now."""
        if not entries:
            return
        rows = [{"url": url, "etag": etag, "last_modified": lm, "fetched_ms": now_ms()} for url, etag, lm in entries]
        stmt = dialect_insert(self.engine.dialect, s.http_cache)
        stmt = stmt.on_conflict_do_update(index_elements=[s.http_cache.c.url], set_={
            "etag": stmt.excluded.etag, "last_modified": stmt.excluded.last_modified,
            "fetched_ms": stmt.excluded.fetched_ms})
        with self._research(begin=True) as conn:
            conn.execute(stmt, rows)

    @contextmanager
    def _research(self, begin: bool = False) -> Iterator[Connection]:
        try:
            with (self.engine.begin() if begin else self.engine.connect()) as conn:
                yield conn
        except DBAPIError as exc:
            raise LedgerError(f"the ledger at {redact_url(self.url)} failed while storing research "
                              f"({db_reason(exc)})", "check the database (disk space, connection) and run again") \
                from None
