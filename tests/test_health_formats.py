"""Threshold edges, the runner (concurrency, time limits, broken checks) and the renderings
(plugin line and perfdata, health+json, Prometheus text, the rich table) of sigmax health.

The runner tests plug small real checks into the registry: one that blocks until another
check has started too (so the run can only finish if checks run concurrently), one that
never answers, one that raises."""

from __future__ import annotations

import os
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from sigmax_cli.errors import ConfigError
from sigmax_cli.health import formats
from sigmax_cli.health.base import Check, CheckContext, CheckResult, Limits, Skipped, Status, worst
from sigmax_cli.health.runner import CHECKS, HealthReport, run_checks, select
from sigmax_cli.settings import FloorThresholds, Thresholds, load_settings


# -- grading ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value, status", [
    (0, Status.OK), (50, Status.OK), (50.001, Status.WARNING), (200, Status.WARNING), (200.001, Status.CRITICAL),
])
def test_ceiling_edges(value, status):
    assert Limits(50, 200).grade(value) is status


@pytest.mark.parametrize("value, status", [
    (100, Status.OK), (20, Status.OK), (19.99, Status.WARNING), (10, Status.WARNING), (9.99, Status.CRITICAL),
])
def test_floor_edges(value, status):
    assert Limits.of(FloorThresholds(warning=20, critical=10)).grade(value) is status


@pytest.mark.parametrize("value, status", [
    (-500, Status.OK), (500, Status.OK), (-500.1, Status.WARNING), (1000, Status.WARNING), (-1000.1, Status.CRITICAL),
])
def test_symmetric_edges(value, status):
    assert Limits.of(Thresholds(warning=500, critical=1000), symmetric=True).grade(value) is status


def test_worst_is_max_state_alt():
    assert worst([Status.OK, Status.UNKNOWN]) is Status.UNKNOWN
    assert worst([Status.UNKNOWN, Status.WARNING]) is Status.WARNING
    assert worst([Status.CRITICAL, Status.UNKNOWN, Status.WARNING]) is Status.CRITICAL
    assert worst([]) is Status.OK


def test_threshold_settings_validate_order_and_percent():
    with pytest.raises(ConfigError, match="warning 300 must not be above critical 60"):
        load_settings(overrides={"health": {"heartbeat_age_s": {"warning": 300, "critical": 60}}})
    with pytest.raises(ConfigError, match="must lie between 0 and 100"):
        load_settings(overrides={"health": {"memory_used_pct": {"warning": 90, "critical": 120}}})
    with pytest.raises(ConfigError, match="health.timeout_s"):
        load_settings(overrides={"health": {"timeout_s": 0}})
    equal = load_settings(overrides={"health": {"backup_age_h": {"warning": 24, "critical": 24}}})
    assert equal.health.backup_age_h.critical == 24
    half = load_settings(overrides={"health": {"backup_age_h": {"critical": 72}}})  # the other half stays
    assert (half.health.backup_age_h.warning, half.health.backup_age_h.critical) == (26, 72)


@pytest.mark.parametrize("profile", ["conservative", "balanced", "aggressive"])
def test_profiles_carry_a_health_section(profile):
    from sigmax_cli.settings import read_profile

    section = read_profile(profile)["health"]
    settings = load_settings(profile=profile)
    assert settings.health.disk_free_pct.lower_is_worse
    assert set(section) == set(type(settings.health).model_fields)


# -- the runner ------------------------------------------------------------------------------
class _Rendezvous(Check):
    """Waits until its twin runs too: only concurrent checks both get past the barrier."""

    primary = "met"
    description = "test check"
    barrier = threading.Barrier(2)

    def run(self, ctx: CheckContext):
        self.barrier.wait(timeout=10)
        return [self.result("met", Status.OK, "met its twin", ctx, value=1)]


class _Left(_Rendezvous):
    name = "left"


class _Right(_Rendezvous):
    name = "right"


class _Hangs(Check):
    name = "hangs"
    primary = "answer"
    description = "never answers"
    release = threading.Event()

    def timeout_s(self, health) -> float:
        return 0.3

    def run(self, ctx: CheckContext):
        self.release.wait(30)
        return [self.result("answer", Status.OK, "late", ctx)]


class _Broken(Check):
    name = "broken"
    primary = "thing"
    description = "raises"

    def run(self, ctx: CheckContext):
        raise KeyError("no such column")


