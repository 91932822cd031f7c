"""Run health checks concurrently, each within its own time limit, and sum them up.

Every selected check starts at once in its own thread, so a run takes about as long as its
slowest check. Each result is a :class:`concurrent.futures.Future` completed by a *daemon*
thread rather than a ``ThreadPoolExecutor`` worker: the pool joins its workers at
interpreter exit, so a check stuck in a driver past its time limit would hold a cron run
open; a daemon thread is simply abandoned.

A check that has not answered by its deadline is CRITICAL ("no answer within N s"): a
timeout is critical by default in the monitoring plugins (``socket_timeout_state``), since a
component that does not answer in time is not usable. A check that raises an unexpected
exception is UNKNOWN (the check, not the component, failed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sigmax_cli.errors import ConfigError
from sigmax_cli.health.backup import BackupCheck
from sigmax_cli.health.base import Check, CheckContext, CheckResult, Skipped, Status, now_ms, short_error, worst
from sigmax_cli.health.data import DataCheck
from sigmax_cli.health.exchange import ExchangeCheck
from sigmax_cli.health.exits import ExitsCheck
from sigmax_cli.health.heartbeat import HeartbeatCheck
from sigmax_cli.health.killswitch import KillSwitchCheck
from sigmax_cli.health.ledger import LedgerCheck
from sigmax_cli.health.lock import RunLock
from sigmax_cli.health.orders import OrdersCheck
from sigmax_cli.health.redis import RedisCheck
from sigmax_cli.health.system import SystemCheck

if TYPE_CHECKING:
    from sigmax_cli.settings import Settings

CHECKS: dict[str, type[Check]] = {cls.name: cls for cls in (
    LedgerCheck, RedisCheck, ExchangeCheck, SystemCheck, HeartbeatCheck, ExitsCheck, KillSwitchCheck, DataCheck,
    BackupCheck, OrdersCheck,
)}
"""Every check by name, in display order."""

LOCAL_CHECKS = ("ledger", "redis", "system", "heartbeat", "exits", "killswitch", "data", "backup")
"""The checks that talk to nothing beyond this host's configured services (no exchange)."""


@dataclass
class HealthReport:
    """The outcome of one health run.

    Attributes:
        results: every measurement, in check order.
        skipped: measurements that did not apply, with the reason.
        checks: the names of the checks that ran.
        started_ms: when the run started, UTC ms.
        duration_s: wall time of the whole run, seconds.
        notes: remarks about the run itself (e.g. it ran without the lock: no SIGMAX_HOME).
    """

    results: list[CheckResult]
    skipped: list[Skipped]
    checks: list[str]
    started_ms: int
    duration_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> Status:
        """The worst result (OK < UNKNOWN < WARNING < CRITICAL); UNKNOWN when nothing was
        measured at all (every selected measurement skipped)."""
        if not self.results:
            return Status.UNKNOWN
        return worst(r.status for r in self.results)

    def own_failure(self, measurement: str, message: str) -> CheckResult:
        """Record an OS error of the health run itself (its lock file, its ``--prometheus``
        textfile) as a CRITICAL result ``health:<measurement>``; returns it. Never raised:
        a health run that cannot write its own files has found a problem to report."""
        result = CheckResult("health", measurement, Status.CRITICAL, message)
        self.results.append(result)
        return result

    def problems(self) -> list[CheckResult]:
        """The results that are not OK, worst first (stable within a status)."""
        bad = [r for r in self.results if r.status is not Status.OK]
        return sorted(bad, key=lambda r: -r.status.severity)


def select(names: Iterable[str] | None) -> list[str]:
    """Validate check names (``None`` or empty: all), in display order, without duplicates.

    Raises:
        ConfigError: an unknown name (the known ones are listed).
    """
    wanted = [n.strip().lower() for n in (names or []) if n and n.strip()]
    if not wanted:
        return list(CHECKS)
    unknown = [n for n in wanted if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {', '.join(repr(n) for n in unknown)}",
                          f"use --check with some of {', '.join(CHECKS)}")
    return [n for n in CHECKS if n in wanted]


