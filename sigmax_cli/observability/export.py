"""Prometheus rules, an example ``prometheus.yml`` and Grafana dashboards, generated from the
metric catalogue (:mod:`sigmax_cli.observability.metrics`) by ``sigmax observability export``.

Files written under ``--out DIR`` (see :func:`export`):

* ``prometheus/sigmax-rules.yml`` - recording rules (exchange error ratio, p99 latency,
  drawdown and daily loss as a fraction of their limits) and alert rules, each alert with
  ``severity`` (``critical``, ``warning`` or ``info``), a ``summary`` and a ``description``
  naming the sigmax command to run.
* ``prometheus/prometheus.yml`` - an example that loads the rules, scrapes ``sigmax run
  --metrics-port`` (job ``sigmax-run``), node_exporter (job ``node``), whose textfile
  collector reads ``sigmax health --prometheus FILE``, and a Pushgateway (job
  ``pushgateway``) for ``sigmax health --pushgateway URL``.
* ``grafana/dashboards/sigmax-fleet.json``, ``sigmax-bot.json``, ``sigmax-exchange.json`` and
  ``sigmax-health.json`` - dashboards (the last also shows node_exporter's host metrics).
* ``grafana/provisioning/datasources/sigmax.yml`` and ``.../dashboards/sigmax.yml`` - Grafana
  provisioning for the Prometheus datasource (uid ``sigmax-prometheus``) and the dashboards.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.files import write_atomic

RUN_JOB = "sigmax-run"
NODE_JOB = "node"
PUSH_JOB = "pushgateway"
DATASOURCE_UID = "sigmax-prometheus"
HEALTH_STALE_S = 900
"""Seconds after which a health textfile nobody refreshed is itself an alert (cron runs
``sigmax health`` every few minutes)."""


@dataclass(frozen=True)
class Alert:
    """One alert rule.

    Attributes:
        name: ``alert:`` name (``SigmaxKillSwitchEngaged``).
        expr: the PromQL condition.
        severity: ``critical``, ``warning`` or ``info``.
        summary: one line; may use ``{{ $labels.x }}``.
        description: what it means and the sigmax command to run.
        for_: the ``for:`` duration (``""``: fire on the first evaluation).
    """

    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = ""

    def rule(self) -> dict[str, Any]:
        """The rule as a Prometheus rule-file mapping."""
        out: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            out["for"] = self.for_
        out["labels"] = {"severity": self.severity}
        out["annotations"] = {"summary": self.summary, "description": self.description}
        return out


@dataclass(frozen=True)
class Record:
    """One recording rule: ``record`` name (``level:metric:operations``) and its expression."""

    name: str
    expr: str


RECORDS: tuple[Record, ...] = (
    Record("sigmax:exchange_calls:rate5m",
           "sum by (job, instance) (rate(sigmax_exchange_latency_seconds_count[5m]))"),
    Record("sigmax:exchange_errors:rate5m", "sum by (job, instance) (rate(sigmax_exchange_errors_total[5m]))"),
    Record("sigmax:exchange_error_ratio:rate5m",
           "sigmax:exchange_errors:rate5m / on (job, instance) sigmax:exchange_calls:rate5m"),
    Record("sigmax:exchange_latency_seconds:p99_5m",
           "histogram_quantile(0.99, sum by (job, instance, le) (rate(sigmax_exchange_latency_seconds_bucket[5m])))"),
    Record("sigmax:drawdown_of_limit:ratio",
           'sigmax_drawdown_ratio / on (job, instance) sigmax_risk_limit_ratio{rule="max_drawdown"}'),
    Record("sigmax:daily_loss_of_limit:ratio",
           'sigmax_daily_loss_ratio / on (job, instance) sigmax_risk_limit_ratio{rule="daily_loss_limit"}'),
)


@dataclass(frozen=True)
class HealthAlert:
    """Alerts on one ``sigmax health`` measurement's state: a WARNING (1) alert and a
    CRITICAL-or-UNKNOWN (>= 2) alert, so that "could not tell" pages like a failure."""

    check: str
    measurement: str
    warning: str
    critical: str
    what: str
    command: str


HEALTH_ALERTS: tuple[HealthAlert, ...] = (
    HealthAlert("heartbeat", "age", "SigmaxHeartbeatLate", "SigmaxHeartbeatStale",
                "the newest heartbeat of bot {{ $labels.component }} is old",
                "`sigmax monitor` shows every bot; `sigmax health --check heartbeat` says which is late."),
    HealthAlert("backup", "age", "SigmaxBackupOld", "SigmaxBackupTooOld",
                "the newest backup is old or could not be read",
                "run `sigmax backup` (and check its cron entry); `sigmax backup list` shows what there is."),
    HealthAlert("data", "candle_age", "SigmaxDataLate", "SigmaxDataStale",
                "the newest candle of bot {{ $labels.component }} is old",
                "`sigmax health --check data` names the bot; check its feed and `sigmax data check`."),
    HealthAlert("ledger", "latency", "SigmaxLedgerSlow", "SigmaxLedgerUnavailable",
                "the ledger is slow or does not answer",
                "`sigmax health --check ledger` gives the error; check PostgreSQL (SIGMAX_DB_URL)."),
)

_STATUS = "sigmax_health_check_status"
_SPECIFIC = (*((a.check, a.measurement) for a in HEALTH_ALERTS), ("killswitch", "engaged"), ("heartbeat", "lost"),
             ("exits", "blocked"))


def _sel(check: str, measurement: str) -> str:
    return f'{_STATUS}{{check="{check}",measurement="{measurement}"}}'


def _not_specific() -> str:
    """``unless`` clause that leaves out the measurements that have their own alerts."""
    return f"unless on (check, measurement) ({' or '.join(_sel(c, m) for c, m in _SPECIFIC)})"


def alerts() -> tuple[Alert, ...]:
    """Every alert rule, in the order they are written."""
    out = [
        Alert("SigmaxKillSwitchEngaged", "sigmax_health_killswitch_engaged == 1 or sigmax_killswitch_state == 1",
              "critical",
              "The sigmax kill switch is engaged",
              "Every bot is halted and none may start. `sigmax panic --status` shows who engaged it and why; "
              "release with `sigmax panic --release --reason '...'` once resolved."),
        Alert("SigmaxKillSwitchUnknown",
              f'(({_sel("killswitch", "engaged")} >= 2) unless on (job, instance) '
              "(sigmax_health_killswitch_engaged == 1)) or sigmax_killswitch_state == 2", "critical",
              "The sigmax kill switch state is UNKNOWN",
              "Neither the file nor Redis could be read, so bots halt and none may start. "
              "`sigmax panic --status` says which store failed."),
        Alert("SigmaxTradingHalted", 'sigmax_trading_state{state="HALTED"} == 1', "critical",
              "Bot {{ $labels.instance }} is HALTED",
              "A risk rule or the kill switch halted trading. `sigmax monitor` shows the reason; "
              "`sigmax report` the run."),
        Alert("SigmaxTradingReducing", 'sigmax_trading_state{state="REDUCING"} == 1', "warning",
              "Bot {{ $labels.instance }} is REDUCING",
              "A risk rule (drawdown, daily loss) lets the bot only reduce exposure. `sigmax monitor` shows which."),
        Alert("SigmaxRunDown", f'up{{job="{RUN_JOB}"}} == 0', "critical",
              "Prometheus cannot scrape sigmax run at {{ $labels.instance }}",
              "The bot process stopped or its --metrics-port is unreachable. `sigmax runs list` and "
              "`sigmax health --check heartbeat` tell whether the run is lost.", "2m"),
        Alert("SigmaxRunAbsent", "absent(sigmax_run_info)", "warning",
              "No sigmax run publishes metrics",
              "No `sigmax run --metrics-port` target has answered. Start the bot or check prometheus.yml's "
              f"{RUN_JOB} job; `sigmax monitor` lists the bots.", "10m"),
        Alert("SigmaxRunLost", f'{_sel("heartbeat", "lost")} >= 1', "critical",
              "Run {{ $labels.component }} is lost",
              "Its heartbeat stopped without a clean stop; positions may be unattended. `sigmax runs list`, "
              "then `sigmax runs ack RUN_ID` once handled."),
        Alert("SigmaxDrawdownNearLimit", "sigmax:drawdown_of_limit:ratio >= 0.8 < 1", "warning",
              "Bot {{ $labels.instance }} drawdown is above 80% of its limit",
              "At the limit the bot goes REDUCING for the rest of the run. `sigmax monitor`, `sigmax report`."),
        Alert("SigmaxDrawdownLimit", "sigmax:drawdown_of_limit:ratio >= 1", "critical",
              "Bot {{ $labels.instance }} drawdown reached its limit",
              "The max_drawdown rule trips: REDUCING for the rest of the run. `sigmax monitor`, `sigmax report`."),
        Alert("SigmaxDailyLossNearLimit", "sigmax:daily_loss_of_limit:ratio >= 0.8 < 1", "warning",
              "Bot {{ $labels.instance }} daily loss is above 80% of its limit",
              "At the limit the bot goes REDUCING until the next UTC day. `sigmax monitor`."),
        Alert("SigmaxDailyLossLimit", "sigmax:daily_loss_of_limit:ratio >= 1", "critical",
              "Bot {{ $labels.instance }} daily loss reached its limit",
              "The daily_loss_limit rule trips: REDUCING until the next UTC day. `sigmax monitor`, `sigmax report`."),
        Alert("SigmaxExchangeErrorRate", "sigmax:exchange_error_ratio:rate5m > 0.05", "warning",
              "More than 5% of exchange calls of {{ $labels.instance }} fail",
              "`sigmax health --check exchange` probes the exchange; the error classes are in "
              "sigmax_exchange_errors_total.", "5m"),
        Alert("SigmaxExchangeLatencyHigh", "sigmax:exchange_latency_seconds:p99_5m > 2", "warning",
              "p99 exchange latency of {{ $labels.instance }} is above 2 s",
              "`sigmax health --check exchange` measures latency and clock skew from this host.", "5m"),
        Alert("SigmaxExchangeDisconnected", "sigmax_exchange_connected == 0", "critical",
              "Bot {{ $labels.instance }} cannot reach the exchange",
              "The last exchange calls failed with temporary errors. `sigmax health --check exchange`.", "2m"),
        Alert("SigmaxOrdersRejected", 'increase(sigmax_rejections_total{source="exchange"}[15m]) > 0', "warning",
              "The exchange rejected orders of {{ $labels.instance }}",
              "`sigmax report` lists the rejections and their reasons; `sigmax health --check orders` "
              "compares the ledger with the exchange."),
        Alert("SigmaxRiskDenials", 'increase(sigmax_rejections_total{source="risk"}[15m]) > 0', "info",
              "Risk rules denied orders of {{ $labels.instance }}",
              "Expected while REDUCING; otherwise see `sigmax monitor` and `sigmax report`."),
        Alert("SigmaxExitsBlocked", f'{_sel("exits", "blocked")} >= 1', "critical",
              "Bot {{ $labels.component }} cannot exit positions",
              "Exit orders keep being refused, so risk cannot be reduced. `sigmax health --check exits` names them; "
              "`sigmax panic` if they must be closed now."),
    ]
    for a in HEALTH_ALERTS:
        out.append(Alert(a.warning, f"{_sel(a.check, a.measurement)} == 1", "warning",
                         f"sigmax health: {a.what} (WARNING)", a.command))
        out.append(Alert(a.critical, f"{_sel(a.check, a.measurement)} >= 2", "critical",
                         f"sigmax health: {a.what} (CRITICAL or UNKNOWN)", a.command))
    out += [
        Alert("SigmaxHealthCheckWarning", f"({_STATUS} == 1) {_not_specific()}", "warning",
              "sigmax health {{ $labels.check }}:{{ $labels.measurement }} is WARNING",
              "`sigmax health --check {{ $labels.check }}` shows the value and its thresholds."),
        Alert("SigmaxHealthCheckCritical", f"({_STATUS} == 2) {_not_specific()}", "critical",
              "sigmax health {{ $labels.check }}:{{ $labels.measurement }} is CRITICAL",
              "`sigmax health --check {{ $labels.check }}` shows the value and its thresholds."),
        Alert("SigmaxHealthCheckUnknown", f"({_STATUS} == 3) {_not_specific()}", "critical",
              "sigmax health {{ $labels.check }}:{{ $labels.measurement }} is UNKNOWN",
              "The check could not tell, which is not all clear. `sigmax health --check {{ $labels.check }}` "
              "gives the error."),
        Alert("SigmaxHealthStale", f"time() - sigmax_health_last_run_timestamp_seconds > {HEALTH_STALE_S}",
              "critical", "sigmax health has not run for 15 minutes",
              "Its cron entry stopped or the textfile cannot be written. Run `sigmax health --prometheus FILE` "
              "by hand and check cron."),
        Alert("SigmaxHealthAbsent", "absent(sigmax_health_last_run_timestamp_seconds)", "critical",
              "No sigmax health textfile is scraped",
              "Point node_exporter's --collector.textfile.directory at the directory of "
              "`sigmax health --prometheus FILE`.", "15m"),
    ]
    return tuple(out)


def rules_document() -> dict[str, Any]:
    """The Prometheus rule file as a mapping (``groups:`` of recording and alert rules)."""
    return {"groups": [
        {"name": "sigmax-recording", "interval": "30s",
         "rules": [{"record": r.name, "expr": r.expr} for r in RECORDS]},
        {"name": "sigmax-alerts", "rules": [a.rule() for a in alerts()]},
    ]}


def prometheus_config(rules_file: str = "sigmax-rules.yml") -> dict[str, Any]:
    """The example ``prometheus.yml``: rules, the ``sigmax-run`` job, the ``node`` job."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "30s"},
        "rule_files": [rules_file],
        "scrape_configs": [
            {"job_name": RUN_JOB, "static_configs": [{"targets": ["127.0.0.1:9108"],
                                                       "labels": {"bot": "example"}}]},
            {"job_name": NODE_JOB, "static_configs": [{"targets": ["127.0.0.1:9100"]}]},
            {"job_name": PUSH_JOB, "honor_labels": True, "static_configs": [{"targets": ["127.0.0.1:9091"]}]},
        ],
    }


