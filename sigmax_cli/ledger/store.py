"""The ledger: records orders, fills, positions, equity and events; answers queries.

One implementation over SQLAlchemy 2 Core serves SQLite (default, WAL mode) and
PostgreSQL (psycopg 3). Writes from the trading loop are buffered and written in batches
(``executemany``) every ``batch_size`` rows and on :meth:`Ledger.flush`, so the ledger is
not the bottleneck of a replay; run start/finish and heartbeats are written at once.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from sigmax_cli.errors import ConfigError, LedgerError, NotFoundError
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

    Raises:
        ConfigError: malformed or unsupported URL.
        NotFoundError: ``create`` is False and the SQLite file does not exist.
        LedgerError: database unreachable, or its schema newer than this sigmax.
    """

    def __init__(self, url: str, batch_size: int = 5000, create: bool = True) -> None:
        self.url = url
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
        except (OperationalError, DBAPIError) as exc:
            self.engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise LedgerError(
                f"cannot open the ledger at {redact_url(url)} ({reason})",
                "start the database or fix SIGMAX_DATABASE_URL",
            ) from None

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush buffered rows and release connections."""
        try:
            self.flush()
        finally:
            self.engine.dispose()

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
        from sigmax_cli.data.timeframes import timeframe_to_ms
        from sigmax_cli.ledger import liveness

        self.mark_lost_runs()
        if heartbeat_interval_ms is None:
            heartbeat_interval_ms = liveness.default_interval_ms(timeframe_to_ms(timeframe))
        with self.engine.begin() as conn:
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
        """Flush everything buffered, then mark the run ``status`` with its summary."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self.flush()
        with self.engine.begin() as conn:
            conn.execute(update(s.runs).where(s.runs.c.run_id == run_id).values(
                status=status, ended_ms=now_ms(), first_bar_ms=first_bar_ms, last_bar_ms=last_bar_ms,
                summary_json=json.dumps(summary, default=str) if summary is not None else None,
            ))

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
        if self._pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row in one transaction (all or nothing)."""
        if not self._pending:
            return
        with self.engine.begin() as conn:
            if self._orders:
                self._upsert_orders(conn, list(self._orders.values()))
            for name in ("fills", "positions", "equity", "events"):
                rows = self._rows[name]
                if rows:
                    conn.execute(s.metadata.tables[name].insert(), rows)
        self._orders.clear()
        for rows in self._rows.values():
            rows.clear()
        self._pending = 0

    def _upsert_orders(self, conn, rows: list[dict[str, Any]]) -> None:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(s.orders)
        excluded = stmt.excluded  # built once: each access rebuilds the alias
        mutable = ("exchange_order_id", "filled", "average", "fee", "status", "reason", "updated_ms", "price")
        stmt = stmt.on_conflict_do_update(
            index_elements=[s.orders.c.client_order_id],
            set_={c: getattr(excluded, c) for c in mutable},
        )
        conn.execute(stmt, rows)

    # -- heartbeats ------------------------------------------------------------------------
    def heartbeat(self, bot_id: str, run_id: str | None, mode: str, status: str,
                  detail: dict[str, Any] | None = None) -> None:
        """Upsert this bot's heartbeat now (written at once, not buffered). A run that another
        host gave up as ``lost`` (a long silence) is ``running`` again once it beats."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        row = {"bot_id": bot_id, "run_id": run_id, "mode": mode, "host": socket.gethostname(),
               "pid": os.getpid(), "ts_ms": now_ms(), "status": status,
               "detail_json": json.dumps(detail, default=str) if detail else None}
        stmt = insert(s.heartbeats).values(row)
        stmt = stmt.on_conflict_do_update(index_elements=[s.heartbeats.c.bot_id],
                                          set_={k: v for k, v in row.items() if k != "bot_id"})
        with self.engine.begin() as conn:
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
