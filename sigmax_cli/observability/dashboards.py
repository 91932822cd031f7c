"""Grafana dashboards of ``sigmax observability export`` (JSON, validated in the tests with
grafana-foundation-sdk's Dashboard model); every query uses catalogue metrics only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sigmax_cli.observability.provisioning import DATASOURCE_UID, NODE_JOB


@dataclass
class _Board:
    uid: str
    title: str
    panels: list[dict[str, Any]] = field(default_factory=list)
    variables: list[dict[str, Any]] = field(default_factory=list)

    def panel(self, title: str, kind: str, targets: list[tuple[str, str]], w: int = 12, h: int = 8,
              unit: str | None = None, description: str = "") -> None:
        x = sum(p["gridPos"]["w"] for p in self._row())
        if x + w > 24:  # a new row below everything so far
            x = 0
        y = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in self.panels), default=0) if x == 0 else \
            self.panels[-1]["gridPos"]["y"]
        ds = {"type": "prometheus", "uid": DATASOURCE_UID}
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description, "datasource": ds,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "targets": [{"refId": chr(ord("A") + i), "datasource": ds, "expr": expr, "legendFormat": legend}
                        for i, (expr, legend) in enumerate(targets)],
            "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
            "options": {},
        }
        self.panels.append(panel)

    def _row(self) -> list[dict[str, Any]]:
        if not self.panels:
            return []
        y = self.panels[-1]["gridPos"]["y"]
        return [p for p in self.panels if p["gridPos"]["y"] == y]

    def document(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "tags": ["sigmax"], "timezone": "utc", "editable": True,
            "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": self.variables}, "annotations": {"list": []}, "links": [],
            "panels": self.panels,
        }


def _fleet() -> dict[str, Any]:
    b = _Board("sigmax-fleet", "sigmax fleet")
    b.panel("Trading state (1 ACTIVE, 2 REDUCING, 3 HALTED)", "stat",
            [('max by (instance) (sigmax_trading_state{state="ACTIVE"} == 1) '
              'or max by (instance) (2 * (sigmax_trading_state{state="REDUCING"} == 1)) '
              'or max by (instance) (3 * (sigmax_trading_state{state="HALTED"} == 1))', "{{instance}}")], w=8)
    b.panel("Kill switch (1 engaged)", "stat", [("sigmax_health_killswitch_engaged", "{{instance}}")], w=8)
    b.panel("Overall health (0 OK .. 3 UNKNOWN)", "stat", [("sigmax_health_status", "{{instance}}")], w=8)
    b.panel("Equity", "timeseries", [("sigmax_equity", "{{instance}}")])
    b.panel("P&L", "timeseries", [("sigmax_pnl", "{{instance}}")])
    b.panel("Seconds since the last bar", "timeseries",
            [("time() - sigmax_last_tick_timestamp_seconds", "{{instance}}")], unit="s")
    b.panel("Heartbeat age (sigmax health)", "timeseries", [("sigmax_health_heartbeat_age_seconds", "{{component}}")],
            unit="s")
    b.panel("Health measurements not OK", "table",
            [("sigmax_health_check_status > 0", "{{check}}:{{measurement}} {{component}}")], w=24)
    return b.document()


def _bot_variable(multi: bool) -> dict[str, Any]:
    """The ``$instance`` template variable: the scrape targets that publish ``sigmax_run_info``."""
    return {
        "name": "instance", "label": "bot", "type": "query", "refresh": 2, "includeAll": multi, "multi": multi,
        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
        "definition": "label_values(sigmax_run_info, instance)",
        "query": {"query": "label_values(sigmax_run_info, instance)", "refId": "instance"},
    }


def _bot() -> dict[str, Any]:
    b = _Board("sigmax-bot", "sigmax bot")
    b.variables.append(_bot_variable(multi=False))
    sel = 'instance="$instance"'
    b.panel("Equity and buy-and-hold", "timeseries",
            [(f"sigmax_equity{{{sel}}}", "equity"), (f"sigmax_buy_and_hold_equity{{{sel}}}", "buy and hold")],
            description="Buy and hold: the initial equity bought equally into the run's symbols on the first bar.")
    b.panel("Drawdown and its limit", "timeseries",
            [(f"sigmax_drawdown_ratio{{{sel}}}", "drawdown"),
             (f'sigmax_risk_limit_ratio{{{sel},rule="max_drawdown"}}', "limit")], unit="percentunit")
    b.panel("Daily loss and its limit", "timeseries",
            [(f"sigmax_daily_loss_ratio{{{sel}}}", "daily loss"),
             (f'sigmax_risk_limit_ratio{{{sel},rule="daily_loss_limit"}}', "limit")], unit="percentunit")
    b.panel("Risk state", "state-timeline", [(f"sigmax_trading_state{{{sel}}} == 1", "{{state}}")])
    b.panel("Orders and fills (per 5 min)", "timeseries",
            [(f"sum by (side) (increase(sigmax_orders_total{{{sel}}}[5m]))", "orders {{side}}"),
             (f"sum by (side) (increase(sigmax_fills_total{{{sel}}}[5m]))", "fills {{side}}")])
    b.panel("Rejections by cause and risk denials (per 15 min)", "timeseries",
            [(f"sum by (cause) (increase(sigmax_order_rejections_total{{{sel}}}[15m]))", "{{cause}}"),
             (f"sum(increase(sigmax_risk_denials_total{{{sel}}}[15m]))", "risk denials")])
    b.panel("Exits blocked (1 blocked)", "state-timeline", [(f"sigmax_exit_blocked{{{sel}}}", "{{symbol}}")])
    b.panel("Exchange latency p99", "timeseries",
            [(f"sigmax:exchange_latency_seconds:p99_5m{{{sel}}}", "p99")], unit="s")
    b.panel("Exchange errors by class", "timeseries",
            [(f"sum by (error_class) (rate(sigmax_exchange_errors_total{{{sel}}}[5m]))", "{{error_class}}")],
            unit="reqps")
    return b.document()


def _exchange() -> dict[str, Any]:
    b = _Board("sigmax-exchange", "sigmax exchange")
    b.variables.append(_bot_variable(multi=True))
    sel = 'instance=~"$instance"'
    for q in ("0.99", "0.5"):
        b.panel(f"Latency p{round(float(q) * 100)} by method", "timeseries",
                [(f"histogram_quantile({q}, sum by (method, le) "
                  f"(rate(sigmax_exchange_latency_seconds_bucket{{{sel}}}[5m])))", "{{method}}")], unit="s")
    b.panel("Calls by method", "timeseries",
            [(f"sum by (method) (rate(sigmax_exchange_latency_seconds_count{{{sel}}}[5m]))", "{{method}}")],
            unit="reqps")
    b.panel("Errors by class", "timeseries",
            [(f"sum by (error_class) (rate(sigmax_exchange_errors_total{{{sel}}}[5m]))", "{{error_class}}")],
            unit="reqps")
    b.panel("Error ratio", "timeseries", [(f"sigmax:exchange_error_ratio:rate5m{{{sel}}}", "{{instance}}")],
            unit="percentunit")
    b.panel("Connected (1 yes)", "state-timeline", [(f"sigmax_exchange_connected{{{sel}}}", "{{instance}}")])
    b.panel("Latency and clock skew from this host (sigmax health)", "timeseries",
            [("sigmax_health_exchange_latency_seconds", "latency"),
             ("sigmax_health_exchange_clock_skew_seconds", "clock skew")], unit="s", w=24)
    return b.document()


def _health() -> dict[str, Any]:
    b = _Board("sigmax-health", "sigmax health and host")
    b.panel("Overall health (0 OK .. 3 UNKNOWN)", "stat", [("sigmax_health_status", "{{instance}}")], w=8)
    b.panel("Seconds since health last ran", "stat",
            [("time() - sigmax_health_last_run_timestamp_seconds", "{{instance}}")], w=8, unit="s")
    b.panel("Health run duration", "stat", [("sigmax_health_duration_seconds", "{{instance}}")], w=8, unit="s")
    b.panel("Measurement states", "state-timeline",
            [("sigmax_health_check_status", "{{check}}:{{measurement}} {{component}}")], w=24, h=10)
    b.panel("Backup age and its thresholds", "timeseries",
            [("sigmax_health_backup_age_seconds", "age"),
             ('sigmax_health_threshold{check="backup",measurement="age"}', "{{level}}")], unit="s")
    b.panel("Candle age by bot", "timeseries", [("sigmax_health_data_candle_age_seconds", "{{component}}")], unit="s")
    b.panel("Ledger and Redis latency", "timeseries",
            [("sigmax_health_ledger_latency_seconds", "ledger"), ("sigmax_health_redis_latency_seconds", "redis")],
            unit="s")
    b.panel("Disk free and memory used", "timeseries",
            [("sigmax_health_system_disk_free_ratio", "disk free {{component}}"),
             ("sigmax_health_system_memory_used_ratio", "memory used")], unit="percentunit")
    b.panel("Age of the newest signal", "timeseries",
            [("time() - max by (stream) (sigmax_signal_newest_timestamp_seconds)", "{{stream}}")], unit="s")
    b.panel("Signal consumers: unread entries", "timeseries",
            [("sigmax_signal_consumer_lag_entries", "{{group}}")])
    b.panel("Batch jobs: seconds since the last success", "timeseries",
            [("time() - sigmax_job_last_success_timestamp_seconds", "{{job}} {{instance}}")], unit="s")
    b.panel("Batch jobs: exit code of the last run", "timeseries",
            [("sigmax_job_exit_code", "{{job}} {{instance}}")])
    b.panel("Host load per CPU (node_exporter)", "timeseries",
            [(f'node_load5{{job="{NODE_JOB}"}} / on (instance) count by (instance) '
              f'(node_cpu_seconds_total{{job="{NODE_JOB}",mode="idle"}})', "{{instance}}")])
    b.panel("Host filesystem free (node_exporter)", "timeseries",
            [(f'node_filesystem_avail_bytes{{job="{NODE_JOB}",fstype!~"tmpfs|overlay"}} / '
              f'node_filesystem_size_bytes{{job="{NODE_JOB}",fstype!~"tmpfs|overlay"}}', "{{mountpoint}}")],
            unit="percentunit")
    return b.document()


def dashboards() -> dict[str, dict[str, Any]]:
    """Grafana dashboards by file name: ``sigmax-fleet.json`` (every bot), ``sigmax-bot.json``
    (one bot), ``sigmax-exchange.json`` and ``sigmax-health.json`` (health and host)."""
    return {"sigmax-fleet.json": _fleet(), "sigmax-bot.json": _bot(), "sigmax-exchange.json": _exchange(),
            "sigmax-health.json": _health()}
