"""Order rejections: counted by cause, not re-sent every bar, and a blocked exit made visible.

A rejected order that the strategy asks for again on the next bar would be rejected again,
bar after bar (a stranded position once produced 9,825 identical rejections in one
replay). The :class:`RejectionTracker` counts consecutive rejections per symbol, side and
cause (:attr:`~sigmax_cli.errors.OrderRejected.kind`). At ``threshold`` in a row
(``risk.max_consecutive_rejections``) it reports the streak once (the engine records an
``order.rejections_repeated`` event and raises an alert) and, for an exit (a reduce-only
sell), marks the symbol's exit as blocked: the ``exit_blocked`` rule then refuses new
entries on that symbol, and the dashboard, ``health`` and ``monitor`` show it. From then on
the same order is retried with exponential back-off in bars (2, 4, 8 ... at most
:data:`MAX_BACKOFF_STEPS`), not every bar. An accepted order of that symbol and side ends
the streak and unblocks the exit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

MAX_BACKOFF_STEPS = 64
"""Longest wait, in steps (bars), between retries of an order rejected ``threshold`` times."""


@dataclass
class Streak:
    """Consecutive rejections of one symbol and side.

    Attributes:
        cause: the newest rejection's kind (a change of cause starts a new streak).
        count: rejections in a row with that cause.
        message: the newest rejection's sentence.
        reduce_only: the rejected order was an exit.
        since_ms: time of the first rejection of the streak (UTC ms).
        retry_step: first step index at which the order may be sent again.
    """

    cause: str
    count: int
    message: str
    reduce_only: bool
    since_ms: int
    retry_step: int = 0


class RejectionTracker:
    """Consecutive rejections per (symbol, side), counts per cause, blocked exits.

    Args:
        threshold: rejections in a row (same symbol, side and cause) that make a streak
            worth an event and an alert, and start the back-off (>= 1).
    """

    def __init__(self, threshold: int) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.threshold = threshold
        self.by_cause: Counter[str] = Counter()
        self.streaks: dict[tuple[str, str], Streak] = {}
        self.exits_blocked: dict[str, str] = {}  # symbol -> the sentence of the rejection that blocks it

    def may_send(self, symbol: str, side: str, step: int) -> bool:
        """False while a repeated rejection's back-off lasts (``step``: the engine's step index)."""
        streak = self.streaks.get((symbol, side))
        return streak is None or step >= streak.retry_step

    def rejected(self, symbol: str, side: str, kind: str, message: str, reduce_only: bool, now_ms: int,
                 step: int) -> Streak:
        """Count one rejection; returns its streak. ``streak.count == threshold`` is the
        moment to report it (once); an exit's streak then blocks the symbol's exit."""
        self.by_cause[kind] += 1
        key = (symbol, side)
        streak = self.streaks.get(key)
        if streak is None or streak.cause != kind:
            streak = self.streaks[key] = Streak(kind, 0, message, reduce_only, now_ms)
        streak.count += 1
        streak.message, streak.reduce_only = message, reduce_only
        if streak.count >= self.threshold:
            streak.retry_step = step + min(2 ** (streak.count - self.threshold + 1), MAX_BACKOFF_STEPS)
            if reduce_only:
                self.exits_blocked[symbol] = message
        return streak

    def accepted(self, symbol: str, side: str) -> Streak | None:
        """An order of ``symbol`` and ``side`` went through: end its streak; returns the
        streak that ended (``None`` if there was none). An exit unblocks the symbol."""
        streak = self.streaks.pop((symbol, side), None)
        if streak is not None and streak.reduce_only:
            self.exits_blocked.pop(symbol, None)
        return streak

    def position_closed(self, symbol: str) -> None:
        """The symbol holds nothing to sell any more: no exit can be blocked."""
        self.streaks.pop((symbol, "sell"), None)
        self.exits_blocked.pop(symbol, None)
