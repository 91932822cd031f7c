"""What a live run publishes for monitoring outside the process: Prometheus metrics on
``--metrics-port`` (:class:`LiveMetrics`) and a Redis heartbeat key with a time-to-live
(:class:`RedisHeartbeat`), whose absence tells an external monitor the bot stopped beating.

Both are optional and neither may stop trading: a metrics port that cannot be bound is
refused before the run starts; Redis trouble is logged once and the ledger keeps the
heartbeat. ``prometheus_client`` and ``redis`` are imported only when used.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.logs import get_logger

if TYPE_CHECKING:
    from sigmax_cli.engine import Engine

log = get_logger(__name__)


class LiveMetrics:
    """Prometheus metrics of one run, in their own registry (prometheus-client).

    Counters: ``sigmax_orders_total{symbol,side}``, ``sigmax_fills_total{symbol,side}``,
    ``sigmax_rejections_total{source}`` (``exchange`` refused, ``risk`` denied),
    ``sigmax_exchange_errors_total{error_class}``, ``sigmax_ticks_total``. Gauges (quote
    currency): ``sigmax_equity``, ``sigmax_pnl`` (equity - initial equity),
    ``sigmax_drawdown_ratio`` (fraction below the peak), ``sigmax_trading_state{state}``
    (1 for the current state), ``sigmax_exchange_connected``. Histogram:
    ``sigmax_exchange_latency_seconds{method}``.
    """

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, run_id: str, env: str, exchange: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        reg = self.registry = CollectorRegistry()
        self.orders = Counter("sigmax_orders", "Orders placed on the exchange", ["symbol", "side"], registry=reg)
        self.fills = Counter("sigmax_fills", "Executions of the run's orders", ["symbol", "side"], registry=reg)
        self.rejections = Counter("sigmax_rejections", "Orders refused (exchange) or denied (risk)", ["source"],
                                  registry=reg)
        self.errors = Counter("sigmax_exchange_errors", "Failed exchange calls by error class", ["error_class"],
                              registry=reg)
        self.ticks = Counter("sigmax_ticks", "Closed bars processed", registry=reg)
        self.latency = Histogram("sigmax_exchange_latency_seconds", "Exchange call latency", ["method"],
                                 buckets=self.BUCKETS, registry=reg)
        self.equity = Gauge("sigmax_equity", "Mark-to-market equity, quote currency", registry=reg)
        self.pnl = Gauge("sigmax_pnl", "Equity minus initial equity, quote currency", registry=reg)
        self.drawdown = Gauge("sigmax_drawdown_ratio", "Fraction of equity below its peak", registry=reg)
        self.state = Gauge("sigmax_trading_state", "1 for the current trading state", ["state"], registry=reg)
        self.connected = Gauge("sigmax_exchange_connected", "1 when the last exchange call answered", registry=reg)
        Gauge("sigmax_run_info", "The run this process trades", ["run_id", "env", "exchange"],
              registry=reg).labels(run_id, env, exchange).set(1)
        self._denials = 0
        self._server: Any = None

    # MetricsSink of the broker
    def call(self, method: str, seconds: float, error_class: str | None) -> None:
        self.latency.labels(method).observe(seconds)
        if error_class is not None:
            self.errors.labels(error_class).inc()
        self.connected.set(0 if error_class in ("temporary", "rate_limited") else 1)

    def order(self, order: Any, event: str) -> None:
        if event == "placed":
            self.orders.labels(order.symbol, order.side).inc()
        else:
            self.rejections.labels("exchange").inc()

    def fill(self, fill: Any) -> None:
        self.fills.labels(fill.symbol, fill.side).inc()

    def update(self, engine: Engine) -> None:
        """Gauges from the engine after a tick."""
        self.ticks.inc()
        self.equity.set(engine.equity)
        self.pnl.set(engine.equity - engine.cfg.initial_equity)
        self.drawdown.set((engine.peak - engine.equity) / engine.peak if engine.peak > 0 else 0.0)
        current = engine.guard.state.value
        for state in ("ACTIVE", "REDUCING", "HALTED"):
            self.state.labels(state).set(1 if state == current else 0)
        if engine.denials > self._denials:
            self.rejections.labels("risk").inc(engine.denials - self._denials)
            self._denials = engine.denials

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
