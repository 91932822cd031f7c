"""Liveness of runs: a run still marked ``running`` whose bot is gone becomes ``lost``.

A bot ended by ``kill -9``, a crash, an OOM kill or a power cut never writes its final
status, so its run would stay ``running`` forever. Every command that reads runs (``health``,
``monitor``, ``report``, and ``paper`` / ``run`` as they start) calls :func:`sweep` first; it
marks such a run ``lost`` (with ``lost_ms``, an ``ended_ms`` at its last sign of life, a
``run.lost`` event and its heartbeat row set to ``lost``). A lost run is reported once, as a
WARNING, until an operator acknowledges it (``sigmax runs ack RUN_ID``, :func:`acknowledge`).

When is a run lost? Its *last sign of life* is its newest heartbeat (``heartbeats.ts_ms``),
or its start when it never wrote one; its *interval* is ``runs.heartbeat_interval_ms``, the
longest gap its engine leaves between heartbeats (the bar length for a live run, see
:func:`default_interval_ms`).

* **This host** (the same :func:`host_id`: host name, boot and PID namespace, so a container
  sharing the host name is *not* this host): the run's process is gone, or its pid now
  belongs to a process started after the run (pid reuse). Then nothing can refresh the
  heartbeat any more; the run is lost at once, whatever the heartbeat's age. A process that
  is alive but hung is *not* lost: ``health`` keeps grading its heartbeat age (CRITICAL).
* **Another host** (its processes cannot be seen): the last sign of life is older than
  ``LOST_AFTER_INTERVALS`` (5) intervals, and at least ``LOST_AFTER_MIN_MS`` (10 min): five
  missed heartbeats is no network blip, and the floor covers clock skew between hosts and a
  long reconciliation at start. A bot wrongly given up (a long partition from the ledger)
  revives its run at its next heartbeat (:meth:`Ledger.heartbeat`) or its final status.

Each update is conditional (``WHERE status = 'running'``): a run that finishes between the
read and the write keeps its real status. Runs written by a sigmax before schema 3 have no
host id and no interval: they are judged as another host's, with the bar length as interval.

This module imports neither SQLAlchemy nor a driver (``sigmax health`` uses it on its DB-API
connections): SQL goes through an ``execute(sql, params) -> rows`` callable with ``?``
placeholders, adapted by the caller.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

LOST_AFTER_INTERVALS = 5
"""A run of another host is lost after this many heartbeat intervals without a sign of life."""
LOST_AFTER_MIN_MS = 600_000
"""...and never before 10 minutes (clock skew between hosts, a long start-up)."""
MIN_INTERVAL_MS = 10_000
"""The engine writes a heartbeat at most every 10 s (``EngineConfig.heartbeat_s``)."""
PID_START_SLACK_S = 120.0
"""A process created more than 2 min after the run started cannot be the run's (pid reuse).
Not less: a process's creation time is recomputed from the current wall clock, so a clock
stepped forward while the bot runs moves it later than the start the run recorded."""

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""``execute(sql, params) -> rows``: runs one statement with ``?`` placeholders; a statement
that returns no rows (``UPDATE``) gives ``[(rowcount,)]``."""

_host_id: str | None = None


def host_id() -> str:
    """This host's identity for pid checks (at most 64 chars): the kernel's boot id (a random
    UUID drawn at every boot) and this process's PID namespace; without ``/proc``, the host
    name and boot time. Two containers that share a host name but not a PID namespace, or a
    host after a reboot, get different ids, so a pid is only looked up where it means the
    same process. (No hashlib: ``sigmax health`` imports this module, and OpenSSL's start-up
    costs more than the rest of it.)"""
    global _host_id
    if _host_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as fh:
                boot = fh.read().strip()
        except OSError:
            boot = f"{socket.gethostname()[:40]}@{_boot_time()}"
        try:
            namespace = str(os.stat("/proc/self/ns/pid").st_ino)
        except OSError:
            namespace = ""
        _host_id = f"{boot}/{namespace}"[:64]
    return _host_id


def host_tag() -> str:
    """:func:`host_id` in 8 hex characters (CRC-32), for names of files (scratch directories)."""
    import zlib

    return f"{zlib.crc32(host_id().encode()):08x}"


def _boot_time() -> str:
    try:
        import psutil

        return str(int(psutil.boot_time()))
    except Exception:  # noqa: BLE001 - no boot time: the host name alone identifies the host
        return ""


def default_interval_ms(timeframe_ms: int | None) -> int:
    """The longest gap (ms) a run's engine leaves between heartbeats when nothing better is
    known: one bar (a live feed ticks once per closed bar), at least :data:`MIN_INTERVAL_MS`."""
    return max(MIN_INTERVAL_MS, int(timeframe_ms or 0))