def check_health(settings: Settings, names: Iterable[str] | None = None, *, lock: bool = True,
                 clock: Callable[[], int] = now_ms) -> HealthReport:
    """The one entry point of ``sigmax health``: validate ``names``, take the cron lock in
    ``SIGMAX_HOME`` (unless ``lock`` is False), run the checks.

    An OS error on the lock file (missing or read-only ``SIGMAX_HOME``, a full disk) is a
    CRITICAL result ``health:lock`` in the report, never an exception.

    Raises:
        ConfigError: an unknown check name.
        LockHeld: another run holds the lock (exit 3, UNKNOWN; see :mod:`.lock`).
    """
    selected = select(names)
    if not lock:
        return run_checks(settings, selected, clock=clock)
    with RunLock(settings.home) as held:
        report = run_checks(settings, selected, clock=clock)
    if held.error:
        report.own_failure("lock", held.error)
    if held.note:
        report.notes.append(held.note)
    return report


def run_checks(settings: Settings, names: Iterable[str] | None = None, *,
               clock: Callable[[], int] = now_ms) -> HealthReport:
    """Run the checks ``names`` (all when ``None``) concurrently.

    Each check gets ``check.timeout_s(settings.health)`` seconds from the common start.

    Raises:
        ConfigError: an unknown check name.
    """
    selected = select(names)
    started_ms = clock()
    t0 = time.monotonic()
    pending: list[tuple[Check, Future, float]] = []
    for name in selected:
        check = CHECKS[name]()
        timeout_s = check.timeout_s(settings.health)
        future: Future = Future()
        ctx = CheckContext(settings=settings, timeout_s=timeout_s, clock=clock, deadline=t0 + timeout_s)
        threading.Thread(target=_work, args=(check, ctx, future), name=f"health-{name}", daemon=True).start()
        pending.append((check, future, t0 + timeout_s))  # = ctx.deadline
    results: list[CheckResult] = []
    skipped: list[Skipped] = []
    for check, future, deadline in pending:
        try:
            outcomes = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            timeout_s = check.timeout_s(settings.health)
            outcomes = [CheckResult(check.name, check.primary, Status.CRITICAL,
                                    f"no answer within {timeout_s:g} s", time_ms=clock())]
        for outcome in outcomes:
            (skipped if isinstance(outcome, Skipped) else results).append(outcome)
    return HealthReport(results, skipped, selected, started_ms, round(time.monotonic() - t0, 3))


def _work(check: Check, ctx: CheckContext, future: Future) -> None:
    if not future.set_running_or_notify_cancel():  # pragma: no cover - nobody cancels these
        return
    try:
        outcomes = check.run(ctx)
        if not outcomes:
            raise RuntimeError(f"check {check.name} returned no result")
    except Exception as exc:  # noqa: BLE001 - a broken check is UNKNOWN, never a traceback
        outcomes = [CheckResult(check.name, check.primary, Status.UNKNOWN,
                                f"the check failed: {type(exc).__name__}: {short_error(exc)}", time_ms=ctx.clock())]
    future.set_result(outcomes)


def watch(settings: Settings, names: Iterable[str] | None, interval_s: float, stop: threading.Event,
          on_report: Callable[[HealthReport], None], rounds: int | None = None) -> HealthReport | None:
    """Run the checks every ``interval_s`` seconds until ``stop`` is set (or ``rounds`` runs),
    handing each report to ``on_report``; returns the last report. A watch does not take the
    cron lock: it is interactive, and holding the lock for its whole life would make every
    cron run meanwhile report UNKNOWN.

    Raises:
        ConfigError: an unknown check name (before the first round).
    """
    selected = select(names)
    last: HealthReport | None = None
    done = 0
    while not stop.is_set():
        started = time.monotonic()
        last = run_checks(settings, selected)
        on_report(last)
        done += 1
        if rounds is not None and done >= rounds:
            break
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    return last
