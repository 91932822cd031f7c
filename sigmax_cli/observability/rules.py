"""Prometheus recording and alert rules of ``sigmax observability export``, written as
``prometheus/sigmax-rules.yml`` (:func:`rules_document`); every metric they use comes from
the catalogue :mod:`sigmax_cli.observability.metrics`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sigmax_cli.observability.provisioning import RUN_JOB

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
        Alert("SigmaxOrdersRejected", "increase(sigmax_order_rejections_total[15m]) > 0", "warning",
              "The exchange rejected orders of {{ $labels.instance }} ({{ $labels.cause }})",
              "`sigmax report` lists the rejections and their reasons; `sigmax health --check orders` "
              "compares the ledger with the exchange."),
        Alert("SigmaxRiskDenials", "increase(sigmax_risk_denials_total[15m]) > 0", "info",
              "Risk rules denied orders of {{ $labels.instance }}",
              "Expected while REDUCING; otherwise see `sigmax monitor` and `sigmax report`."),
        Alert("SigmaxExitBlocked", "sigmax_exit_blocked == 1", "critical",
              "Bot {{ $labels.instance }} cannot exit {{ $labels.symbol }}",
              "Its exit orders keep being refused, so risk cannot be reduced. `sigmax monitor` shows the refusal; "
              "`sigmax panic` if the position must be closed now."),
        Alert("SigmaxExitsBlocked", f'{_sel("exits", "blocked")} >= 1', "critical",
              "Bot {{ $labels.component }} cannot exit positions",
              "Exit orders keep being refused, so risk cannot be reduced. `sigmax health --check exits` names them; "
              "`sigmax panic` if they must be closed now."),
    ]
    out += signal_alerts() + job_alerts()
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


SIGNAL_AGE_S = (300, 900, 1800)
"""Newest-signal ages (seconds) of the warning, critical and "no signals" alerts: 5, 15 and 30
minutes, the thresholds of the system sigmax grew from (issue 17)."""
_SIGNAL_AGE = "(time() - max by (stream) (sigmax_signal_newest_timestamp_seconds))"
_SIGNAL_FIX = ("`sigmax signals tail --group NAME --once` shows the newest entries; check the cron entry of "
               "`sigmax research --publish` and that Redis (SIGMAX_REDIS_URL) is the one it publishes to.")


def signal_alerts() -> list[Alert]:
    """Alerts on the signal stream: its newest entry 5-15 min old (warning), 15-30 min
    (critical), older or none published (critical), and a consumer group behind.

    The age is ``time()`` minus the newest entry's timestamp as last pushed (by ``research
    --publish`` or ``signals tail``), so a publisher or consumer that stopped pushing makes the
    age grow instead of freezing it.
    """
    warn, crit, gone = SIGNAL_AGE_S
    return [
        Alert("SigmaxSignalsLate", f"{_SIGNAL_AGE} > {warn} <= {crit}", "warning",
              "The newest signal on {{ $labels.stream }} is over 5 minutes old", _SIGNAL_FIX),
        Alert("SigmaxSignalsStale", f"{_SIGNAL_AGE} > {crit} <= {gone}", "critical",
              "The newest signal on {{ $labels.stream }} is over 15 minutes old", _SIGNAL_FIX),
        Alert("SigmaxSignalsMissing", f"{_SIGNAL_AGE} > {gone}", "critical",
              "No signal on {{ $labels.stream }} for 30 minutes",
              "Risk rules that read the sentiment have nothing current. " + _SIGNAL_FIX),
        Alert("SigmaxSignalsAbsent", "absent(sigmax_signal_newest_timestamp_seconds)", "critical",
              "No signal stream is reported",
              "Nothing pushed the signal stream's state to the Pushgateway for 30 minutes: run "
              "`sigmax research --publish --pushgateway URL` (or `sigmax signals tail --pushgateway URL`) "
              "from cron.", f"{gone // 60}m"),
        Alert("SigmaxSignalConsumerBehind", f"sigmax_signal_consumer_lag_seconds > {crit}", "warning",
              "Consumer group {{ $labels.group }} is over 15 minutes behind on {{ $labels.stream }}",
              "Its oldest unread entry waits; run `sigmax signals tail --group {{ $labels.group }}` "
              "and check the consumer's cron entry or process."),
    ]


def job_alerts() -> list[Alert]:
    """A batch job (``backup``, ``research``, ``signals tail``) whose last pushed run failed."""
    return [
        Alert("SigmaxBatchJobFailed", "sigmax_job_exit_code != 0", "warning",
              "The last run of {{ $labels.job }} on {{ $labels.instance }} failed",
              "It exited non-zero; run it by hand (`sigmax backup`, `sigmax research`, "
              "`sigmax signals tail`) to see the error."),
    ]