def paper_interval_ms(timeframe_ms: int, speed: float, replay: bool) -> int:
    """The heartbeat interval (ms) of a paper run: a replay as fast as possible beats every
    10 s; at ``speed`` x real time a bar takes ``timeframe / speed``; on live public data
    (``replay`` False) the engine waits for each bar to close."""
    if not replay:
        return default_interval_ms(timeframe_ms)
    return max(MIN_INTERVAL_MS, int(timeframe_ms / speed) if speed > 0 else 0)


def process_alive(pid: int | None, started_ms: int | None = None) -> bool:
    """Whether ``pid`` on this host is the run's process: it exists, is not a zombie, and was
    created before the run started (``started_ms``, UTC ms) plus :data:`PID_START_SLACK_S`.
    A pid that cannot be inspected (permissions) counts as alive: never give up a run on a guess."""
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_ms is None or proc.create_time() <= started_ms / 1000 + PID_START_SLACK_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


@dataclass(frozen=True)
class RunSign:
    """A ``running`` run and its last sign of life.

    Attributes:
        run_id, mode, host, pid: as recorded by the run.
        host_id: :func:`host_id` of the run's process; ``None`` for runs of an older sigmax.
        started_ms: when the run started, UTC ms.
        last_seen_ms: its newest heartbeat, else ``started_ms``, UTC ms.
        interval_ms: its heartbeat interval, ms.
    """

    run_id: str
    mode: str
    host: str
    pid: int
    host_id: str | None
    started_ms: int
    last_seen_ms: int
    interval_ms: int


def verdict(run: RunSign, now_ms: int, here: str | None = None,
            alive: Callable[[int, int], bool] = process_alive) -> str | None:
    """Why ``run`` is lost, as a phrase ("its process (pid 42 on h1) is gone"), or ``None``
    while it may still be alive. ``here`` is this host's :func:`host_id`."""
    here = host_id() if here is None else here
    if run.host_id is not None and run.host_id == here:
        if alive(run.pid, run.started_ms):
            return None
        return f"its process (pid {run.pid} on {run.host}) is gone"
    limit_ms = lost_after_ms(run.interval_ms)
    silent_ms = now_ms - run.last_seen_ms
    if silent_ms <= limit_ms:
        return None
    return (f"{run.host} has not heard from it for {silent_ms / 60_000:.0f} min "
            f"({LOST_AFTER_INTERVALS} heartbeat intervals, {limit_ms / 60_000:.0f} min, is the limit)")


def lost_after_ms(interval_ms: int) -> int:
    """Silence (ms) after which a run of another host is lost: ``LOST_AFTER_INTERVALS`` times
    its heartbeat interval, at least ``LOST_AFTER_MIN_MS``."""
    return max(LOST_AFTER_MIN_MS, LOST_AFTER_INTERVALS * int(interval_ms))


@dataclass(frozen=True)
class LostRun:
    """A run found lost (now or earlier) and not yet acknowledged.

    Attributes:
        run_id, mode, host, pid: as recorded.
        lost_ms: when it was marked lost, UTC ms.
        last_seen_ms: its last sign of life, UTC ms.
        reason: why, one phrase (from the ``run.lost`` event).
    """

    run_id: str
    mode: str
    host: str
    pid: int
    lost_ms: int
    last_seen_ms: int | None
    reason: str

    @property
    def ack_command(self) -> str:
        """The command that acknowledges it."""
        return f"sigmax runs ack {self.run_id}"

    def sentence(self) -> str:
        """"run R (paper on h1, pid 42) was lost: its process ... is gone; once looked into,
        acknowledge it with `sigmax runs ack R`"."""
        return (f"run {self.run_id} ({self.mode} on {self.host}, pid {self.pid}) was lost: {self.reason}; "
                f"once looked into, acknowledge it with `{self.ack_command}`")


def _timeframe_ms(timeframe: str | None) -> int | None:
    """:func:`~sigmax_cli.timeframes.timeframe_to_ms`, ``None`` for a missing or unknown timeframe."""
    from sigmax_cli.timeframes import timeframe_to_ms

    try:
        return timeframe_to_ms(timeframe) if timeframe else None
    except ValueError:  # UnknownTimeframe
        return None


def sqlalchemy_execute(conn: Any) -> Execute:
    """An :data:`Execute` over a SQLAlchemy ``Connection`` (its driver's placeholders)."""
    pg = conn.dialect.name == "postgresql"

    def execute(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        result = conn.exec_driver_sql(sql.replace("?", "%s") if pg else sql, tuple(params))
        return [tuple(r) for r in result] if result.returns_rows else [(result.rowcount,)]

    return execute


def has_columns(execute: Execute, backend: str) -> bool:
    """Whether the ledger's ``runs`` table has the liveness columns (schema 3 and later)."""
    if backend == "postgresql":
        rows = execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                       "AND table_name = 'runs'", ())
    else:
        rows = execute("SELECT name FROM pragma_table_info('runs')", ())
    return "lost_ms" in {r[0] for r in rows}