@pytest.fixture
def extra_checks(monkeypatch):
    _Rendezvous.barrier.reset()
    _Hangs.release.clear()
    for cls in (_Left, _Right, _Hangs, _Broken):
        monkeypatch.setitem(CHECKS, cls.name, cls)
    yield
    _Hangs.release.set()


def test_checks_run_concurrently(extra_checks):
    report = run_checks(load_settings(), ["left", "right"])
    assert [(r.key, r.status) for r in report.results] == [("left:met", Status.OK), ("right:met", Status.OK)]


def test_a_check_past_its_time_limit_is_critical_and_the_rest_still_report(extra_checks):
    report = run_checks(load_settings(), ["hangs", "broken", "killswitch"])
    got = {r.key: (r.status, r.message) for r in report.results}
    assert got["hangs:answer"] == (Status.CRITICAL, "no answer within 0.3 s")
    assert got["broken:thing"] == (Status.UNKNOWN, "the check failed: KeyError: 'no such column'")
    assert got["killswitch:engaged"][0] is Status.OK
    assert report.status is Status.CRITICAL


def test_select_validates_and_orders_names():
    assert select(None) == list(CHECKS)
    assert select(["backup", " ledger ", "backup"]) == ["ledger", "backup"]
    with pytest.raises(ConfigError, match="unknown check 'nope'"):
        select(["ledger", "nope"])


# -- renderings --------------------------------------------------------------------------------
def _report() -> HealthReport:
    t = 1_767_225_600_000
    return HealthReport(
        results=[
            CheckResult("ledger", "latency", Status.OK, "write-read round trip 3 ms", 3.2, "ms", Limits(50, 200),
                        time_ms=t),
            CheckResult("redis", "latency", Status.CRITICAL, "connection refused | at redis://127.0.0.1:6390/0",
                        time_ms=t),
            CheckResult("system", "disk_free", Status.WARNING, "15 GB free", 15.5, "%",
                        Limits(20, 10, lower_is_worse=True), time_ms=t),
            CheckResult("exchange", "clock_skew", Status.OK, "12 ms", -12.0, "ms", Limits(500, 1000, symmetric=True),
                        time_ms=t),
            CheckResult("heartbeat", "age", Status.OK, "bot a", 12.0, "s", Limits(60, 300), "bot-a", time_ms=t),
            CheckResult("heartbeat", "age", Status.WARNING, "bot b", 75.5, "s", Limits(60, 300), "bot-b", time_ms=t),
            CheckResult("backup", "age", Status.OK, "made 2 h ago", 2.0, "h", Limits(26, 50), time_ms=t),
            CheckResult("data", "candle_age", Status.UNKNOWN, "cannot read the ledger", time_ms=t),
            CheckResult("system", "home", Status.OK, "usable", True, time_ms=t),
            CheckResult("killswitch", "engaged", Status.OK, "released (file)", 0, time_ms=t),
        ],
        skipped=[Skipped("orders", "mismatch", "env is paper")],
        checks=["ledger", "redis", "system", "exchange", "heartbeat", "backup", "data", "killswitch", "orders"],
        started_ms=t, duration_s=0.25, notes=["ran without the overlap lock: cannot create /x/health.lock"])


def test_plugin_line_and_perfdata():
    first, *rest = formats.plugin_output(_report()).splitlines()
    text, perf = first.split(" | ")
    assert text == ("SIGMAX CRITICAL - redis: connection refused / at redis://127.0.0.1:6390/0; system: 15 GB free; "
                    "heartbeat: bot b; unknown: data:candle_age")
    assert perf.split(" ") == [
        "'ledger_latency'=3.2ms;50;200",
        "'system_disk_free'=15.5%;20:;10:;0;100",
        "'exchange_clock_skew'=-12ms;-500:500;-1000:1000",
        "'heartbeat_age'=75.5s;60;300",  # the worst bot
        "'backup_age'=7200s;93600;180000",  # hours are no plugin unit
        "'killswitch_engaged'=0",
    ]
    assert rest[:2] == ["[OK] ledger:latency 3.2 ms - write-read round trip 3 ms",
                        "[CRITICAL] redis:latency - connection refused / at redis://127.0.0.1:6390/0"]
    assert "[WARNING] heartbeat:age[bot-b] 75.5 s - bot b" in rest
    assert rest[-2:] == ["[SKIPPED] orders:mismatch - env is paper",
                         "note: ran without the overlap lock: cannot create /x/health.lock"]


