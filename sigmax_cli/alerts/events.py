"""Which recorded events reach a human: one policy shared by the engine's own events and
those the live run records around it (the live broker, reconciliation, the feed)."""

from __future__ import annotations

from typing import Any

from sigmax_cli.alerts.base import Alert

WARNING_KINDS = ("order.rejections_repeated",)
"""Warning-level event kinds that alert besides ``risk.*`` (a trip that only reduces)."""


def alert_for(run_id: str | None, ts_ms: int, level: str, kind: str, message: str,
              data: dict[str, Any] | None = None) -> Alert | None:
    """The alert an event raises, or ``None`` when it raises none.

    Every ``critical`` event alerts (an order whose fate the exchange cannot tell,
    ``order.unknown``; a ledger/exchange difference, ``reconcile.discrepancy``; a halt; a
    broken invariant...), whatever its kind. Of the ``warning`` events only risk trips
    (``risk.*``, not the per-order denials ``risk.denied.*``) and the kinds in
    :data:`WARNING_KINDS` do. ``info`` never alerts.

    Args:
        run_id: the run, put before the message in the alert's title.
        ts_ms: when the event happened, UTC ms.
        level, kind, message, data: the event as recorded in the ledger.

    Returns:
        An :class:`Alert` whose trigger (the debounce key) is the event's kind.
    """
    if level == "critical":
        severity = "critical"
    elif level == "warning" and ((kind.startswith("risk.") and not kind.startswith("risk.denied"))
                                 or kind in WARNING_KINDS):
        severity = "warning"
    else:
        return None
    title = f"{run_id}: {message}" if run_id else message
    return Alert(kind, severity, title, "", ts_ms, dict(data or {}))
