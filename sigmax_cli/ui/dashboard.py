"""Observers that show a running engine: the rich :class:`Dashboard` and :class:`PlainProgress`.

Both implement :class:`sigmax_cli.ui.observer.EngineObserver`. Both are throttled by the
wall clock (an injectable ``clock``, seconds, monotonic): the engine may process 100,000
bars per second, so neither builds a snapshot (the engine's ``snapshot_factory``) more
often than it redraws or prints.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live

from sigmax_cli.snapshot import EngineSnapshot, EventRow
from sigmax_cli.ui.observer import SnapshotFactory
from sigmax_cli.ui.panels import build_layout, plain_line, utc_minute

Clock = Callable[[], float]

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def _level(name: str) -> int:
    return _LEVELS.get(name.upper(), 20)


class Dashboard:
    """Full-terminal rich dashboard (:func:`sigmax_cli.ui.panels.build_layout`).

    Use as a context manager around the engine run; the engine calls the observer methods.
    Redraws from the newest snapshot at most ``refresh_per_second`` times per second of
    ``clock`` time; an event of level WARNING or above makes the next step redraw at once
    (so a halt shows without waiting). ``on_start`` and ``on_finish`` always redraw.

    Args:
        console: where to draw; a new :class:`rich.console.Console` when ``None``.
        refresh_per_second: redraw limit, > 0.
        clock: seconds, monotonic; ``time.monotonic`` unless a test injects one.
        screen: draw on the terminal's alternate screen (restored on exit).
        layout: snapshot -> renderable; :func:`~sigmax_cli.ui.panels.build_layout` unless a
            command adds panels (``run`` adds the exchange's).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        refresh_per_second: float = 4.0,
        clock: Clock = time.monotonic,
        screen: bool = True,
        layout: Callable[[EngineSnapshot], Any] = build_layout,
    ) -> None:
        if not refresh_per_second > 0:
            raise ValueError("refresh_per_second must be positive")
        self.console = console or Console()
        self.interval = 1.0 / refresh_per_second
        self._clock = clock
        self._screen = screen
        self._layout = layout
        self._live: Live | None = None
        self._last_draw = -math.inf
        self._urgent = False
        self.snapshot: EngineSnapshot | None = None
        """The newest snapshot drawn (``None`` before the first)."""
        self.redraws = 0
        """How many times the layout was rebuilt (for tests and benchmarks)."""

    def __enter__(self) -> Dashboard:
        self._live = Live(
            self._layout(self.snapshot) if self.snapshot else None,
            console=self.console, screen=self._screen, auto_refresh=False,
        )
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def _draw(self, snapshot: EngineSnapshot) -> None:
        self.snapshot = snapshot
        self._last_draw = self._clock()
        self._urgent = False
        self.redraws += 1
        if self._live is not None:
            self._live.update(self._layout(snapshot), refresh=True)

    def on_start(self, snapshot: EngineSnapshot) -> None:
        self._draw(snapshot)

    def on_step(self, snapshot_factory: SnapshotFactory) -> None:
        if self._urgent or self._clock() - self._last_draw >= self.interval:
            self._draw(snapshot_factory())

    def on_event(self, event: EventRow) -> None:
        if _level(event.level) >= _LEVELS["WARNING"]:
            self._urgent = True

    def on_finish(self, snapshot: EngineSnapshot) -> None:
        self._draw(snapshot)


class PlainProgress:
    """Progress as plain lines (:func:`sigmax_cli.ui.panels.plain_line`) for non-terminals.

    Prints a start line, then a progress line whenever ``every_seconds`` have passed since
    the last one or the run crossed another ``every_pct`` percent of its bars, every event
    at or above ``min_event_level``, and the final line at the end. The snapshot is built
    at most once per ``poll_seconds`` (so a percent mark may print up to that late).

    Args:
        file: text stream; ``sys.stdout`` when ``None``. Flushed after every line.
        every_seconds: time between lines, > 0.
        every_pct: progress between lines in percent; ``0`` turns percent marks off (live
            feeds have no total and never print them).
        poll_seconds: how often to look at progress at most.
        clock: seconds, monotonic.
        min_event_level: lowest event level printed (``DEBUG``..``CRITICAL``).
    """

    def __init__(
        self,
        file: TextIO | None = None,
        *,
        every_seconds: float = 60.0,
        every_pct: float = 10.0,
        poll_seconds: float = 1.0,
        clock: Clock = time.monotonic,
        min_event_level: str = "WARNING",
    ) -> None:
        if not every_seconds > 0 or every_pct < 0 or poll_seconds < 0:
            raise ValueError("every_seconds must be positive, every_pct and poll_seconds >= 0")
        self.file = file if file is not None else sys.stdout
        self.every_seconds = every_seconds
        self.every_pct = every_pct
        self.poll_seconds = min(poll_seconds, every_seconds)
        self._clock = clock
        self._min_level = _level(min_event_level)
        self._last_poll = -math.inf
        self._last_print = -math.inf
        self._mark = 0

    def _print(self, line: str) -> None:
        print(line, file=self.file, flush=True)

    def _pct_mark(self, snapshot: EngineSnapshot) -> int:
        if not self.every_pct or not snapshot.bars_total:
            return 0
        return int(100.0 * snapshot.bars_done / snapshot.bars_total // self.every_pct)

    def on_start(self, snapshot: EngineSnapshot) -> None:
        s = snapshot
        total = f"{s.bars_total} bars" if s.bars_total else "live bars"
        self._print(
            f"start {s.mode} run {s.run_id} strategy {s.strategy} profile {s.profile}: {total}"
        )
        now = self._clock()
        self._last_poll = self._last_print = now
        self._mark = self._pct_mark(snapshot)

    def on_step(self, snapshot_factory: SnapshotFactory) -> None:
        now = self._clock()
        if now - self._last_poll < self.poll_seconds:
            return
        self._last_poll = now
        snapshot = snapshot_factory()
        mark = self._pct_mark(snapshot)
        if mark > self._mark or now - self._last_print >= self.every_seconds:
            self._print(plain_line(snapshot))
            self._last_print = now
            self._mark = max(mark, self._mark)

    def on_event(self, event: EventRow) -> None:
        if _level(event.level) >= self._min_level:
            when = utc_minute(event.ts_ms)
            self._print(f"{when} {event.level.upper()} {event.kind}: {event.message}")

    def on_finish(self, snapshot: EngineSnapshot) -> None:
        self._print(plain_line(snapshot))
