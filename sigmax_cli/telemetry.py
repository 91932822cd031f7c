"""What a live run publishes for monitoring outside the process: Prometheus metrics on
``--metrics-port`` (:class:`LiveMetrics`) and a Redis heartbeat key with a time-to-live
(:class:`RedisHeartbeat`), whose absence tells an external monitor the bot stopped beating.

Both are optional and neither may stop trading: a metrics port that cannot be bound is
refused before the run starts; Redis trouble is logged once and the ledger keeps the
heartbeat. ``prometheus_client`` and ``redis`` are imported only when used.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.logs import get_logger

if TYPE_CHECKING:
    from sigmax_cli.engine import Engine

log = get_logger(__name__)

KILLSWITCH_CODES = {"RELEASED": 0, "ENGAGED": 1, "UNKNOWN": 2}
"""``sigmax_killswitch_state`` values by :class:`~sigmax_cli.risk.killswitch.SwitchState`."""


class LiveMetrics:
    """Prometheus metrics of one run, in their own registry (prometheus-client), built from
    the catalogue :data:`sigmax_cli.observability.metrics.CATALOGUE` (names, help, labels).

    Counters: ``sigmax_orders_total{symbol,side}``, ``sigmax_fills_total{symbol,side}``,
    ``sigmax_order_rejections_total{cause}`` (refused by the exchange, by
    :attr:`~sigmax_cli.errors.OrderRejected.kind`, from the engine's
    :class:`~sigmax_cli.risk.rejections.RejectionTracker`), ``sigmax_risk_denials_total``
    (denied by the risk guard), ``sigmax_exchange_errors_total{error_class}``,
    ``sigmax_ticks_total``. Gauges (quote currency): ``sigmax_equity``,
    ``sigmax_buy_and_hold_equity`` (the engine's buy-and-hold benchmark,
    :attr:`~sigmax_cli.engine.Engine.benchmark_equity`), ``sigmax_pnl`` (equity - initial equity),
    ``sigmax_drawdown_ratio`` (fraction below the peak), ``sigmax_trading_state{state}``
    (1 for the current state), ``sigmax_exchange_connected``, ``sigmax_daily_loss_ratio``
    (fraction below the UTC day's start, 0 when above), ``sigmax_risk_limit_ratio{rule}``
    (``max_drawdown`` and ``daily_loss_limit`` as fractions), ``sigmax_last_tick_timestamp_seconds``
    (Unix time of the last bar processed), ``sigmax_killswitch_state`` (0 RELEASED, 1 ENGAGED,
    2 UNKNOWN, as the run's watcher last read it), ``sigmax_exit_blocked{symbol}`` (1 while the
    symbol's exit is blocked, 0 otherwise; every symbol of the run). Histogram:
    ``sigmax_exchange_latency_seconds{method}``.
    """

    def __init__(self, run_id: str, env: str, exchange: str) -> None:
        from prometheus_client import CollectorRegistry

        from sigmax_cli.observability.metrics import build

        reg = self.registry = CollectorRegistry()
        self.orders = build("sigmax_orders_total", reg)
        self.fills = build("sigmax_fills_total", reg)
        self.rejections = build("sigmax_order_rejections_total", reg)
        self.denials = build("sigmax_risk_denials_total", reg)
        self.exit_blocked = build("sigmax_exit_blocked", reg)
        self.buy_and_hold = build("sigmax_buy_and_hold_equity", reg)
        self.errors = build("sigmax_exchange_errors_total", reg)
        self.ticks = build("sigmax_ticks_total", reg)
        self.latency = build("sigmax_exchange_latency_seconds", reg)
        self.equity = build("sigmax_equity", reg)
        self.pnl = build("sigmax_pnl", reg)
        self.drawdown = build("sigmax_drawdown_ratio", reg)
        self.daily_loss = build("sigmax_daily_loss_ratio", reg)
        self.limits = build("sigmax_risk_limit_ratio", reg)
        self.state = build("sigmax_trading_state", reg)
        self.connected = build("sigmax_exchange_connected", reg)
        self.killswitch = build("sigmax_killswitch_state", reg)
        self.last_tick = build("sigmax_last_tick_timestamp_seconds", reg)
        build("sigmax_run_info", reg).labels(run_id, env, exchange).set(1)
        self._denials = 0
        self._rejected: dict[str, int] = {}  # engine.rejections.by_cause already counted
        self._server: Any = None

    # MetricsSink of the broker
    def call(self, method: str, seconds: float, error_class: str | None) -> None:
        self.latency.labels(method).observe(seconds)
        if error_class is not None:
            self.errors.labels(error_class).inc()
        self.connected.set(0 if error_class in ("temporary", "rate_limited") else 1)

    def order(self, order: Any, event: str) -> None:
        """An order ``placed``; a rejection is counted by cause in :meth:`update` (the engine's
        tracker knows the cause)."""
        if event == "placed":
            self.orders.labels(order.symbol, order.side).inc()

    def fill(self, fill: Any) -> None:
        self.fills.labels(fill.symbol, fill.side).inc()

    def update(self, engine: Engine) -> None:
        """Gauges and counters from the engine after a tick.

        Reads ``engine.equity``, ``.peak``, ``.day_start_equity``, ``.cfg.initial_equity``,
        ``.guard`` (rules, state), ``.killswitch`` (cached reading), ``.denials``,
        ``.rejections`` (``by_cause``, ``exits_blocked``), ``.symbols`` and
        ``.benchmark_equity``.
        """
        self.ticks.inc()
        self.equity.set(engine.equity)
        self.buy_and_hold.set(engine.benchmark_equity)
        self.pnl.set(engine.equity - engine.cfg.initial_equity)
        self.drawdown.set((engine.peak - engine.equity) / engine.peak if engine.peak > 0 else 0.0)
        day = engine.day_start_equity
        self.daily_loss.set(max(0.0, (day - engine.equity) / day) if day > 0 else 0.0)
        for rule in engine.guard.rules:
            limit_pct = getattr(rule, "limit_pct", None)  # the two rules with a percent limit
            if rule.name in ("max_drawdown", "daily_loss_limit") and limit_pct is not None:
                self.limits.labels(rule.name).set(float(limit_pct) / 100.0)
        self.last_tick.set(time.time())
        watcher = engine.killswitch  # its cached reading: no I/O here
        switch = watcher.current().state.value if watcher is not None else ""
        self.killswitch.set(KILLSWITCH_CODES.get(switch, 2))  # no watcher or an unknown word: UNKNOWN
        current = engine.guard.state.value
        for state in ("ACTIVE", "REDUCING", "HALTED"):
            self.state.labels(state).set(1 if state == current else 0)
        if engine.denials > self._denials:
            self.denials.inc(engine.denials - self._denials)
            self._denials = engine.denials
        for cause, count in engine.rejections.by_cause.items():
            if count > self._rejected.get(cause, 0):
                self.rejections.labels(cause).inc(count - self._rejected.get(cause, 0))
                self._rejected[cause] = count
        blocked = engine.rejections.exits_blocked
        for symbol in engine.symbols:
            self.exit_blocked.labels(symbol).set(1 if symbol in blocked else 0)

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` in a background thread.

        Raises:
            ConfigError: the address cannot be bound (port in use, bad host).
        """
        from prometheus_client import start_http_server

        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc})",
                              "pick another --metrics-port or free that one") from None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class RedisHeartbeat:
    """``SET <prefix>heartbeat:<bot id> <json> EX <ttl>`` every tick; Redis trouble is logged
    once and never stops trading (:attr:`degraded` says why)."""

    def __init__(self, url: str, prefix: str, bot_id: str, ttl_seconds: float) -> None:
        import redis

        self.key = f"{prefix}heartbeat:{bot_id}"
        self.ttl = max(1, int(ttl_seconds))
        self.degraded: str | None = None
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def beat(self, doc: dict[str, Any]) -> None:
        import redis

        try:
            self._client.set(self.key, json.dumps(doc, default=str), ex=self.ttl)
            self.degraded = None
        except redis.RedisError as exc:
            if self.degraded is None:
                log.warning("cannot write the heartbeat to Redis (%s); the ledger still has it", exc)
            self.degraded = str(exc)

    def close(self) -> None:
        self._client.close()
