"""How a running engine reports progress: the :class:`EngineObserver` protocol.

The engine has no UI. It calls an observer at start, after every step (one bar time) and
on every event, and at the end; the observer decides what to show and how often. The same
engine function therefore runs under the rich dashboard
(:class:`sigmax_cli.ui.dashboard.Dashboard`), under cron
(:class:`sigmax_cli.ui.dashboard.PlainProgress`) and in tests (:class:`NullObserver`).

``on_step`` receives a zero-argument factory rather than a snapshot, because the engine
may process 100,000 bars per second and building an :class:`EngineSnapshot` costs more
than a bar: an observer calls the factory only when it actually redraws.

This module imports no rich, so the engine can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from sigmax_cli.snapshot import EngineSnapshot, EventRow

SnapshotFactory = Callable[[], EngineSnapshot]
"""Builds the engine's current snapshot when called (may be costly; call sparingly)."""


@runtime_checkable
class EngineObserver(Protocol):
    """Receives a trading run's progress. Calls come from the engine's thread, in order:
    ``on_start`` once, then ``on_step`` / ``on_event`` interleaved, then ``on_finish`` once
    (also after an error or a stop, with the last state)."""

    def on_start(self, snapshot: EngineSnapshot) -> None:
        """The run is set up; nothing traded yet."""
        ...

    def on_step(self, snapshot_factory: SnapshotFactory) -> None:
        """One step (all bars of one bar time) was processed."""
        ...

    def on_event(self, event: EventRow) -> None:
        """Something worth telling happened (order rejected, trading halted, ...)."""
        ...

    def on_finish(self, snapshot: EngineSnapshot) -> None:
        """The run ended; ``snapshot`` is its final state."""
        ...


class NullObserver:
    """An observer that ignores everything (tests, benchmarks, ``--quiet``)."""

    def on_start(self, snapshot: EngineSnapshot) -> None:
        return None

    def on_step(self, snapshot_factory: SnapshotFactory) -> None:
        return None

    def on_event(self, event: EventRow) -> None:
        return None

    def on_finish(self, snapshot: EngineSnapshot) -> None:
        return None
