"""Observers of a training run (:class:`TrainObserver`): a rich progress bar for terminals,
plain lines for cron and pipes, nothing (:class:`NullTrainObserver`).

The first two are context managers; use them around :func:`sigmax_cli.rl.train.train_rl`.
Steps shown never exceed the total (PPO and A2C train in whole rollouts, so the step count
can end past the budget, and a resumed run starts part-way).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


class TrainObserver(Protocol):
    """Receives training progress; every method is optional in spirit (implement all)."""

    def on_start(self, total: int, done: int) -> None:
        """Training starts at ``done`` of ``total`` timesteps (``done > 0`` when resumed)."""

    def on_progress(self, done: int, total: int) -> None:
        """``done`` timesteps so far."""

    def on_eval(self, done: int, validation_return_pct: float, best_return_pct: float) -> None:
        """A validation pass ended (returns of the whole validation part, percent)."""

    def on_stage(self, text: str) -> None:
        """A step after training began (``"testing"``, ``"saving"``)."""

    def on_finish(self) -> None:
        """Done (also after an error)."""


class NullTrainObserver:
    """Ignores everything (tests, ``--quiet``, ``--json`` under cron)."""

    def on_start(self, total: int, done: int) -> None:
        return None

    def on_progress(self, done: int, total: int) -> None:
        return None

    def on_eval(self, done: int, validation_return_pct: float, best_return_pct: float) -> None:
        return None

    def on_stage(self, text: str) -> None:
        return None

    def on_finish(self) -> None:
        return None


class RichTrainProgress:
    """A rich progress bar: steps done / total, elapsed and remaining time, the latest
    validation return (percent) and the stage after training.

    Args:
        console: a :class:`rich.console.Console` (stdout, or stderr under ``--json``).
    """

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichTrainProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def on_start(self, total: int, done: int) -> None:
        self._task = self.progress.add_task("training", total=total, completed=done, status="")

    def on_progress(self, done: int, total: int) -> None:
        if self._task is not None:
            self.progress.update(self._task, completed=min(done, total))

    def on_eval(self, done: int, validation_return_pct: float, best_return_pct: float) -> None:
        if self._task is not None:
            self.progress.update(self._task, status=f"validation {validation_return_pct:+.2f}% "
                                                    f"(best {best_return_pct:+.2f}%)")

    def on_stage(self, text: str) -> None:
        if self._task is not None:
            self.progress.update(self._task, description=text)

    def on_finish(self) -> None:
        self.progress.refresh()


class PlainTrainProgress:
    """One line per ``every_pct`` percent of the steps, per validation pass and per stage.

    Args:
        file: text stream (stdout when ``None``), flushed after each line.
        every_pct: progress between lines, percent.
    """

    def __init__(self, file: TextIO | None = None, every_pct: float = 10.0) -> None:
        self.file = file if file is not None else sys.stdout
        self.every_pct = every_pct
        self._mark = 0
        self._t0 = time.monotonic()

    def __enter__(self) -> PlainTrainProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def _print(self, line: str) -> None:
        print(line, file=self.file, flush=True)

    def on_start(self, total: int, done: int) -> None:
        self._t0 = time.monotonic()
        self._mark = int(100.0 * done / total // self.every_pct) if total else 0
        self._print(f"training {total:,} steps" + (f", resuming at {done:,}" if done else ""))

    def on_progress(self, done: int, total: int) -> None:
        done = min(done, total)
        mark = int(100.0 * done / total // self.every_pct) if total else 0
        if mark > self._mark:
            self._mark = mark
            self._print(f"step {done:,}/{total:,} ({100.0 * done / total:.0f}%) "
                        f"after {time.monotonic() - self._t0:,.0f} s")

    def on_eval(self, done: int, validation_return_pct: float, best_return_pct: float) -> None:
        self._print(f"step {done:,}: validation return {validation_return_pct:+.2f}% (best {best_return_pct:+.2f}%)")

    def on_stage(self, text: str) -> None:
        self._print(text)

    def on_finish(self) -> None:
        return None
