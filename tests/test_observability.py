"""``sigmax observability export``: the metric catalogue, the generated Prometheus rules (checked
and unit-tested with Debian's ``promtool``), the dashboards and the command's bad input.

``promtool`` comes with Debian's ``prometheus`` package, which ``.ci/run`` installs when it is
missing; these tests are skipped (saying so) on a machine without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from sigmax_cli.observability import metrics
from sigmax_cli.observability.export import RECORDS, alerts, dashboards, expressions, files, referenced_metrics

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus (.ci/run)")

RUN = {"job": "sigmax-run", "instance": "bot1:9108"}
NODE = {"job": "node", "instance": "host:9100"}
PUSH_BACKUP = {"job": "sigmax_backup", "instance": "host1"}
PUSH_RESEARCH = {"job": "sigmax_research", "instance": "host1", "stream": "sigmax:signals"}
PUSH_TAIL = {"job": "sigmax_signals", "instance": "host1"}
STREAM = {"stream": "sigmax:signals"}
GROUP = {"stream": "sigmax:signals", "group": "ops"}
NEWEST = "sigmax_signal_newest_timestamp_seconds"


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _status(check: str, measurement: str, values: str, component: str | None = None) -> dict[str, str]:
    labels = {**NODE, "check": check, "measurement": measurement}
    if component:
        labels["component"] = component
    return _series("sigmax_health_check_status", labels, values)


def _status_labels(check: str, measurement: str, component: str | None = None) -> dict[str, str]:
    out = {**NODE, "check": check, "measurement": measurement}
    if component:
        out["component"] = component
    return out


def _ratio_case(metric: str, rule: str, value: float, limit: float = 0.1) -> list[dict[str, str]]:
    return [_series(metric, RUN, f"{value}x20"), _series("sigmax_risk_limit_ratio", {**RUN, "rule": rule},
                                                           f"{limit}x20")]


def _latency(fast: bool) -> list[dict[str, str]]:
    m = {**RUN, "method": "fetch_ohlcv"}
    return [_series("sigmax_exchange_latency_seconds_bucket", {**m, "le": "1.0"}, "0+10x40" if fast else "0x40"),
            _series("sigmax_exchange_latency_seconds_bucket", {**m, "le": "5.0"}, "0+10x40"),
            _series("sigmax_exchange_latency_seconds_bucket", {**m, "le": "+Inf"}, "0+10x40")]


# alert -> (series that make it fire, series that must leave it silent, eval time, labels it fires with)
CASES: dict[str, tuple[list, list, str, dict[str, str]]] = {
    "SigmaxKillSwitchEngaged": ([_series("sigmax_health_killswitch_engaged", NODE, "1x10")],
                                [_series("sigmax_health_killswitch_engaged", NODE, "0x10")], "1m", NODE),
    "SigmaxKillSwitchUnknown": ([_status("killswitch", "engaged", "2x10")],  # CRITICAL without a value: UNKNOWN
                                [_status("killswitch", "engaged", "2x10"),
                                 _series("sigmax_health_killswitch_engaged", NODE, "1x10")],
                                "1m", _status_labels("killswitch", "engaged")),
    "SigmaxTradingHalted": ([_series("sigmax_trading_state", {**RUN, "state": "HALTED"}, "1x10")],
                            [_series("sigmax_trading_state", {**RUN, "state": "HALTED"}, "0x10")], "1m",
                            {**RUN, "state": "HALTED"}),
    "SigmaxTradingReducing": ([_series("sigmax_trading_state", {**RUN, "state": "REDUCING"}, "1x10")],
                              [_series("sigmax_trading_state", {**RUN, "state": "REDUCING"}, "0x10")], "1m",
                              {**RUN, "state": "REDUCING"}),
    "SigmaxRunDown": ([_series("up", RUN, "0x20")], [_series("up", RUN, "1x20")], "5m", RUN),
    "SigmaxRunAbsent": ([_series("up", NODE, "1x40")],
                        [_series("sigmax_run_info", {**RUN, "run_id": "r1", "env": "testnet", "exchange": "binance"},
                                 "1x40")], "15m", {}),
    "SigmaxRunLost": ([_status("heartbeat", "lost", "1x10", "r1")], [_status("heartbeat", "lost", "0x10", "r1")],
                      "1m", _status_labels("heartbeat", "lost", "r1")),
    "SigmaxDrawdownNearLimit": (_ratio_case("sigmax_drawdown_ratio", "max_drawdown", 0.09),
                                _ratio_case("sigmax_drawdown_ratio", "max_drawdown", 0.05), "2m", RUN),
    "SigmaxDrawdownLimit": (_ratio_case("sigmax_drawdown_ratio", "max_drawdown", 0.1),
                            _ratio_case("sigmax_drawdown_ratio", "max_drawdown", 0.09), "2m", RUN),
    "SigmaxDailyLossNearLimit": (_ratio_case("sigmax_daily_loss_ratio", "daily_loss_limit", 0.045, 0.05),
                                 _ratio_case("sigmax_daily_loss_ratio", "daily_loss_limit", 0.05, 0.05), "2m", RUN),
    "SigmaxDailyLossLimit": (_ratio_case("sigmax_daily_loss_ratio", "daily_loss_limit", 0.06, 0.05),
                             _ratio_case("sigmax_daily_loss_ratio", "daily_loss_limit", 0.01, 0.05), "2m", RUN),
    "SigmaxExchangeErrorRate": (
        [_series("sigmax_exchange_latency_seconds_count", {**RUN, "method": "fetch_ohlcv"}, "0+10x40"),
         _series("sigmax_exchange_errors_total", {**RUN, "error_class": "temporary"}, "0+1x40")],
        [_series("sigmax_exchange_latency_seconds_count", {**RUN, "method": "fetch_ohlcv"}, "0+10x40"),
         _series("sigmax_exchange_errors_total", {**RUN, "error_class": "temporary"}, "0x40")], "15m", RUN),
    "SigmaxExchangeLatencyHigh": (_latency(fast=False), _latency(fast=True), "15m", RUN),
    "SigmaxExchangeDisconnected": ([_series("sigmax_exchange_connected", RUN, "0x20")],
                                   [_series("sigmax_exchange_connected", RUN, "1x20")], "5m", RUN),
    "SigmaxOrdersRejected": ([_series("sigmax_order_rejections_total", {**RUN, "cause": "precision"}, "0 0 1x20")],
                             [_series("sigmax_order_rejections_total", {**RUN, "cause": "precision"}, "0x20"),
                              _series("sigmax_risk_denials_total", RUN, "0 0 1x20")],
                             "2m", {**RUN, "cause": "precision"}),
    "SigmaxRiskDenials": ([_series("sigmax_risk_denials_total", RUN, "0 0 1x20")],
                          [_series("sigmax_risk_denials_total", RUN, "0x20"),
                           _series("sigmax_order_rejections_total", {**RUN, "cause": "precision"}, "0 0 1x20")],
                          "2m", RUN),
    "SigmaxExitBlocked": ([_series("sigmax_exit_blocked", {**RUN, "symbol": "BTC/USDT"}, "1x10")],
                          [_series("sigmax_exit_blocked", {**RUN, "symbol": "BTC/USDT"}, "0x10")],
                          "1m", {**RUN, "symbol": "BTC/USDT"}),
    # the newest signal's timestamp as pushed; its age is time() - value (eval time in seconds)
    "SigmaxSignalsLate": ([_series(NEWEST, PUSH_RESEARCH, "0x40")], [_series(NEWEST, PUSH_RESEARCH, "300x40")],
                          "7m", STREAM),  # 420 s old fires; 120 s old stays silent
    "SigmaxSignalsStale": ([_series(NEWEST, PUSH_RESEARCH, "0x80")], [_series(NEWEST, PUSH_RESEARCH, "600x80")],
                           "20m", STREAM),  # 1200 s fires; 600 s is only late
    "SigmaxSignalsMissing": ([_series(NEWEST, PUSH_RESEARCH, "0x80")],
                             [_series(NEWEST, PUSH_RESEARCH, "600x80"),  # 1500 s: stale, not missing
                              _series(NEWEST, {**PUSH_TAIL, "stream": "sigmax:signals"}, "0x80")],  # max: freshest
                             "35m", STREAM),
    "SigmaxSignalsAbsent": ([_series("up", NODE, "1x100")], [_series(NEWEST, PUSH_RESEARCH, "0+30x100")], "35m", {}),
    "SigmaxSignalConsumerBehind": (
        [_series("sigmax_signal_consumer_lag_seconds", {**PUSH_TAIL, **GROUP}, "1000x10")],
        [_series("sigmax_signal_consumer_lag_seconds", {**PUSH_TAIL, **GROUP}, "100x10")], "1m",
        {**PUSH_TAIL, **GROUP}),
    "SigmaxBatchJobFailed": ([_series("sigmax_job_exit_code", PUSH_BACKUP, "0 0 2x10")],
                             [_series("sigmax_job_exit_code", PUSH_BACKUP, "2 2 0x10")], "2m", PUSH_BACKUP),
    "SigmaxExitsBlocked": ([_status("exits", "blocked", "2x10", "bot1")], [_status("exits", "blocked", "0x10", "bot1")],
                           "1m", _status_labels("exits", "blocked", "bot1")),
    "SigmaxHealthCheckWarning": ([_status("redis", "memory", "1x10")],
                                 [_status("backup", "age", "1x10")],  # has its own alert
                                 "1m", _status_labels("redis", "memory")),
    "SigmaxHealthCheckCritical": ([_status("system", "disk_free", "2x10")], [_status("ledger", "latency", "2x10")],
                                  "1m", _status_labels("system", "disk_free")),
    "SigmaxHealthCheckUnknown": ([_status("orders", "mismatch", "3x10")],
                                 [_status("heartbeat", "age", "3x10", "bot1"), _status("orders", "mismatch", "0x10")],
                                 "1m", _status_labels("orders", "mismatch")),
    "SigmaxHealthStale": ([_series("sigmax_health_last_run_timestamp_seconds", NODE, "0x40")],
                          [_series("sigmax_health_last_run_timestamp_seconds", NODE, "0+30x40")], "20m", NODE),
    "SigmaxHealthAbsent": ([_series("up", NODE, "1x40")],
                           [_series("sigmax_health_last_run_timestamp_seconds", NODE, "0+30x40")], "20m", {}),
}
CASES["SigmaxKillSwitchEngaged#run"] = ([_series("sigmax_killswitch_state", RUN, "1x10")],
                                        [_series("sigmax_killswitch_state", RUN, "0x10")], "1m", RUN)
CASES["SigmaxKillSwitchUnknown#run"] = ([_series("sigmax_killswitch_state", RUN, "2x10")],
                                        [_series("sigmax_killswitch_state", RUN, "1x10")], "1m", RUN)
for _check, _measurement, _warning, _critical, _component in (
        ("heartbeat", "age", "SigmaxHeartbeatLate", "SigmaxHeartbeatStale", "bot1"),
        ("backup", "age", "SigmaxBackupOld", "SigmaxBackupTooOld", None),
        ("data", "candle_age", "SigmaxDataLate", "SigmaxDataStale", "bot1"),
        ("ledger", "latency", "SigmaxLedgerSlow", "SigmaxLedgerUnavailable", None)):
    _labels = _status_labels(_check, _measurement, _component)
    CASES[_warning] = ([_status(_check, _measurement, "1x10", _component)],
                       [_status(_check, _measurement, "2x10", _component)], "1m", _labels)
    CASES[_critical] = ([_status(_check, _measurement, "3x10", _component)],  # UNKNOWN pages like CRITICAL
                        [_status(_check, _measurement, "1x10", _component)], "1m", _labels)


def _render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def _unit_tests() -> dict:
    by_name = {a.name: a for a in alerts()}
    tests = []
    for case, (fire, quiet, at, labels) in CASES.items():
        name = case.split("#")[0]  # "Alert#variant": another way the same alert fires
        a = by_name[name]
        expected = {"exp_labels": {**labels, "severity": a.severity},
                    "exp_annotations": {"summary": _render(a.summary, labels),
                                        "description": _render(a.description, labels)}}
        tests.append({"name": f"{case} fires", "interval": "30s", "input_series": fire,
                      "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": [expected]}]})
        tests.append({"name": f"{case} stays silent", "interval": "30s", "input_series": quiet,
                      "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": []}]})
    return {"rule_files": ["sigmax-rules.yml"], "evaluation_interval": "30s", "tests": tests}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    for rel, text in files().items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    return out


def test_every_alert_has_a_unit_test_and_says_what_to_run():
    names = [a.name for a in alerts()]
    assert len(names) == len(set(names))
    assert {case.split("#")[0] for case in CASES} == set(names)
    for a in alerts():
        assert a.severity in ("critical", "warning", "info") and a.summary
        assert "`sigmax " in a.description, f"{a.name} names no sigmax command"


@needs_promtool
def test_promtool_checks_the_rules_and_the_example_config(exported):
    rules = exported / "prometheus" / "sigmax-rules.yml"
    done = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(RECORDS) + len(alerts())} rules found" in done.stdout
    done = subprocess.run([PROMTOOL, "check", "config", str(exported / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_every_alert_firing_and_silent(exported):
    test_file = exported / "prometheus" / "sigmax-rules.test.yml"
    test_file.write_text(yaml.safe_dump(_unit_tests(), sort_keys=False))
    done = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


@needs_promtool
def test_promtool_unit_tests_can_fail(exported):
    """The harness itself: a wrong expectation (a silent alert said to fire) is caught."""
    doc = _unit_tests()
    quiet = next(t for t in doc["tests"] if t["name"] == "SigmaxKillSwitchEngaged stays silent")
    quiet["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {**NODE, "severity": "critical"}}]
    test_file = exported / "prometheus" / "wrong.test.yml"
    test_file.write_text(yaml.safe_dump({**doc, "tests": [quiet]}, sort_keys=False))
    done = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert done.returncode != 0


def test_every_metric_the_rules_and_dashboards_use_is_in_the_catalogue():
    known = metrics.series_names() | {r.name for r in RECORDS}
    used = set().union(*(referenced_metrics(e) for e in expressions()))
    assert used and used <= known, sorted(used - known)
    assert {"sigmax_health_killswitch_engaged", "sigmax:exchange_latency_seconds:p99_5m"} <= used


def test_referenced_metrics_finds_names_not_labels_or_strings():
    assert referenced_metrics('sigmax:x:rate5m / on (job) sigmax_a_total{rule="sigmax_b"}') == {
        "sigmax:x:rate5m", "sigmax_a_total"}


def test_health_textfile_names_come_from_the_catalogue():
    from prometheus_client.parser import text_string_to_metric_families

    from sigmax_cli.health.base import CheckResult, Limits, Status
    from sigmax_cli.health.formats import prometheus_text
    from sigmax_cli.health.runner import HealthReport

    results = [CheckResult("backup", "age", Status.WARNING, "old", value=30.0, unit="h", limits=Limits(26, 50)),
               CheckResult("killswitch", "engaged", Status.OK, "released", value=0)]
    report = HealthReport(results=results, skipped=[], checks=["backup", "killswitch"],
                          started_ms=1_700_000_000_000, duration_s=0.1)
    text = prometheus_text(report).decode()
    published = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert {"sigmax_health_backup_age_seconds", "sigmax_health_killswitch_engaged"} <= published
    assert published <= metrics.series_names()


def test_build_refuses_a_name_outside_the_catalogue():
    from prometheus_client import CollectorRegistry

    with pytest.raises(KeyError):
        metrics.build("sigmax_not_a_metric", CollectorRegistry())


def test_dashboards_load_into_grafana_foundation_sdk_models():
    """grafana-foundation-sdk's typed Dashboard model (from_json/encoder) keeps every panel,
    target and position: it is lenient, not a schema validator, so the layout is checked here too."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    for name, doc in dashboards().items():
        back = json.loads(json.dumps(Dashboard.from_json(doc), cls=JSONEncoder))
        assert back["uid"] == doc["uid"] and back["title"] == doc["title"], name
        assert [(p["type"], p["gridPos"], [t["expr"] for t in p["targets"]]) for p in back["panels"]] == \
               [(p["type"], p["gridPos"], [t["expr"] for t in p["targets"]]) for p in doc["panels"]]
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids))
        cells = set()
        for p in doc["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{name}: {p['title']} overlaps another panel"
            cells |= mine


def test_export_writes_every_file_and_refuses_a_directory_of_other_files(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from commands.app import app

    monkeypatch.setenv("SIGMAX_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    out = tmp_path / "obs"
    done = runner.invoke(app, ["observability", "export", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(files())
    again = runner.invoke(app, ["observability", "export", "--out", str(out)])  # only our files: replaced
    assert again.exit_code == 0, again.output

    (out / "notes.txt").write_text("mine")
    refused = runner.invoke(app, ["observability", "export", "--out", str(out)])
    assert refused.exit_code == 2
    assert "already holds other files (e.g. notes.txt); pick an empty directory or pass --force" in refused.output
    forced = runner.invoke(app, ["observability", "export", "--out", str(out), "--force"])
    assert forced.exit_code == 0 and (out / "notes.txt").read_text() == "mine"

    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused = runner.invoke(app, ["observability", "export", "--out", str(a_file)])
    assert refused.exit_code == 2 and "is a file, not a directory" in refused.output
    assert a_file.read_text() == "x"


@needs_promtool
def test_every_dashboard_expression_parses(exported, tmp_path):
    """promtool parses each dashboard query as a recording rule's expression (no live Prometheus
    here: whether it returns series is not checked)."""
    exprs = [t["expr"] for board in dashboards().values() for p in board["panels"] for t in p["targets"]]
    doc = {"groups": [{"name": "dashboards", "rules": [{"record": f"sigmax:dashboard_{i}", "expr": e}
                                                          for i, e in enumerate(exprs)]}]}
    rules = tmp_path / "dashboard-exprs.yml"
    rules.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(exprs)} rules found" in done.stdout
