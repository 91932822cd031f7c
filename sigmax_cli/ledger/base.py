"""What every part of the :class:`~sigmax_cli.ledger.Ledger` shares: its engine and how a
database outage met while using it is noted (:attr:`LedgerBase.outage`) and raised as
:class:`~sigmax_cli.errors.LedgerUnavailable`.

The ledger's query methods live in :mod:`sigmax_cli.ledger.queries`, one mixin per
responsibility (runs, run records, bots, venue reconciliation, research, backups), as
freqtrade keeps its queries on its models; each mixin builds on this class.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from sigmax_cli.errors import LedgerUnavailable
from sigmax_cli.ledger.connection import Outage, db_reason, is_outage, now_ms
from sigmax_cli.settings import redact_url


class LedgerBase:
    """The engine, the URL and the outage bookkeeping of a ledger (set by
    :class:`~sigmax_cli.ledger.Ledger`'s constructor)."""

    url: str
    engine: Engine
    outage: Outage | None
    """Set while the database does not answer; ``None`` otherwise."""
    outages: int
    """Outages met since open (each ended by a successful write, or still going on)."""

    @property
    def buffered(self) -> int:
        """Rows buffered, not yet in the database (0 here; the ledger overrides it)."""
        return 0

    @contextmanager
    def outage_guard(self) -> Iterator[None]:
        """A database outage met inside becomes :class:`LedgerUnavailable` and sets
        :attr:`outage`; other database errors pass through unchanged."""
        with self._writing():
            yield

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            if not is_outage(exc):
                raise
            raise self.note_outage(exc) from None

    def note_outage(self, exc: BaseException) -> LedgerUnavailable:
        """Record that the database failed with ``exc`` (an error :func:`is_outage` accepts);
        returns the error to raise."""
        reason = db_reason(exc)
        if self.outage is None:
            self.outage = Outage(time.monotonic(), now_ms(), reason)
            self.outages += 1
        else:
            self.outage.reason = reason
            self.outage.attempts += 1
        return LedgerUnavailable(
            f"the ledger at {redact_url(self.url)} is unavailable ({reason}); {self.buffered} rows are kept "
            "in memory", "start the database (or free disk space); writing resumes by itself")

    def outage_from(self, exc: BaseException) -> LedgerUnavailable | None:
        """For callers that must not import SQLAlchemy: when ``exc`` (any exception) is a
        database outage (:func:`~sigmax_cli.ledger.connection.is_outage`), note it as
        :meth:`note_outage` does and return the :class:`LedgerUnavailable` to raise;
        ``None`` for any other exception (re-raise it)."""
        if isinstance(exc, LedgerUnavailable):
            return exc
        if not is_outage(exc):
            return None
        return self.note_outage(exc)
