"""The ledger: records orders, fills, positions, equity and events; answers queries.

One implementation over SQLAlchemy 2 Core serves SQLite (default, WAL mode) and
PostgreSQL (psycopg 3). Writes from the trading loop are buffered and written in batches
(``executemany``) every ``batch_size`` rows and on :meth:`Ledger.flush`, so the ledger is
not the bottleneck of a replay; run start/finish and heartbeats are written at once.

Outages. When the database stops answering mid-run (server stopped, session terminated,
database closed to connections, disk full), a write raises :class:`LedgerUnavailable` and
:attr:`Ledger.outage` says since when and why; nothing buffered is dropped: the rows stay in
memory, in order, and a later :meth:`Ledger.flush` writes them all in one transaction.
Automatic batch writes stop trying while the outage lasts; :meth:`Ledger.ride_out` retries
with exponential back-off and jitter for a bounded time. If the database never comes back,
:meth:`Ledger.spill` writes the rows (and the run's final status) to a file in the state
directory, which the next bot opening the same ledger writes in (:meth:`Ledger.replay_spills`).

Queries. Every query sigmax makes of the ledger is a method of :class:`Ledger`, grouped by
responsibility in :mod:`sigmax_cli.ledger.queries` (runs, a run's records, bots, a venue's
orders and fills, research, backups); no module outside the ledger writes SQL
(``tests/test_no_sql_outside_ledger.py``). Engines, URLs and outage errors are in
:mod:`sigmax_cli.ledger.connection`, batch writes in :mod:`sigmax_cli.ledger.writes`.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from sigmax_cli.errors import LedgerError, LedgerUnavailable, NotFoundError
from sigmax_cli.ledger import migrations
from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.connection import (  # noqa: F401 - re-exported: the ledger's public names
    Outage,
    _normalise_url,
    db_reason,
    describe_open_error,
    dialect_insert,
    is_outage,
    ledger_fingerprint,
    make_engine,
    now_ms,
    sqlite_path,
)
from sigmax_cli.ledger.queries.backups import BackupQueries
from sigmax_cli.ledger.queries.bots import BotQueries
from sigmax_cli.ledger.queries.records import RecordQueries
from sigmax_cli.ledger.queries.research import ResearchQueries
from sigmax_cli.ledger.queries.runs import RUN_STATUSES, RunInfo, RunQueries  # noqa: F401 - re-exported
from sigmax_cli.ledger.queries.venue import VenueQueries
from sigmax_cli.ledger.writes import Batch, mark_written, replay, write_finish, write_rows, written_seq
from sigmax_cli.settings import redact_url


class Ledger(RunQueries, RecordQueries, BotQueries, VenueQueries, ResearchQueries, BackupQueries):
    """SQL ledger on SQLite or PostgreSQL. Use as a context manager or call :meth:`close`.

    Args:
        url: ledger URL (see :func:`make_engine`).
        batch_size: buffered rows that trigger a write.
        create: when False, a SQLite ledger file that does not exist yet is an error
            instead of being created (for read-only commands such as ``report``).
        spill_dir: where :meth:`spill` writes rows it could not write after an outage, and
            where :meth:`replay_spills` (called on open) finds them; ``None``: no spilling.

    Raises:
        ConfigError: malformed or unsupported URL.
        NotFoundError: ``create`` is False and the SQLite file does not exist.
        LedgerError: database unreachable, out of space, its schema newer than this sigmax,
            or the schema could not be created (the sentence names which).
    """

    def __init__(self, url: str, batch_size: int = 5000, create: bool = True,
                 spill_dir: Path | None = None) -> None:
        self.url = url
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.outage: Outage | None = None  # see LedgerBase.outage
        self.outages = 0
        self._finish: dict[str, Any] | None = None  # finish_run not yet written
        self._writer = uuid.uuid4().hex  # this instance's row in ledger_writes
        self._seq = 0  # its newest batch
        self._in_doubt: Batch | None = None  # a batch whose COMMIT lost its answer
        if not create:
            path = sqlite_path(url)
            if path is not None and not path.exists():
                raise NotFoundError(f"there is no ledger at {path} yet",
                                    "run `sigmax paper` first, or point --home / SIGMAX_DATABASE_URL at a ledger")
        self.engine = make_engine(url)
        self.batch_size = batch_size
        self._orders: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {"fills": [], "positions": [], "equity": [], "events": []}
        self._pending = 0
        try:
            migrations.upgrade(self.engine)
        except LedgerError:
            self.engine.dispose()
            raise
        except DBAPIError as exc:
            self.engine.dispose()
            raise describe_open_error(exc, url) from None
        if self.spill_dir is not None:
            self.replay_spills()

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush buffered rows and release connections.

        Raises:
            LedgerUnavailable: rows could not be written; they were spilled when
                ``spill_dir`` is set (then nothing is raised) and are otherwise lost.
        """
        try:
            self.flush()
            self._forget_writer()
        except LedgerUnavailable:
            if self.spill() is None:
                raise
        finally:
            self.engine.dispose()

    def _forget_writer(self) -> None:
        """Remove this instance's ``ledger_writes`` row once nothing of it can be in doubt
        (best effort: a row left behind is a few bytes)."""
        if not self._seq or self._in_doubt is not None:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(s.ledger_writes.delete().where(s.ledger_writes.c.writer_id == self._writer))
        except DBAPIError:
            pass

    # -- outages ---------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Rows in the buffer, not yet in the database (an order counts once, however often
        its state changed)."""
        return len(self._orders) + sum(len(rows) for rows in self._rows.values())

    def probe(self) -> None:
        """Write what is buffered, or, with nothing buffered, ask the database ``SELECT 1``.
        Ends :attr:`outage` on success.

        Raises:
            LedgerUnavailable: the database still does not answer.
        """
        if self._pending:
            self.flush()
            return
        with self._writing(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        self.outage = None

    def try_flush(self) -> bool:
        """:meth:`flush`, answering False instead of raising during an outage."""
        try:
            self.flush()
        except LedgerUnavailable:
            return False
        return True

    def ride_out(self, grace_s: float, stop: threading.Event | None = None, *, first_delay_s: float = 0.25,
                 max_delay_s: float = 8.0, on_retry: Any = None) -> bool:
        """Retry the buffered writes until they succeed, with exponential back-off (from
        ``first_delay_s`` doubling to ``max_delay_s`` seconds, +-20 % jitter so many bots do
        not reconnect in step), for at most ``grace_s`` seconds after the outage began.

        Args:
            grace_s: seconds the outage may last in total (``ledger.outage_grace_seconds``).
            stop: when set, stop waiting and answer False (rows stay buffered).
            on_retry: called with the :class:`Outage` after each failed attempt.

        Returns:
            True when everything buffered is written (also when there was no outage), False
            when ``stop`` was set first.

        Raises:
            LedgerUnavailable: the outage has lasted ``grace_s`` seconds.
        """
        delay = first_delay_s
        while self.outage is not None:
            left = self.outage.since + grace_s - time.monotonic()
            if left <= 0:
                raise LedgerUnavailable(
                    f"the ledger at {redact_url(self.url)} was unavailable for {grace_s:g} s "
                    f"({self.outage.reason}), the limit set by ledger.outage_grace_seconds",
                    "start the database (or free disk space), then start the bot again")
            wait = min(delay * random.uniform(0.8, 1.2), left)  # noqa: S311 - jitter, not security
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)
            delay = min(delay * 2, max_delay_s)
            try:
                self.probe()
            except LedgerUnavailable:
                if on_retry is not None:
                    on_retry(self.outage)
        return True

    # -- runs ----------------------------------------------------------------------------
    def finish_run(
        self, run_id: str, status: str, summary: dict[str, Any] | None = None,
        first_bar_ms: int | None = None, last_bar_ms: int | None = None,
    ) -> None:
        """Flush everything buffered, then mark the run ``status`` with its summary.

        Raises:
            LedgerUnavailable: the database does not answer; the rows and the final status
                stay buffered (a later call, :meth:`close` or :meth:`spill` writes them).
            sqlalchemy.exc.DBAPIError: the database refuses a buffered row (a bug or bad
                data); the run is still marked ``failed``, with the refusal in its summary.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self._finish = {"run_id": run_id, "status": status, "ended_ms": now_ms(), "first_bar_ms": first_bar_ms,
                        "last_bar_ms": last_bar_ms,
                        "summary_json": json.dumps(summary, default=str) if summary is not None else None}
        try:
            self.flush()
        except DBAPIError as exc:  # refused, not unreachable: never leave the run 'running'
            error = f"the ledger refused {self.buffered} buffered rows: {db_reason(exc)}"
            refused = {**(summary or {}), "error": error}
            with self._writing(), self.engine.begin() as conn:
                write_finish(conn, {**self._finish, "status": "failed",
                                     "summary_json": json.dumps(refused, default=str)})
            self._finish = None
            raise
        with self._writing(), self.engine.begin() as conn:
            write_finish(conn, self._finish)
        self._finish = None

    # -- buffered trading records ---------------------------------------------------------
    def record_order(self, order: dict[str, Any]) -> None:
        """Buffer the latest state of an order (keyed by ``client_order_id``; upserted)."""
        self._orders[order["client_order_id"]] = dict(order)
        self._bump()

    def record_fill(self, fill: dict[str, Any]) -> None:
        """Buffer one execution (columns of ``schema.fills`` without ``id``)."""
        self._rows["fills"].append(fill)
        self._bump()

    def record_position(self, position: dict[str, Any]) -> None:
        """Buffer one position change (columns of ``schema.positions`` without ``id``)."""
        self._rows["positions"].append(position)
        self._bump()

    def record_equity(self, run_id: str, ts_ms: int, equity: float, cash: float, exposure: float,
                      benchmark: float) -> None:
        """Buffer one mark-to-market snapshot (quote currency) at bar time ``ts_ms``."""
        self._rows["equity"].append({"run_id": run_id, "ts_ms": ts_ms, "equity": equity, "cash": cash,
                                     "exposure": exposure, "benchmark": benchmark})
        self._bump()

    def record_event(self, run_id: str | None, ts_ms: int, level: str, kind: str, message: str,
                     data: dict[str, Any] | None = None) -> None:
        """Buffer an event (risk trip, rejection, warning). ``level``: info|warning|critical."""
        self._rows["events"].append({"run_id": run_id, "ts_ms": ts_ms, "level": level, "kind": kind,
                                     "message": message,
                                     "data_json": json.dumps(data, default=str) if data else None})
        self._bump()

    def _bump(self) -> None:
        self._pending += 1
        if self._pending >= self.batch_size and self.outage is None:  # in an outage, the run's retries write
            self.try_flush()

    def flush(self) -> None:
        """Write every buffered row in one transaction (all or nothing); on success any
        :attr:`outage` is over.

        Raises:
            LedgerUnavailable: the database does not answer; every row stays buffered.
        """
        if not self._pending:
            return
        with self._writing():
            if self._in_doubt is not None:
                self._settle_in_doubt()
                if not self._pending:
                    self.outage = None
                    return
            self._seq += 1
            batch = Batch(self._seq, dict(self._orders), {k: len(v) for k, v in self._rows.items()})
            committing = False
            try:
                with self.engine.connect() as conn, conn.begin():
                    write_rows(conn, list(self._orders.values()), self._rows)
                    mark_written(conn, self._writer, batch.seq)
                    committing = True  # the block's exit commits: an error from here on leaves it in doubt
            except DBAPIError:
                if committing:
                    self._in_doubt = batch
                raise
        self._clear_buffer()
        self.outage = None

    def _clear_buffer(self) -> None:
        self._orders.clear()
        for rows in self._rows.values():
            rows.clear()
        self._pending = 0

    def _settle_in_doubt(self) -> None:
        """The last batch's COMMIT lost its answer: if ``ledger_writes`` shows it committed,
        drop its rows from the buffer (rows buffered since stay); otherwise it is retried."""
        batch = self._in_doubt
        if batch is None:
            return
        with self.engine.connect() as conn:
            seq = written_seq(conn, self._writer)
        self._in_doubt = None
        if seq is None or seq < batch.seq:
            return
        for cid, row in batch.orders.items():
            if self._orders.get(cid) is row:  # not changed since: already written
                del self._orders[cid]
        for name, n in batch.counts.items():
            del self._rows[name][:n]
        self._pending = self.buffered

    # -- spilling after an outage that did not end ---------------------------------------
    def spill(self) -> Path | None:
        """Write every buffered row and the pending final status of the run to a new file
        in ``spill_dir`` (JSON, 0600, fsynced) and empty the buffer; the next
        :class:`Ledger` opened on the same database with that ``spill_dir`` writes them in.

        Returns:
            The file, or ``None`` when there is no ``spill_dir`` or it cannot be written
            (the rows then stay buffered).
        """
        if self.spill_dir is None or not (self._pending or self._finish):
            return None
        from sigmax_cli.files import write_atomic

        doc = {"format": 1, "id": uuid.uuid4().hex, "ledger": ledger_fingerprint(self.url), "written_ms": now_ms(),
               "orders": list(self._orders.values()), **{k: list(v) for k, v in self._rows.items()},
               "finish": self._finish, "in_doubt": None}
        if self._in_doubt is not None:  # the replay asks ledger_writes whether these first rows are in already
            b = self._in_doubt
            doc["in_doubt"] = {"writer": self._writer, "seq": b.seq, "counts": b.counts,
                               "orders": [cid for cid, row in b.orders.items() if self._orders.get(cid) is row]}
        run = (self._finish or {}).get("run_id") or next(
            (r.get("run_id") for rows in self._rows.values() for r in rows if r.get("run_id")), "rows")
        path = self.spill_dir / f"{run}-{doc['written_ms']}-{os.getpid()}.json"
        try:
            self.spill_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, json.dumps(doc, default=str))
        except OSError:
            return None
        self._clear_buffer()
        self._finish = None
        return path

    def replay_spills(self) -> list[Path]:
        """Write in the files :meth:`spill` left for this database (each in one transaction,
        the file removed after its commit); files of other ledgers are left alone. A file
        that cannot be written (database error) stays for the next open.

        Returns:
            The files written in.
        """
        if self.spill_dir is None or not self.spill_dir.is_dir():
            return []
        mine = ledger_fingerprint(self.url)
        done: list[Path] = []
        for path in sorted(self.spill_dir.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(doc, dict) or doc.get("ledger") != mine:
                continue
            try:
                with self.engine.begin() as conn:
                    replay(conn, doc)
            except (DBAPIError, KeyError, TypeError, ValueError) as exc:  # database error, or a damaged file
                from sigmax_cli.logs import get_logger

                get_logger(__name__).warning("could not write the spilled ledger rows of %s (%s); trying again at "
                                             "the next start", path, db_reason(exc))
                continue
            path.unlink(missing_ok=True)
            done.append(path)
        return done

    # -- heartbeats ------------------------------------------------------------------------
    def heartbeat(self, bot_id: str, run_id: str | None, mode: str, status: str,
                  detail: dict[str, Any] | None = None) -> None:
        """Upsert this bot's heartbeat now (written at once, not buffered). A run that another
        host gave up as ``lost`` (a long silence) is ``running`` again once it beats.

        Raises:
            LedgerUnavailable: the database does not answer (nothing is kept: the next
                heartbeat replaces this one anyway).
        """
        row = {"bot_id": bot_id, "run_id": run_id, "mode": mode, "host": socket.gethostname(),
               "pid": os.getpid(), "ts_ms": now_ms(), "status": status,
               "detail_json": json.dumps(detail, default=str) if detail else None}
        stmt = dialect_insert(self.engine.dialect, s.heartbeats).values(row)
        stmt = stmt.on_conflict_do_update(index_elements=[s.heartbeats.c.bot_id],
                                          set_={k: v for k, v in row.items() if k != "bot_id"})
        with self._writing(), self.engine.begin() as conn:
            conn.execute(stmt)
            if run_id is not None and status == "running":
                conn.execute(update(s.runs).where(s.runs.c.run_id == run_id, s.runs.c.status == "lost")
                             .values(status="running", lost_ms=None, lost_acked_ms=None, ended_ms=None))