PROMETHEUS_HEADER = """\
# Example Prometheus configuration for sigmax (generated by `sigmax observability export`).
# - job sigmax-run: one target per `sigmax run --metrics-port PORT` (9108 in the README).
# - job node: node_exporter started with
#     --collector.textfile.directory=/var/lib/node_exporter/textfile
#   and cron running `sigmax health --prometheus /var/lib/node_exporter/textfile/sigmax.prom`.
# - job pushgateway: a Prometheus Pushgateway, for `sigmax health --pushgateway URL` where no
#   node_exporter runs (honor_labels keeps the pushed job and instance).
"""


# -- Grafana ---------------------------------------------------------------------------------------
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
    b.panel("Equity", "timeseries", [(f"sigmax_equity{{{sel}}}", "equity")])
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
    b.panel("Rejections (per 15 min)", "timeseries",
            [(f"sum by (source) (increase(sigmax_rejections_total{{{sel}}}[15m]))", "{{source}}")])
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


def provisioning(dashboards_path: str = "/var/lib/grafana/dashboards/sigmax") -> dict[str, dict[str, Any]]:
    """Grafana provisioning files by relative path: the Prometheus datasource and the dashboards."""
    return {
        "datasources/sigmax.yml": {"apiVersion": 1, "datasources": [{
            "name": "sigmax Prometheus", "type": "prometheus", "uid": DATASOURCE_UID, "access": "proxy",
            "url": "http://127.0.0.1:9090", "isDefault": False}]},
        "dashboards/sigmax.yml": {"apiVersion": 1, "providers": [{
            "name": "sigmax", "folder": "sigmax", "type": "file", "disableDeletion": False,
            "allowUiUpdates": True, "options": {"path": dashboards_path}}]},
    }