def candidates(execute: Execute, columns: bool) -> list[RunSign]:
    """Every ``running`` run with its last sign of life (``columns``: the ledger has schema 3)."""
    extra = "r.host_id, r.heartbeat_interval_ms" if columns else "NULL, NULL"
    rows = execute(
        f"SELECT r.run_id, r.mode, r.host, r.pid, {extra}, r.started_ms, r.timeframe, max(h.ts_ms) "  # noqa: S608
        "FROM runs r LEFT JOIN heartbeats h ON h.run_id = r.run_id WHERE r.status = 'running' "
        "GROUP BY r.run_id, r.mode, r.host, r.pid, r.started_ms, r.timeframe"
        + (", r.host_id, r.heartbeat_interval_ms" if columns else ""), ())
    out = []
    for run_id, mode, host, pid, hid, interval, started_ms, timeframe, beat_ms in rows:
        last = max(int(started_ms), int(beat_ms)) if beat_ms is not None else int(started_ms)
        out.append(RunSign(run_id, mode, host, int(pid), hid, int(started_ms), last,
                           int(interval) if interval else default_interval_ms(_timeframe_ms(timeframe))))
    return out


def sweep(execute: Execute, backend: str, now_ms: int | None = None, *, write: bool = True,
          alive: Callable[[int, int], bool] = process_alive) -> list[LostRun]:
    """Mark every lost ``running`` run ``lost`` and return every lost run not yet
    acknowledged (found now or earlier), oldest first.

    Args:
        execute: runs SQL with ``?`` placeholders on one connection; the caller commits.
        backend: ``sqlite`` or ``postgresql``.
        now_ms: UTC ms now (a test may pin it).
        write: False to judge without writing (a read-only ledger): the runs found lost now
            are returned but stay ``running``.
        alive: the pid check (:func:`process_alive`).

    Raises:
        whatever ``execute`` raises (the caller's database errors).
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    columns = has_columns(execute, backend)
    here = host_id()
    found: list[LostRun] = []
    for run in candidates(execute, columns):
        why = verdict(run, now, here, alive)
        if why is None:
            continue
        if write and columns:
            changed = execute("UPDATE runs SET status = 'lost', lost_ms = ?, ended_ms = ? WHERE run_id = ? "
                              "AND status = 'running'", (now, run.last_seen_ms, run.run_id))
            if not changed or not changed[0][0]:
                continue  # it finished meanwhile, or another reader marked it first
            execute("UPDATE heartbeats SET status = 'lost' WHERE run_id = ? AND status = 'running'", (run.run_id,))
            execute("INSERT INTO events (run_id, ts_ms, level, kind, message, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                    (run.run_id, now, "warning", "run.lost", f"run {run.run_id} was lost: {why}",
                     json.dumps({"reason": why, "host": run.host, "pid": run.pid, "last_seen_ms": run.last_seen_ms,
                                 "interval_ms": run.interval_ms})))
        else:
            found.append(LostRun(run.run_id, run.mode, run.host, run.pid, now, run.last_seen_ms, why))
    if columns:
        found = unacknowledged(execute) + found
    return found


def unacknowledged(execute: Execute) -> list[LostRun]:
    """Every run marked ``lost`` and not acknowledged, oldest loss first, with its reason."""
    rows = execute(
        "SELECT r.run_id, r.mode, r.host, r.pid, r.lost_ms, r.ended_ms, "
        "(SELECT e.message FROM events e WHERE e.run_id = r.run_id AND e.kind = 'run.lost' "
        "ORDER BY e.id DESC LIMIT 1) FROM runs r WHERE r.status = 'lost' AND r.lost_acked_ms IS NULL "
        "ORDER BY r.lost_ms, r.run_id", ())
    out = []
    for run_id, mode, host, pid, lost_ms, ended_ms, message in rows:
        reason = (message or "").split(" was lost: ", 1)[-1] or "its bot stopped without saying so"
        out.append(LostRun(run_id, mode, host, int(pid), int(lost_ms or 0),
                           int(ended_ms) if ended_ms is not None else None, reason))
    return out


def acknowledge(execute: Execute, run_ids: Sequence[str] | None, now_ms: int | None = None) -> list[str]:
    """Acknowledge lost runs (``run_ids``; ``None``: every unacknowledged one); returns the
    ids acknowledged now. A run already acknowledged is left as it was.

    Raises:
        LookupError: a named run does not exist (``args[0]``: its id).
        ValueError: a named run is not lost (``args``: its id, its status).
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if run_ids is None:
        run_ids = [lost.run_id for lost in unacknowledged(execute)]
    done = []
    for run_id in run_ids:
        rows = execute("SELECT status, lost_acked_ms FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise LookupError(run_id)
        status, acked = rows[0]
        if status != "lost":
            raise ValueError(run_id, status)
        if acked is None:
            execute("UPDATE runs SET lost_acked_ms = ? WHERE run_id = ? AND lost_acked_ms IS NULL", (now, run_id))
            done.append(run_id)
    return done
