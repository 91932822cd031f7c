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
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from sigmax_cli.errors import ConfigError, LedgerError, LedgerUnavailable, NotFoundError
from sigmax_cli.ledger import migrations
from sigmax_cli.ledger import schema as s
from sigmax_cli.settings import redact_url

RUN_STATUSES = ("running", "completed", "halted", "interrupted", "failed", "lost")


def now_ms() -> int:
    """Wall-clock time in UTC ms since epoch."""
    return int(time.time() * 1000)


def _normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a ledger URL (``sqlite:///PATH`` or ``postgresql://…``).

    SQLite gets WAL journaling, ``synchronous=NORMAL`` and a 5 s busy timeout; its parent
    directory is created. PostgreSQL uses psycopg 3 with a 5 s connect timeout.

    Raises:
        ConfigError: the URL is malformed or names a database sigmax does not support.
    """
    shown = redact_url(url)
    try:
        parsed = make_url(_normalise_url(url))
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"database URL {shown!r} is malformed",
            "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB in SIGMAX_DATABASE_URL",
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database URL {shown!r} uses {backend}, which the ledger does not support",
            "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        )
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private state
        engine = create_engine(parsed, connect_args={"timeout": 5})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised via every sqlite test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    problem = _pg_url_problem(parsed)
    if problem:
        raise ConfigError(f"database URL {shown!r} is malformed: {problem}",
                          "use postgresql://USER@HOST:PORT/DB[?sslmode=require] in SIGMAX_DATABASE_URL")
    try:
        return create_engine(parsed, connect_args={"connect_timeout": 5}, pool_pre_ping=True)
    except NoSuchModuleError as exc:  # pragma: no cover - psycopg is a dependency
        raise ConfigError(f"no driver for {shown!r} ({exc})", "install psycopg[binary]") from None


def is_outage(exc: BaseException) -> bool:
    """True when a database error means "not reachable now, retry later": a lost or refused
    connection, a terminated session, a database closed to connections, a full disk, a
    locked SQLite file. False for errors that retrying cannot fix (constraint violations,
    SQL errors: bugs or bad data)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def db_reason(exc: BaseException) -> str:
    """The first line of the driver's message (``database or disk is full``), without
    SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0].strip() if text_ else type(exc).__name__


def _is_disk_full(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "53100" or "disk is full" in db_reason(exc).lower() \
        or "no space left" in db_reason(exc).lower()


def describe_open_error(exc: DBAPIError, url: str) -> LedgerError:
    """One sentence for a database error met while opening the ledger, naming its real cause:
    unreachable (start the database), out of space (free some), or refused while the schema
    was being created or upgraded (rights, or a bug: not the database's fault)."""
    shown = redact_url(url)
    reason = db_reason(exc)
    if _is_disk_full(exc):
        return LedgerError(f"the ledger at {shown} is out of disk space ({reason})",
                           "free disk space where the database lives, then rerun")
    if is_outage(exc):
        return LedgerError(f"cannot open the ledger at {shown} ({reason})",
                           "start the database or fix SIGMAX_DATABASE_URL")
    return LedgerError(
        f"the database at {shown} answered, but creating or upgrading the ledger's schema failed ({reason})",
        "check that the database user may create tables there; if it persists, rerun with -v and report it")


@dataclass
class Outage:
    """The ledger database stopped answering.

    Attributes:
        since: ``time.monotonic()`` of the first failed write, seconds.
        since_ms: the same moment, UTC ms.
        reason: the driver's message of the newest failure.
        attempts: failed writes so far.
    """

    since: float
    since_ms: int
    reason: str
    attempts: int = 1


_PG_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
}


def _pg_url_problem(parsed) -> str | None:
    """What libpq would refuse in a PostgreSQL URL before it reaches any server (a port out
    of range, an option it does not know, a value outside an option's choices), as a phrase;
    ``None`` when the URL is well formed. Such a URL is bad input (exit 2), not an
    unreachable database (exit 69)."""
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"port {parsed.port} is not between 1 and 65535"
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    options = {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
    try:
        conninfo_to_dict(make_conninfo("", **options))
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError: libpq refused an option
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "an option libpq does not accept"
    for name, choices in _PG_CHOICES.items():
        if name in options and options[name] not in choices:
            return f"{name}={options[name]} is not one of {', '.join(choices)}"
    if "connect_timeout" in options and not options["connect_timeout"].lstrip("-").isdigit():
        return f"connect_timeout={options['connect_timeout']} is not a number of seconds"
    return None


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; ``None`` for other backends or in-memory."""
    if not url.startswith("sqlite:"):
        return None
    try:
        database = make_url(url).database
    except (ArgumentError, ValueError):
        return None
    return Path(database).expanduser() if database and database != ":memory:" else None


@dataclass(frozen=True)
class RunInfo:
    """A run as stored: ids, settings snapshot and outcome."""

    run_id: str
    mode: str
    profile: str
    exchange: str
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str
    data_files: list[dict[str, Any]]
    initial_equity: float
    started_ms: int
    ended_ms: int | None
    first_bar_ms: int | None
    last_bar_ms: int | None
    status: str
    summary: dict[str, Any] | None
    host: str
    pid: int
    lost_ms: int | None = None
    lost_acked_ms: int | None = None


class Ledger:
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
        self.outage: Outage | None = None
        """Set while the database does not answer (see the module docstring); ``None`` otherwise."""
        self.outages = 0
        """Outages met since open (each ended by a successful write, or still going on)."""
        self._finish: dict[str, Any] | None = None  # finish_run not yet written
        self._writer = uuid.uuid4().hex  # this instance's row in ledger_writes
        self._seq = 0  # its newest batch
        self._in_doubt: _Batch | None = None  # a batch whose COMMIT lost its answer
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
    @contextmanager
    def outage_guard(self) -> Iterator[None]:
        """For callers that query :attr:`engine` themselves: a database outage met inside
        becomes :class:`LedgerUnavailable` and sets :attr:`outage`; other database errors
        pass through unchanged."""
        with self._writing():
            yield

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a database outage met inside into :class:`LedgerUnavailable` (and
        :attr:`outage`); other database errors pass through unchanged."""
        try:
            yield
        except DBAPIError as exc:
            if not is_outage(exc):
                raise
            raise self.note_outage(exc) from None

    def note_outage(self, exc: BaseException) -> LedgerUnavailable:
        """Record that the database failed with ``exc`` (an error :func:`is_outage` accepts),
        met here or by a caller using :attr:`engine` directly; returns the error to raise."""
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

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return migrations.current_version(conn)

    # -- runs ----------------------------------------------------------------------------
    def start_run(
        self, *, run_id: str, mode: str, profile: str, exchange: str, strategy: str,
        params: dict[str, Any], symbols: list[str], timeframe: str,
        data_files: list[dict[str, Any]], initial_equity: float, heartbeat_interval_ms: int | None = None,
    ) -> None:
        """Insert a run in status ``running``, with this process's host, pid and host id.

        Runs of earlier bots that are gone are marked ``lost`` first (:meth:`mark_lost_runs`).
        ``heartbeat_interval_ms`` is the longest gap the run's engine leaves between two
        heartbeats (default: one bar, at least 10 s; see :mod:`sigmax_cli.ledger.liveness`).

        Raises:
            ConfigError: a run with ``run_id`` already exists.
        """
        from sigmax_cli.ledger import liveness
        from sigmax_cli.timeframes import timeframe_to_ms

        self.mark_lost_runs()
        if heartbeat_interval_ms is None:
            heartbeat_interval_ms = liveness.default_interval_ms(timeframe_to_ms(timeframe))
        with self._writing(), self.engine.begin() as conn:
            exists = conn.execute(select(s.runs.c.run_id).where(s.runs.c.run_id == run_id)).first()
            if exists:
                raise ConfigError(f"run id {run_id!r} is already in the ledger", "pick another --run-id")
            conn.execute(s.runs.insert().values(
                run_id=run_id, mode=mode, profile=profile, exchange=exchange, strategy=strategy,
                params_json=json.dumps(params, default=str), symbols_json=json.dumps(symbols),
                timeframe=timeframe, data_files_json=json.dumps(data_files),
                initial_equity=initial_equity, started_ms=now_ms(), status="running",
                host=socket.gethostname(), pid=os.getpid(), host_id=liveness.host_id(),
                heartbeat_interval_ms=int(heartbeat_interval_ms),
            ))

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
                _write_finish(conn, {**self._finish, "status": "failed",
                                     "summary_json": json.dumps(refused, default=str)})
            self._finish = None
            raise
        with self._writing(), self.engine.begin() as conn:
            _write_finish(conn, self._finish)
        self._finish = None

    def mark_lost_runs(self, now_ms: int | None = None) -> list[Any]:
        """Mark ``running`` runs whose bot is gone ``lost``; returns every lost run not yet
        acknowledged (:class:`~sigmax_cli.ledger.liveness.LostRun`), oldest first. See
        :func:`sigmax_cli.ledger.liveness.sweep` for when a run is lost. On a ledger this
        user may not write, the runs are judged and returned but not marked."""
        from sigmax_cli.ledger import liveness

        try:
            with self.engine.begin() as conn:
                return liveness.sweep(liveness.sqlalchemy_execute(conn), conn.dialect.name, now_ms)
        except DBAPIError:  # a ledger this user may only read (monitor, report): judge without writing
            with self.engine.connect() as conn:
                return liveness.sweep(liveness.sqlalchemy_execute(conn), conn.dialect.name, now_ms, write=False)

    def acknowledge_lost(self, run_ids: list[str] | None = None) -> list[str]:
        """Acknowledge lost runs (``None``: all of them); returns the ids acknowledged now.

        Raises:
            NotFoundError: a named run is not in the ledger.
            ConfigError: a named run is not lost (nothing is written then).
        """
        from sigmax_cli.ledger import liveness

        try:
            with self.engine.begin() as conn:
                return liveness.acknowledge(liveness.sqlalchemy_execute(conn), run_ids)
        except LookupError as exc:
            raise NotFoundError(f"no run {exc.args[0]!r} in the ledger",
                                "list the lost runs with `sigmax runs list --lost`") from None
        except ValueError as exc:
            run_id, status = exc.args
            raise ConfigError(f"run {run_id!r} is {status}, not lost; only lost runs are acknowledged",
                              "list the lost runs with `sigmax runs list --lost`") from None

    def get_run(self, run_id: str) -> RunInfo:
        """The run ``run_id``. Raises :class:`NotFoundError` when absent."""
        with self.engine.connect() as conn:
            row = conn.execute(select(s.runs).where(s.runs.c.run_id == run_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no run {run_id!r} in the ledger", "list runs with `sigmax report --list`")
        return _run_info(row)

    def latest_run(self, mode: str | None = None) -> RunInfo:
        """The most recently started run (optionally of one mode). Raises NotFoundError."""
        query = select(s.runs).order_by(s.runs.c.started_ms.desc(), s.runs.c.run_id.desc()).limit(1)
        if mode:
            query = query.where(s.runs.c.mode == mode)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFoundError("the ledger holds no runs yet", "start one with `sigmax paper`")
        return _run_info(row)

    def list_runs(self, limit: int = 50) -> list[RunInfo]:
        """The newest ``limit`` runs, newest first."""
        query = select(s.runs).order_by(s.runs.c.started_ms.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_run_info(r) for r in conn.execute(query).mappings()]

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
            batch = _Batch(self._seq, dict(self._orders), {k: len(v) for k, v in self._rows.items()})
            committing = False
            try:
                with self.engine.connect() as conn, conn.begin():
                    _write_rows(conn, list(self._orders.values()), self._rows)
                    _mark_written(conn, self._writer, batch.seq)
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
        with self.engine.connect() as conn:
            seq = _written_seq(conn, self._writer)
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
                    _replay(conn, doc)
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
        stmt = _insert(self.engine.dialect, s.heartbeats).values(row)
        stmt = stmt.on_conflict_do_update(index_elements=[s.heartbeats.c.bot_id],
                                          set_={k: v for k, v in row.items() if k != "bot_id"})
        with self._writing(), self.engine.begin() as conn:
            conn.execute(stmt)
            if run_id is not None and status == "running":
                conn.execute(update(s.runs).where(s.runs.c.run_id == run_id, s.runs.c.status == "lost")
                             .values(status="running", lost_ms=None, lost_acked_ms=None, ended_ms=None))

    # -- queries ---------------------------------------------------------------------------
    def rows(self, table: str, run_id: str, order_by: Iterable[str] = ()) -> list[dict[str, Any]]:
        """All rows of ``table`` for ``run_id`` as dicts, ordered by ``order_by`` columns."""
        t = s.metadata.tables[table]
        query = select(t).where(t.c.run_id == run_id)
        for col in order_by:
            query = query.order_by(t.c[col])
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count(self, table: str, run_id: str) -> int:
        """Number of rows of ``table`` for ``run_id``."""
        t = s.metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar_one())

    def equity_summaries(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Per run id with equity rows: ``bars`` (snapshot count), ``first_ms``, ``last_ms``
        (UTC ms) and ``last_equity`` (quote, the newest snapshot), in one query."""
        ids = list(run_ids)
        if not ids:
            return {}
        e = s.equity
        agg = (
            select(e.c.run_id, func.count().label("bars"), func.min(e.c.ts_ms).label("first_ms"),
                   func.max(e.c.ts_ms).label("last_ms"))
            .where(e.c.run_id.in_(ids)).group_by(e.c.run_id).subquery()
        )
        query = select(agg, e.c.equity.label("last_equity")).join(
            e, (e.c.run_id == agg.c.run_id) & (e.c.ts_ms == agg.c.last_ms))
        with self.engine.connect() as conn:
            return {r["run_id"]: dict(r) for r in conn.execute(query).mappings()}


_ROW_TABLES = ("fills", "positions", "equity", "events")


@dataclass
class _Batch:
    """A flushed batch: its sequence number, the order rows it held (client order id ->
    the very dict buffered) and how many rows of each table (the first ones buffered)."""

    seq: int
    orders: dict[str, dict[str, Any]]
    counts: dict[str, int]


def _insert(dialect, table):
    """``INSERT INTO table`` in ``dialect`` (PostgreSQL's or SQLite's), which has ``on_conflict_do_update``."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _mark_written(conn, writer: str, seq: int) -> None:
    stmt = _insert(conn.dialect, s.ledger_writes).values(writer_id=writer, seq=seq, ts_ms=now_ms())
    conn.execute(stmt.on_conflict_do_update(index_elements=[s.ledger_writes.c.writer_id],
                                            set_={"seq": stmt.excluded.seq, "ts_ms": stmt.excluded.ts_ms}))


def _written_seq(conn, writer: str) -> int | None:
    return conn.execute(select(s.ledger_writes.c.seq).where(s.ledger_writes.c.writer_id == writer)).scalar()


def _replay(conn, doc: dict[str, Any]) -> None:
    """Write a spill file's rows in the caller's transaction, once: a file already written
    (its own ``spill:<id>`` mark exists) is skipped, and a batch that was in doubt when it
    was spilled is left out when ``ledger_writes`` shows it committed."""
    mark = f"spill:{doc.get('id')}"
    if doc.get("id") and _written_seq(conn, mark) is not None:
        return
    orders = list(doc.get("orders") or [])
    rows = {k: list(doc.get(k) or []) for k in _ROW_TABLES}
    doubt = doc.get("in_doubt")
    if doubt:
        seq = _written_seq(conn, doubt["writer"])
        if seq is not None and seq >= doubt["seq"]:
            skip = set(doubt.get("orders") or [])
            orders = [o for o in orders if o.get("client_order_id") not in skip]
            for name, n in (doubt.get("counts") or {}).items():
                del rows[name][:n]
    _write_rows(conn, orders, rows)
    if doc.get("finish"):
        _write_finish(conn, doc["finish"])
        hb = s.heartbeats  # the bot that spilled has ended: its heartbeat must not look like a live one
        conn.execute(update(hb).where(hb.c.run_id == doc["finish"]["run_id"], hb.c.status == "running")
                     .values(status="stopped"))
    if doc.get("id"):
        _mark_written(conn, mark, 1)


def _upsert_orders(conn, rows: list[dict[str, Any]]) -> None:
    stmt = _insert(conn.dialect, s.orders)
    excluded = stmt.excluded  # built once: each access rebuilds the alias
    mutable = ("exchange_order_id", "filled", "average", "fee", "status", "reason", "updated_ms", "price")
    stmt = stmt.on_conflict_do_update(
        index_elements=[s.orders.c.client_order_id],
        set_={c: getattr(excluded, c) for c in mutable},
    )
    conn.execute(stmt, rows)


def _write_rows(conn, orders: list[dict[str, Any]], rows: dict[str, list[dict[str, Any]]]) -> None:
    """Orders (upserted by client order id), then fills, positions, equity, events, each in
    buffer order, inside the caller's transaction."""
    if orders:
        _upsert_orders(conn, orders)
    for name in _ROW_TABLES:
        if rows.get(name):
            conn.execute(s.metadata.tables[name].insert(), rows[name])


def _write_finish(conn, finish: dict[str, Any]) -> None:
    values = {k: v for k, v in finish.items() if k != "run_id"}
    conn.execute(update(s.runs).where(s.runs.c.run_id == finish["run_id"]).values(**values))


def ledger_fingerprint(url: str) -> str:
    """Which database a URL names, without its password: a SHA-256 hex digest of the backend,
    user, host, port and database (a SQLite file's resolved path). Spill files carry it, so
    that only a bot on the same database writes them in (and ``health`` can tell)."""
    try:
        parsed = make_url(_normalise_url(url))
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            return "sqlite:" + str(Path(parsed.database).expanduser().resolve())
        ident = f"{parsed.get_backend_name()}://{parsed.username or ''}@{parsed.host or ''}:{parsed.port or ''}/" \
                f"{parsed.database or ''}"
    except (ArgumentError, ValueError):
        ident = url
    return hashlib.sha256(ident.encode()).hexdigest()


def _run_info(row) -> RunInfo:
    return RunInfo(
        run_id=row["run_id"], mode=row["mode"], profile=row["profile"], exchange=row["exchange"],
        strategy=row["strategy"], params=json.loads(row["params_json"]),
        symbols=json.loads(row["symbols_json"]), timeframe=row["timeframe"],
        data_files=json.loads(row["data_files_json"]), initial_equity=row["initial_equity"],
        started_ms=row["started_ms"], ended_ms=row["ended_ms"], first_bar_ms=row["first_bar_ms"],
        last_bar_ms=row["last_bar_ms"], status=row["status"],
        summary=json.loads(row["summary_json"]) if row["summary_json"] else None,
        host=row["host"], pid=row["pid"], lost_ms=row.get("lost_ms"), lost_acked_ms=row.get("lost_acked_ms"),
    )