# -- PromQL references -----------------------------------------------------------------------------

def referenced_metrics(expr: str) -> set[str]:
    """The metric names ``sigmax_...`` and recording rules ``sigmax:...`` an expression uses."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values are not metric names
    return set(re.findall(r"(?<![\w:])sigmax[_:][a-zA-Z0-9_:]*", unquoted))


def expressions() -> list[str]:
    """Every PromQL expression written: rules and dashboard targets."""
    out = [r.expr for r in RECORDS] + [a.expr for a in alerts()]
    for board in dashboards().values():
        out += [t["expr"] for p in board["panels"] for t in p["targets"]]
        out += [v["query"]["query"] for v in board["templating"]["list"]]
    return out


# -- writing ---------------------------------------------------------------------------------------
def files() -> dict[str, str]:
    """Every exported file's text by path relative to ``--out``."""
    import yaml

    def dump(doc: dict[str, Any]) -> str:
        return yaml.safe_dump(doc, sort_keys=False, width=1000, allow_unicode=True)

    out = {
        "prometheus/sigmax-rules.yml": "# Generated by `sigmax observability export`; do not edit by hand.\n"
                                       + dump(rules_document()),
        "prometheus/prometheus.yml": PROMETHEUS_HEADER + dump(prometheus_config()),
    }
    for name, board in dashboards().items():
        out[f"grafana/dashboards/{name}"] = json.dumps(board, indent=2) + "\n"
    for name, doc in provisioning().items():
        out[f"grafana/provisioning/{name}"] = dump(doc)
    return out


def export(out: Path, force: bool = False) -> list[Path]:
    """Write :func:`files` under ``out`` (created when missing), each atomically.

    Args:
        out: the target directory.
        force: write into a directory that already holds other files (ours are replaced).

    Returns:
        The paths written, in order.

    Raises:
        ConfigError: ``out`` is a file, or a non-empty directory holding files other than ours
            and ``force`` is not set, or it cannot be created.
    """
    content = files()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory", "pass a directory (it is created when missing)")
    if out.is_dir() and not force:
        ours = {out / rel for rel in content}
        others = [p for p in out.rglob("*") if p.is_file() and p not in ours]
        if others:
            raise ConfigError(f"--out {out} already holds other files (e.g. {others[0].relative_to(out)})",
                              "pick an empty directory or pass --force to write into it")
    written = []
    try:
        for rel, text in content.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text, mode=0o644)
            written.append(path)
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out} ({exc.strerror or exc})",
                          "check the directory's permissions and free space") from None
    return written