def test_plugin_summary_when_all_ok_or_nothing_measured():
    ok = HealthReport([CheckResult("ledger", "latency", Status.OK, "fine", 1.0, "ms")], [], ["ledger"], 0, 0.1)
    assert formats.plugin_output(ok).startswith("SIGMAX OK - 1 measurements OK in 1 checks | 'ledger_latency'=1ms\n")
    nothing = HealthReport([], [Skipped("redis", "latency", "SIGMAX_REDIS_URL is not set")], ["redis"], 0, 0.1)
    assert nothing.status is Status.UNKNOWN
    assert formats.plugin_output(nothing).splitlines()[0] == \
        "SIGMAX UNKNOWN - nothing was measured (redis:latency SIGMAX_REDIS_URL is not set)"


def test_health_json_mapping():
    doc = formats.health_json(_report(), "0.1.0")
    assert doc["status"] == "fail" and doc["releaseId"] == "0.1.0"
    assert doc["output"].startswith("SIGMAX CRITICAL - redis: connection refused")
    assert doc["checks"]["ledger:latency"] == [{"componentType": "datastore", "observedValue": 3.2,
                                                "observedUnit": "ms", "status": "pass",
                                                "time": "2026-01-01T00:00:00.000Z"}]
    assert [i["componentId"] for i in doc["checks"]["heartbeat:age"]] == ["bot-a", "bot-b"]
    assert doc["checks"]["heartbeat:age"][1]["status"] == "warn"
    assert doc["checks"]["data:candle_age"][0] == {"componentType": "component", "status": "fail",
                                                   "time": "2026-01-01T00:00:00.000Z",
                                                   "output": "cannot read the ledger"}
    assert doc["checks"]["backup:age"][0]["observedUnit"] == "h"
    assert doc["notes"] == ["orders:mismatch skipped: env is paper",
                            "ran without the overlap lock: cannot create /x/health.lock"]


def test_prometheus_text_parses_in_base_units():
    families = {f.name: f for f in text_string_to_metric_families(formats.prometheus_text(_report()).decode())}
    assert families["sigmax_health_status"].samples[0].value == 2
    assert families["sigmax_health_ledger_latency_seconds"].samples[0].value == pytest.approx(0.0032)
    assert families["sigmax_health_system_disk_free_ratio"].samples[0].value == pytest.approx(0.155)
    assert families["sigmax_health_backup_age_seconds"].samples[0].value == 7200
    ages = {s.labels["component"]: s.value for s in families["sigmax_health_heartbeat_age_seconds"].samples}
    assert ages == {"bot-a": 12.0, "bot-b": 75.5}
    states = {(s.labels["check"], s.labels["measurement"], s.labels["component"]): s.value
              for s in families["sigmax_health_check_status"].samples}
    assert states[("redis", "latency", "")] == 2 and states[("heartbeat", "age", "bot-b")] == 1
    assert families["sigmax_health_last_run_timestamp_seconds"].samples[0].value == 1_767_225_600
    assert "sigmax_health_system_home" not in families  # a yes/no is not a gauge value; its state is


def test_write_prometheus_failure_leaves_nothing_and_is_a_critical_result(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    report = _report()
    assert formats.write_prometheus(report, blocker / "sigmax.prom") is False
    failure = report.results[-1]
    assert (failure.key, failure.status) == ("health:textfile", Status.CRITICAL)
    assert failure.message == (f"cannot write the Prometheus textfile {blocker}/sigmax.prom (Not a directory); "
                               "node_exporter still serves the previous one")
    assert report.status is Status.CRITICAL
    with pytest.raises(ConfigError, match="does not exist"):
        formats.check_prometheus_target(tmp_path / "missing" / "sigmax.prom")
    with pytest.raises(ConfigError, match="is a directory"):
        formats.check_prometheus_target(tmp_path)
    target = tmp_path / "ok.prom"
    formats.write_prometheus(_report(), target)
    formats.write_prometheus(_report(), target)  # replaced in place
    assert sorted(os.listdir(tmp_path)) == ["not-a-dir", "ok.prom"]


def test_table_renders_every_row():
    console = Console(record=True, width=160, color_system=None)
    console.print(formats.table(_report()))
    text = console.export_text()
    assert "sigmax health: CRITICAL" in text
    assert "heartbeat:age[bot-b]" in text and "75.5 s" in text and "60 / 300" in text
    assert "<20 / <10" in text and "±500 / ±1000" in text
    assert "skipped" in text and "orders:mismatch" in text and "env is paper" in text
    assert "9 checks in 0.25 s - ran without the overlap lock" in text
