"""The ``Check`` interface and what a check returns.

A check (one small file per component beside this one) measures one part of a sigmax
installation and returns one or more :class:`CheckResult` (a status, an observed value
with its unit, a one-line message and the thresholds it was graded against), or a
:class:`Skipped` with the reason when a measurement does not apply (no Redis configured,
no API keys). The runner (:mod:`sigmax_cli.health.runner`) runs checks concurrently, each
within its own time limit, and the formatters (:mod:`sigmax_cli.health.formats`) render
the results.

Statuses follow the monitoring-plugin convention (Nagios plugin guidelines, kept by the
monitoring-plugins project): OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3 - the numbers are the
exit codes. The overall status is the *worst* one in the order OK < UNKNOWN < WARNING <
CRITICAL (monitoring-plugins ``max_state_alt``, lib/utils_base.c): a real problem is never
hidden behind a check that could not tell.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from sigmax_cli.settings import HealthSettings, Settings, Thresholds


class Status(IntEnum):
    """A monitoring-plugin state; the value is the exit code of ``sigmax health``."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Rank for "worst of": OK 0 < UNKNOWN 1 < WARNING 2 < CRITICAL 3 (``max_state_alt``)."""
        return _SEVERITY[self]

    @property
    def label(self) -> str:
        """Lower-case name: ``ok``, ``warning``, ``critical``, ``unknown``."""
        return self.name.lower()


_SEVERITY = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The worst of ``statuses`` by :attr:`Status.severity`; OK for none."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


