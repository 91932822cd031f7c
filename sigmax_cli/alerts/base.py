"""The alert vocabulary and the Channel interface (one small file per channel beside it)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from sigmax_cli.errors import SigmaxError

SEVERITIES = ("info", "warning", "error", "critical")


def severity_rank(severity: str) -> int:
    """0 for info … 3 for critical; unknown severities rank as critical (fail loud)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES) - 1


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes:
        trigger: what fired, the debounce key (e.g. ``risk.daily_loss_limit``).
        severity: info | warning | error | critical.
        title: one line.
        text: details (plain text; channels format it).
        ts_ms: when it fired, UTC ms.
        data: structured details (measured value, limit, run id...).
    """

    trigger: str
    severity: str
    title: str
    text: str
    ts_ms: int
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """``[CRITICAL] title: text`` for chat channels."""
        return f"[{self.severity.upper()}] {self.title}" + (f": {self.text}" if self.text else "")


class AlertError(SigmaxError):
    """A channel could not deliver an alert (the sentence names the channel, never its secret)."""

    exit_code = 69


class Channel(ABC):
    """Somewhere alerts go."""

    name: str

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver ``alert``; raise :class:`AlertError` when it could not be delivered."""
