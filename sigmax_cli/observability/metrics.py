"""The one catalogue of the Prometheus metrics sigmax publishes.

``sigmax run --metrics-port`` (:class:`sigmax_cli.telemetry.LiveMetrics`) and ``sigmax health
--prometheus FILE`` (:func:`sigmax_cli.health.formats.prometheus_text`) and the batch jobs'
Pushgateway pushes (:mod:`sigmax_cli.observability.push`) build their collectors
from :data:`CATALOGUE` through :func:`build`, and the alert rules and dashboards of
``sigmax observability export`` (:mod:`sigmax_cli.observability.export`) refer to metrics by
these names only; a test checks every name the rules and dashboards use is here, so renaming
a metric breaks a test rather than a dashboard.

This module imports nothing heavy (``prometheus_client`` only inside :func:`build`), so the
``health`` command's start-up stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

MetricType = Literal["counter", "gauge", "histogram"]
Source = Literal["run", "health", "push"]

STATUS_CODES = "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"
"""The values of ``sigmax_health_status`` and ``sigmax_health_check_status``."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of ``sigmax_exchange_latency_seconds``'s buckets."""


@dataclass(frozen=True)
class Metric:
    """One metric family as Prometheus exposes it.

    Attributes:
        name: the exposed family name; a counter's ends in ``_total`` (``sigmax_orders_total``).
        type: ``counter``, ``gauge`` or ``histogram``.
        help: the ``# HELP`` text.
        labels: label names, in order.
        unit: the base unit of the value (``seconds``, ``ratio``, ``bytes``, ``quote``
            currency, ``state`` code, ``1`` for counts and flags).
        source: who publishes it: ``run`` (``sigmax run --metrics-port``), ``health`` (the
            ``health --prometheus`` textfile read by node_exporter) or ``push`` (the batch jobs
            ``backup``, ``research`` and ``signals tail`` with ``--pushgateway URL``; the
            Pushgateway adds the ``job`` and ``instance`` labels of the push).
    """

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    unit: str = "1"
    source: Source = "run"

    @property
    def series(self) -> tuple[str, ...]:
        """The sample names a query may use: ``name`` itself, or a histogram's
        ``_bucket``/``_count``/``_sum`` series."""
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum")
        return (self.name,)


def _m(*args: Any, **kw: Any) -> Metric:
    return Metric(*args, **kw)


HEALTH = "health"
_RUN_METRICS = (
    _m("sigmax_orders_total", "counter", "Orders placed on the exchange", ("symbol", "side")),
    _m("sigmax_fills_total", "counter", "Executions of the run's orders", ("symbol", "side")),
    _m("sigmax_order_rejections_total", "counter", "Orders the exchange refused, by cause (OrderRejected.kind)",
       ("cause",)),
    _m("sigmax_risk_denials_total", "counter", "Orders the risk guard denied before they reached the exchange"),
    _m("sigmax_exit_blocked", "gauge", "1 while a symbol's exit is blocked (exit orders refused again and again)",
       ("symbol",)),
    _m("sigmax_buy_and_hold_equity", "gauge",
       "Buy-and-hold benchmark: initial equity bought equally into the run's symbols on its first bar, "
       "marked to market, quote currency", (), "quote"),
    _m("sigmax_exchange_errors_total", "counter", "Failed exchange calls by error class", ("error_class",)),
    _m("sigmax_ticks_total", "counter", "Closed bars processed"),
    _m("sigmax_exchange_latency_seconds", "histogram", "Exchange call latency", ("method",), "seconds"),
    _m("sigmax_equity", "gauge", "Mark-to-market equity, quote currency", (), "quote"),
    _m("sigmax_pnl", "gauge", "Equity minus initial equity, quote currency", (), "quote"),
    _m("sigmax_drawdown_ratio", "gauge", "Fraction of equity below its peak", (), "ratio"),
    _m("sigmax_daily_loss_ratio", "gauge", "Fraction of equity below the start of the UTC day (0 when above)",
       (), "ratio"),
    _m("sigmax_risk_limit_ratio", "gauge", "A risk rule's limit as a fraction (max_drawdown, daily_loss_limit)",
       ("rule",), "ratio"),
    _m("sigmax_trading_state", "gauge", "1 for the current trading state", ("state",), "state"),
    _m("sigmax_exchange_connected", "gauge", "1 when the last exchange call answered"),
    _m("sigmax_killswitch_state", "gauge", "The kill switch as the run sees it (0 RELEASED, 1 ENGAGED, 2 UNKNOWN)",
       (), "state"),
    _m("sigmax_last_tick_timestamp_seconds", "gauge", "When the run last processed a bar (Unix time)", (),
       "seconds"),
    _m("sigmax_run_info", "gauge", "The run this process trades", ("run_id", "env", "exchange")),
)

_HEALTH_METRICS = (
    _m("sigmax_health_status", "gauge", f"Overall sigmax health state ({STATUS_CODES}).", (), "state", HEALTH),
    _m("sigmax_health_last_run_timestamp_seconds", "gauge", "When the health run started (Unix time).", (),
       "seconds", HEALTH),
    _m("sigmax_health_duration_seconds", "gauge", "Wall time of the health run.", (), "seconds", HEALTH),
    _m("sigmax_health_check_status", "gauge", f"State of one health measurement ({STATUS_CODES}).",
       ("check", "measurement", "component"), "state", HEALTH),
    _m("sigmax_health_threshold", "gauge", "Warning and critical thresholds, in the base unit of the value.",
       ("check", "measurement", "component", "level"), "1", HEALTH),
)

