"""Runs: starting one, finding runs whose bot is gone, reading them back.

A run is one ``paper`` / ``run`` invocation (``runs`` table): its settings snapshot,
status (:data:`RUN_STATUSES`) and outcome. Times are UTC ms since epoch.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from sigmax_cli.errors import ConfigError, NotFoundError
from sigmax_cli.ledger import migrations
from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.base import LedgerBase
from sigmax_cli.ledger.connection import now_ms

RUN_STATUSES = ("running", "completed", "halted", "interrupted", "failed", "lost")


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


class RunQueries(LedgerBase):
    """The ledger's ``runs`` queries (a mixin of :class:`~sigmax_cli.ledger.Ledger`)."""

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return migrations.current_version(conn)

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

    def set_initial_equity(self, run_id: str, equity: float) -> None:
        """Set the run's initial equity (quote currency), known only once the exchange's
        balances are read after the run started.

        Raises:
            LedgerUnavailable: the database does not answer.
        """
        with self._writing(), self.engine.begin() as conn:
            conn.execute(update(s.runs).where(s.runs.c.run_id == run_id).values(initial_equity=equity))

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


def _run_info(row: Any) -> RunInfo:
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