def now_ms() -> int:
    """Wall-clock time in UTC ms since epoch."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Limits:
    """The thresholds one value is graded against.

    Attributes:
        warning, critical: in the unit of the value.
        lower_is_worse: True for a floor (free disk): trips *below* the thresholds.
        symmetric: grade ``abs(value)`` (clock skew may have either sign).

    A value past a threshold trips it, a value equal to it does not: the range semantics of
    the Nagios plugin guidelines, where a threshold ``10`` alerts above 10 and ``10:``
    below 10.
    """

    warning: float
    critical: float
    lower_is_worse: bool = False
    symmetric: bool = False

    @classmethod
    def of(cls, thresholds: Thresholds, *, symmetric: bool = False, offset: float = 0.0) -> Limits:
        """From a settings pair; ``offset`` is added to both (lateness beyond one bar)."""
        return cls(thresholds.warning + offset, thresholds.critical + offset,
                   lower_is_worse=thresholds.lower_is_worse, symmetric=symmetric)

    def grade(self, value: float) -> Status:
        """OK, WARNING or CRITICAL for ``value`` (see the class docstring for edges)."""
        v = abs(value) if self.symmetric else value
        if self.lower_is_worse:
            return Status.CRITICAL if v < self.critical else Status.WARNING if v < self.warning else Status.OK
        return Status.CRITICAL if v > self.critical else Status.WARNING if v > self.warning else Status.OK

    def scaled(self, factor: float) -> Limits:
        """The same limits in another unit (``factor`` times each threshold)."""
        return Limits(self.warning * factor, self.critical * factor, self.lower_is_worse, self.symmetric)


@dataclass(frozen=True)
class CheckResult:
    """One measurement of one check.

    Attributes:
        check: the check's name (``ledger``); with ``measurement`` it forms the health+json
            key ``ledger:latency``.
        measurement: what was measured (``latency``, ``schema``, ``age``).
        status: OK / WARNING / CRITICAL / UNKNOWN.
        message: one line for a human, no secret in it (URLs are shown redacted).
        value: the observed value (a number in ``unit``, a bool, or ``None`` when nothing
            could be observed).
        unit: ``ms``, ``s``, ``h``, ``%``, ``B`` (bytes), or ``""`` (a count or a ratio).
        limits: the thresholds the value was graded against, if any.
        component: what the value belongs to when a check measures several (a bot id).
        time_ms: when it was observed, UTC ms.
    """

    check: str
    measurement: str
    status: Status
    message: str
    value: float | int | bool | None = None
    unit: str = ""
    limits: Limits | None = None
    component: str | None = None
    time_ms: int = field(default_factory=now_ms)

    @property
    def key(self) -> str:
        """``component:measurement`` as health+json keys its checks (``ledger:latency``)."""
        return f"{self.check}:{self.measurement}"


@dataclass(frozen=True)
class Skipped:
    """A measurement that does not apply here, and why (not a failure, not counted).

    Attributes:
        check, measurement: as in :class:`CheckResult`.
        reason: one line, e.g. ``"SIGMAX_REDIS_URL is not set"``.
    """

    check: str
    measurement: str
    reason: str

    @property
    def key(self) -> str:
        return f"{self.check}:{self.measurement}"


Outcome = CheckResult | Skipped


@dataclass(frozen=True)
class CheckContext:
    """What a check gets to run with.

    Attributes:
        settings: the invocation's settings (``settings.health`` holds the thresholds).
        timeout_s: seconds this check may take in all.
        clock: UTC ms now (a test may pin it).
        deadline: ``time.monotonic()`` by which the runner stops waiting for the check
            (``None``: ``timeout_s`` from whenever :meth:`left_s` is asked).
    """

    settings: Settings
    timeout_s: float
    clock: Callable[[], int] = now_ms
    deadline: float | None = None

    @property
    def health(self) -> HealthSettings:
        return self.settings.health

    def left_s(self) -> float:
        """Seconds to give the next blocking call (a driver's or a socket's timeout): what is
        left before the deadline, less a margin (a fifth of the limit, at most 0.5 s) so that
        the call's own, precise error arrives before the runner's generic "no answer"."""
        margin = min(0.5, self.timeout_s * 0.2)
        end = self.deadline if self.deadline is not None else time.monotonic() + self.timeout_s
        return max(0.05, end - margin - time.monotonic())


class Check(ABC):
    """One health check. Subclasses set ``name``, ``primary`` and implement :meth:`run`.

    ``run`` turns the faults it expects (connection refused, wrong password, missing
    table) into results with the right status and a clear message; every blocking call gets
    ``ctx.left_s()`` as its timeout where the library takes one. The runner still enforces the
    time limit (a check that has not answered by then is CRITICAL, the monitoring-plugins
    default for a timeout) and turns any unexpected exception into UNKNOWN.

    Attributes:
        name: the name ``--check`` selects (``ledger``).
        primary: the measurement runner-made results (timeout, crash) are filed under.
        description: one line for ``--help`` and the README.
    """

    name: ClassVar[str]
    primary: ClassVar[str]
    description: ClassVar[str]

    def timeout_s(self, health: HealthSettings) -> float:
        """Seconds this check may take (``health.timeout_s`` unless a check needs more)."""
        return health.timeout_s

    @abstractmethod
    def run(self, ctx: CheckContext) -> list[Outcome]:
        """Measure; return one or more results (or skips), never an empty list."""

    # helpers for subclasses ---------------------------------------------------------------
    def result(self, measurement: str, status: Status, message: str, ctx: CheckContext, **kw: Any) -> CheckResult:
        """A :class:`CheckResult` of this check, observed now."""
        return CheckResult(self.name, measurement, status, message, time_ms=ctx.clock(), **kw)

    def graded(self, measurement: str, value: float, unit: str, limits: Limits, message: str,
               ctx: CheckContext, component: str | None = None) -> CheckResult:
        """A result whose status is ``limits.grade(value)``."""
        return self.result(measurement, limits.grade(value), message, ctx, value=value, unit=unit,
                           limits=limits, component=component)

    def skip(self, measurement: str, reason: str) -> Skipped:
        return Skipped(self.name, measurement, reason)


def short_error(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's text (its class name when empty), at most ``limit`` chars."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def fmt_duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``5.2 h``, ``3.1 d`` - for messages."""
    s = abs(seconds)
    if s < 120:
        text = f"{s:.0f} s"
    elif s < 7200:
        text = f"{s / 60:.0f} min"
    elif s < 172_800:
        text = f"{s / 3600:.1f} h"
    else:
        text = f"{s / 86400:.1f} d"
    return f"-{text}" if seconds < 0 else text
