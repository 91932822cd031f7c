"""Routing alerts to channels: severity threshold, per-trigger debounce, delivery off the
trading loop, and a history the caller records in the ledger (events ``alert.*``)."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sigmax_cli.alerts.base import Alert, AlertError, Channel, severity_rank

DEFAULT_DEBOUNCE_S = 300.0  # 5 minutes per trigger, the default


class AlertDispatcher:
    """Send alerts to every channel, at most once per trigger per ``debounce_s``.

    Args:
        channels: where alerts go.
        debounce_s: seconds during which a trigger that already fired is suppressed (the
            suppressed count is added to the next alert of that trigger).
        min_severity: alerts below it are dropped (info < warning < error < critical).
        background: deliver from a worker thread (trading loops) until :meth:`close`;
            ``False`` delivers inline.
        clock: seconds, monotonic enough for debouncing (injectable).

    ``history`` holds one dict per delivery attempt or suppression: ``{"ts_ms", "trigger",
    "severity", "channel", "status": sent|failed|debounced, "error"}``; callers drain it
    with :meth:`drain_history` and record it in the ledger.
    """

    def __init__(self, channels: list[Channel], *, debounce_s: float = DEFAULT_DEBOUNCE_S,
                 min_severity: str = "warning", background: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.channels = list(channels)
        self.debounce_s = debounce_s
        self.min_rank = severity_rank(min_severity)
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._history: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Alert | None] | None = None
        self._worker: threading.Thread | None = None
        if background and self.channels:
            self._queue = queue.Queue()
            self._worker = threading.Thread(target=self._run, args=(self._queue,), name="sigmax-alerts",
                                            daemon=True)
            self._worker.start()

    def notify(self, alert: Alert) -> bool:
        """Queue (or send) ``alert``; ``False`` when below the threshold or debounced."""
        if not self.channels or severity_rank(alert.severity) < self.min_rank:
            return False
        now = self.clock()
        with self._lock:
            last = self._last.get(alert.trigger)
            if last is not None and now - last < self.debounce_s:
                self._suppressed[alert.trigger] = self._suppressed.get(alert.trigger, 0) + 1
                self._history.append(self._entry(alert, "-", "debounced"))
                return False
            self._last[alert.trigger] = now
            suppressed = self._suppressed.pop(alert.trigger, 0)
        if suppressed:
            alert = Alert(alert.trigger, alert.severity, alert.title,
                          f"{alert.text} ({suppressed} more since the last alert)".strip(), alert.ts_ms, alert.data)
        with self._lock:  # put under the lock: close()'s end marker always comes after it
            pending = self._queue
            if pending is not None:
                pending.put(alert)
        if pending is None:  # inline dispatcher, or closed: deliver now rather than lose it
            self._deliver(alert)
        return True

    def _run(self, pending: queue.Queue[Alert | None]) -> None:
        while True:
            alert = pending.get()
            if alert is None:
                return
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        for channel in self.channels:
            try:
                channel.send(alert)
                entry = self._entry(alert, channel.name, "sent")
            except AlertError as exc:
                entry = self._entry(alert, channel.name, "failed", exc.sentence())
            with self._lock:
                self._history.append(entry)

    @staticmethod
    def _entry(alert: Alert, channel: str, status: str, error: str | None = None) -> dict[str, Any]:
        return {"ts_ms": int(time.time() * 1000), "trigger": alert.trigger, "severity": alert.severity,
                "title": alert.title, "channel": channel, "status": status, "error": error}

    def drain_history(self) -> list[dict[str, Any]]:
        """Every history entry since the last drain (thread-safe)."""
        with self._lock:
            items = list(self._history)
            self._history.clear()
        return items

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``) and stop the worker. Alerts notified
        afterwards are delivered inline (a run's close-out can still raise one). Idempotent."""
        with self._lock:
            pending, worker = self._queue, self._worker
            self._queue = self._worker = None
            if pending is not None:
                pending.put(None)
        if worker is not None:
            worker.join(timeout=timeout_s)


def record_history(ledger, run_id: str | None, entries: list[dict[str, Any]]) -> None:
    """Write dispatcher history entries to the ledger as ``alert.<status>`` events."""
    for e in entries:
        level = "warning" if e["status"] == "failed" else "info"
        message = f"{e['channel']}: {e['title']}" + (f" ({e['error']})" if e.get("error") else "")
        ledger.record_event(run_id, e["ts_ms"], level, f"alert.{e['status']}", message,
                            {"trigger": e["trigger"], "severity": e["severity"], "channel": e["channel"]})


def from_settings(settings, *, background: bool = True) -> AlertDispatcher | None:
    """The dispatcher of the configured channels, or ``None`` when none is configured."""
    from sigmax_cli.alerts.email import EmailChannel
    from sigmax_cli.alerts.telegram import TelegramChannel
    from sigmax_cli.alerts.webhook import WebhookChannel

    a = settings.alerts
    channels: list[Channel] = []
    if settings.alert_webhook_url is not None:
        channels.append(WebhookChannel(settings.alert_webhook_url.get_secret_value()))
    if a.telegram_bot_token is not None and a.telegram_chat_id:
        channels.append(TelegramChannel(a.telegram_bot_token.get_secret_value(), a.telegram_chat_id,
                                        a.telegram_api_url))
    if a.smtp_host and a.smtp_to:
        channels.append(EmailChannel(a.smtp_host, a.smtp_port, a.smtp_from, a.smtp_to, a.smtp_user,
                                     a.smtp_password.get_secret_value() if a.smtp_password else None,
                                     a.smtp_starttls))
    if not channels:
        return None
    return AlertDispatcher(channels, debounce_s=a.debounce_seconds, min_severity=a.min_severity,
                           background=background)