PUSH = "push"
_PUSH_METRICS = (
    _m("sigmax_signal_newest_timestamp_seconds", "gauge",
       "When the newest entry of the signal stream was appended (Unix time, Redis server clock)", ("stream",),
       "seconds", PUSH),
    _m("sigmax_signal_age_seconds", "gauge", "Age of the newest entry of the signal stream when measured",
       ("stream",), "seconds", PUSH),
    _m("sigmax_signal_consumer_lag_entries", "gauge", "Entries of the stream after a group's checkpoint (unread)",
       ("stream", "group"), "1", PUSH),
    _m("sigmax_signal_consumer_lag_seconds", "gauge",
       "Age of the oldest entry after a group's checkpoint when measured (0 when none is unread)",
       ("stream", "group"), "seconds", PUSH),
    _m("sigmax_signal_consumed_total", "counter", "Entries this consumer process handled and checkpointed",
       ("stream", "group"), "1", PUSH),
    _m("sigmax_job_last_success_timestamp_seconds", "gauge", "When the batch job last finished with exit 0 "
       "(Unix time)", (), "seconds", PUSH),
    _m("sigmax_job_last_failure_timestamp_seconds", "gauge", "When the batch job last finished with a non-zero "
       "exit (Unix time)", (), "seconds", PUSH),
    _m("sigmax_job_duration_seconds", "gauge", "Wall time of the batch job's last run", (), "seconds", PUSH),
    _m("sigmax_job_exit_code", "gauge", "Exit code of the batch job's last run (0 success)", (), "1", PUSH),
    _m("sigmax_backup_size_bytes", "gauge", "Size of the archive the last backup wrote", (), "bytes", PUSH),
    _m("sigmax_research_items", "gauge", "Research items of the last run: new (stored for the first time) and fetched "
       "(all the sources returned)",
       ("kind",), "1", PUSH),
    _m("sigmax_research_sources_failed", "gauge", "Research sources that failed in the last run", (), "1", PUSH),
)

# health's observed values: (check, measurement, unit as the check reports it). The textfile
# names each ``sigmax_health_<check>_<measurement>[_seconds|_bytes|_ratio]``, see value_name.
HEALTH_VALUES: tuple[tuple[str, str, str], ...] = (
    ("backup", "age", "h"),
    ("data", "candle_age", "s"),
    ("data", "research_age", "s"),
    ("exchange", "latency", "ms"),
    ("exchange", "clock_skew", "ms"),
    ("exchange", "account", "ms"),
    ("exchange", "withdrawals", ""),
    ("exits", "blocked", ""),
    ("heartbeat", "age", "s"),
    ("heartbeat", "lost", "s"),
    ("killswitch", "engaged", ""),
    ("ledger", "latency", "ms"),
    ("ledger", "spill", ""),
    ("ledger", "schema", ""),
    ("orders", "mismatch", ""),
    ("redis", "latency", "ms"),
    ("redis", "memory", "%"),
    ("system", "disk_free", "%"),
    ("system", "memory_used", "%"),
    ("system", "load", ""),
)

BASE_UNITS: dict[str, tuple[float, str, str]] = {
    "ms": (0.001, "_seconds", "seconds"), "s": (1.0, "_seconds", "seconds"), "h": (3600.0, "_seconds", "seconds"),
    "%": (0.01, "_ratio", "ratio"), "B": (1.0, "_bytes", "bytes"), "": (1.0, "", "1"),
}
"""A check's unit -> (factor to the base unit, name suffix, catalogue unit)."""


def value_name(check: str, measurement: str, unit: str) -> str:
    """The textfile name of a health value: ``sigmax_health_backup_age_seconds`` for
    (``backup``, ``age``, ``h``); an unknown unit is given without a suffix."""
    return f"sigmax_health_{check}_{measurement}{BASE_UNITS.get(unit, BASE_UNITS[''])[1]}"


def value_help(check: str, measurement: str) -> str:
    """The ``# HELP`` of a health value gauge."""
    return f"Observed {check} {measurement} (sigmax health)."


_VALUE_METRICS = tuple(
    _m(value_name(c, m, u), "gauge", value_help(c, m), ("component",), BASE_UNITS[u][2], HEALTH)
    for c, m, u in HEALTH_VALUES)

CATALOGUE: dict[str, Metric] = {m.name: m for m in (*_RUN_METRICS, *_HEALTH_METRICS, *_PUSH_METRICS,
                                                     *_VALUE_METRICS)}
"""Every metric sigmax publishes, by exposed name."""


def series_names() -> frozenset[str]:
    """Every sample name a PromQL expression may use on sigmax's metrics."""
    return frozenset(s for m in CATALOGUE.values() for s in m.series)


def build(name: str, registry: Any, *, help: str | None = None) -> Any:
    """A ``prometheus_client`` collector for catalogue metric ``name`` in ``registry``.

    Args:
        name: an exposed name from :data:`CATALOGUE` (a counter's with ``_total``).
        registry: a ``prometheus_client.CollectorRegistry``.
        help: a ``# HELP`` text to use instead of the catalogue's (the health values).

    Raises:
        KeyError: ``name`` is not in the catalogue (publish nothing the rules cannot know).
    """
    from prometheus_client import Counter, Gauge, Histogram

    m = CATALOGUE[name]
    text = help or m.help
    if m.type == "counter":
        return Counter(m.name.removesuffix("_total"), text, list(m.labels), registry=registry)
    if m.type == "histogram":
        return Histogram(m.name, text, list(m.labels), buckets=LATENCY_BUCKETS, registry=registry)
    return Gauge(m.name, text, list(m.labels), registry=registry)
