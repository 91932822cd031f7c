"""`sigmax health` end to end through the real app: all OK against the real PostgreSQL (and
SQLite), the real Redis and the Binance emulator; the monitoring-plugin line, health+json
(validated against the draft's fields) and the Prometheus textfile (parsed by
prometheus_client); bad input (exit 3, one sentence, nothing written); the cron lock."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sigmax_cli.health.lock import RunLock
from tests.conftest import REDIS_URL, REPO
from tests.support.binance_emulator import BinanceEmulator
from tests.test_health_ledger import HOUR, add_backup, add_research, beat, start_run

ALL_CHECKS = "ledger,redis,exchange,system,heartbeat,killswitch,data,backup,orders"

# The fields of the "Health Check Response Format for HTTP APIs" draft (application/health+json).
CHECK_OBJECT = {
    "type": "object",
    "required": ["status", "time"],
    "additionalProperties": False,
    "properties": {
        "componentId": {"type": "string"},
        "componentType": {"type": "string"},
        "observedValue": {},
        "observedUnit": {"type": "string"},
        "status": {"enum": ["pass", "fail", "warn"]},
        "affectedEndpoints": {"type": "array", "items": {"type": "string"}},
        "time": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"},
        "output": {"type": "string"},
        "links": {"type": "object"},
    },
}
HEALTH_JSON = {
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {
        "status": {"enum": ["pass", "fail", "warn"]},
        "version": {"type": "string"},
        "releaseId": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "output": {"type": "string"},
        "checks": {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z_]+:[a-z_]+$"},
            "additionalProperties": {"type": "array", "minItems": 1, "items": CHECK_OBJECT},
        },
        "links": {"type": "object"},
        "serviceId": {"type": "string"},
        "description": {"type": "string"},
    },
}
PERF_ITEM = re.compile(r"^'(?P<label>[a-z_]+)'=(?P<value>-?[\d.]+)(?P<uom>ms|s|%|B)?(;[^;\s]*){0,4}$")


def healthy_ledger(url: str, home: Path) -> None:
    """A ledger as a healthy installation has it right now: a live bot beating with a fresh
    candle, a verified backup from an hour ago, research seen ten minutes ago."""
    now = int(time.time() * 1000)
    start_run(url, "live-1")
    beat(url, "paper:host:live-1", "live-1", now, bar_ms=now // HOUR * HOUR - HOUR)
    archive = home / "backups" / "sigmax-backup-ok.tar.zst"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(b"archive")
    add_backup(url, archive, now - HOUR, now - HOUR + 60_000)
    add_research(url, now - 600_000)


@pytest.fixture
def home() -> Path:
    path = Path(os.environ["SIGMAX_HOME"])
    path.mkdir(parents=True)
    return path


# This machine's load, memory and disk are not the test's to set (other suites run beside it):
# the host thresholds are opened up here; their grading is tested on pinned values elsewhere.
HOST_UNGRADED = {
    "SIGMAX_HEALTH__LOAD_PER_CPU__WARNING": "1000", "SIGMAX_HEALTH__LOAD_PER_CPU__CRITICAL": "1000",
    "SIGMAX_HEALTH__MEMORY_USED_PCT__WARNING": "100", "SIGMAX_HEALTH__MEMORY_USED_PCT__CRITICAL": "100",
    "SIGMAX_HEALTH__DISK_FREE_PCT__WARNING": "0", "SIGMAX_HEALTH__DISK_FREE_PCT__CRITICAL": "0",
}


# Likewise round-trip times on a loaded machine: the all-OK runs below grade the components'
# state, not how busy the machine is (latency grading: test_health_formats, test_health_services).
LATENCY_UNGRADED = {
    "SIGMAX_HEALTH__LEDGER_LATENCY_MS__WARNING": "5000", "SIGMAX_HEALTH__LEDGER_LATENCY_MS__CRITICAL": "9000",
    "SIGMAX_HEALTH__REDIS_LATENCY_MS__WARNING": "5000", "SIGMAX_HEALTH__REDIS_LATENCY_MS__CRITICAL": "9000",
    "SIGMAX_HEALTH__EXCHANGE_LATENCY_MS__WARNING": "5000", "SIGMAX_HEALTH__EXCHANGE_LATENCY_MS__CRITICAL": "9000",
    "SIGMAX_HEALTH__CLOCK_SKEW_MS__WARNING": "5000", "SIGMAX_HEALTH__CLOCK_SKEW_MS__CRITICAL": "9000",
}


@pytest.fixture
def healthy_env(ledger_url, home, data_dir, redis_prefix):
    healthy_ledger(ledger_url, home)
    with BinanceEmulator(data_dir) as emu:
        yield {"SIGMAX_DATABASE_URL": ledger_url, "SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_REDIS_PREFIX": redis_prefix,
               "SIGMAX_EXCHANGE_API_URL": emu.url, **HOST_UNGRADED, **LATENCY_UNGRADED}


def test_all_ok_plugin_line_with_perfdata(cli, healthy_env):
    result = cli("health", env=healthy_env)
    assert result.exit_code == 0, result.stdout
    first, *details = result.stdout.splitlines()
    text, perf = first.split(" | ")
    assert re.fullmatch(r"SIGMAX OK - \d+ measurements OK in 10 checks", text)
    items = perf.split(" ")
    assert all(PERF_ITEM.match(item) for item in items), items
    labels = {PERF_ITEM.match(i)["label"] for i in items}
    assert {"ledger_latency", "ledger_schema", "redis_latency", "exchange_latency", "exchange_clock_skew",
            "system_disk_free", "system_memory_used", "system_load", "heartbeat_age", "killswitch_engaged",
            "data_candle_age", "data_research_age", "backup_age"} <= labels
    assert re.search(r"'ledger_latency'=[\d.]+ms;5000;9000( |$)", perf)
    assert re.search(r"'system_disk_free'=[\d.]+%;0:;0:;0;100( |$)", perf)
    assert re.search(r"'exchange_clock_skew'=-?[\d.]+ms;-5000:5000;-9000:9000( |$)", perf)
    assert re.search(r"'backup_age'=[\d.]+s;93600;180000( |$)", perf)  # hours are no plugin unit: seconds
    assert all(line.startswith(("[OK] ", "[SKIPPED] ")) for line in details), details
    assert "[SKIPPED] orders:mismatch - env is paper" in result.stdout
    assert result.stderr == ""


def test_all_ok_json_and_prometheus_from_one_run(cli, healthy_env, home, tmp_path):
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    prom = textfile_dir / "sigmax.prom"
    result = cli("health", "--json", "--prometheus", prom, env=healthy_env)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, HEALTH_JSON)
    assert doc["status"] == "pass" and "output" not in doc
    assert set(doc["checks"]) >= {"ledger:latency", "ledger:schema", "redis:latency", "redis:memory",
                                  "exchange:latency", "exchange:clock_skew", "system:disk_free", "heartbeat:age",
                                  "killswitch:engaged", "data:candle_age", "data:research_age", "backup:age",
                                  "backup:verified"}
    for items in doc["checks"].values():
        for item in items:
            assert item["status"] == "pass" and "output" not in item
            datetime.fromisoformat(item["time"].replace("Z", "+00:00"))
    (beat_item,) = doc["checks"]["heartbeat:age"]
    assert beat_item["componentId"] == "paper:host:live-1" and beat_item["observedUnit"] == "s"
    assert doc["checks"]["ledger:latency"][0]["componentType"] == "datastore"
    assert "orders:mismatch skipped: env is paper: paper orders never reach an exchange" in doc["notes"]

    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert families["sigmax_health_status"].samples[0].value == 0
    latency = families["sigmax_health_ledger_latency_seconds"].samples[0].value
    assert latency == pytest.approx(doc["checks"]["ledger:latency"][0]["observedValue"] / 1000)
    disk = families["sigmax_health_system_disk_free_ratio"].samples[0].value
    assert disk == pytest.approx(doc["checks"]["system:disk_free"][0]["observedValue"] / 100)
    states = {(s.labels["check"], s.labels["measurement"]): s.value
              for s in families["sigmax_health_check_status"].samples}
    assert states[("killswitch", "engaged")] == 0 and set(states.values()) == {0}
    thresholds = {(s.labels["check"], s.labels["measurement"], s.labels["component"], s.labels["level"]): s.value
                  for s in families["sigmax_health_threshold"].samples}
    assert thresholds[("backup", "age", "", "critical")] == 50 * 3600
    assert thresholds[("ledger", "latency", "", "warning")] == pytest.approx(5.0)
    assert thresholds[("data", "candle_age", "paper:host:live-1", "warning")] == 3600 + 120  # one 1h bar + 120 s
    assert (prom.stat().st_mode & 0o777) == 0o644
    assert os.listdir(textfile_dir) == ["sigmax.prom"]  # the temporary file was renamed, not left


def test_critical_problems_lead_the_line(cli, ledger_url, home):
    """A stale bot and an engaged kill switch; the exchange is not asked."""
    from sigmax_cli.risk.killswitch import KillSwitch
    from sigmax_cli.settings import load_settings

    now = int(time.time() * 1000)
    beat(ledger_url, "bot-stale", None, now - 3_600_000)
    KillSwitch.from_settings(load_settings()).engage("manual test halt", by="tester@host")
    result = cli("health", "--check", "ledger,heartbeat,killswitch", env={"SIGMAX_DATABASE_URL": ledger_url})
    assert result.exit_code == 2
    assert result.stdout.startswith("SIGMAX CRITICAL - heartbeat: bot-stale (running, ")
    assert "; killswitch: engaged (file): manual test halt by tester@host since " in result.stdout.splitlines()[0]


def test_warning_exits_1(cli, ledger_url, home):
    beat(ledger_url, "bot-slow", None, int(time.time() * 1000) - 90_000)
    result = cli("health", "--check", "heartbeat", env={"SIGMAX_DATABASE_URL": ledger_url})
    assert result.exit_code == 1 and result.stdout.startswith("SIGMAX WARNING - heartbeat: bot-slow")


# -- bad input: exit 3 UNKNOWN, one sentence on stderr, nothing written -----------------------
BAD = [
    (["--check", "ledger,bogus"], {}, "unknown check 'bogus'; use --check with some of ledger, redis, exchange, "
                                       "system, heartbeat, exits, killswitch, data, backup, orders."),
    (["--watch", "--json"], {}, "--watch redraws a panel, --json prints one document; drop one of them."),
    (["--prometheus", "no/such/dir/sigmax.prom"], {},
     "the directory of --prometheus no/such/dir/sigmax.prom does not exist; create it or point --prometheus at "
     "node_exporter's textfile directory."),
    (["--pushgateway", "ftp://gateway:9091"], {},
     "--pushgateway ftp://gateway:9091 is not an http(s) URL; pass the Pushgateway's address, e.g. "
     "http://127.0.0.1:9091."),
    ([], {"SIGMAX_HEALTH__LEDGER_LATENCY_MS__WARNING": "fast"},
     "setting 'health.ledger_latency_ms.warning' is invalid: Input should be a valid number, unable to parse "
     "string as a number; fix it in the profile (conservative), the env file, SIGMAX_* or the option."),
    ([], {"SIGMAX_HEALTH__DISK_FREE_PCT__WARNING": "5"},
     "setting 'health.disk_free_pct' is invalid: Value error, warning 5 must not be below critical 10: warning "
     "must trip first; fix it in the profile (conservative), the env file, SIGMAX_* or the option."),
    ([], {"SIGMAX_HEALTH__HEARTBEAT_AGE_S__CRITICAL": "30"},
     "setting 'health.heartbeat_age_s' is invalid: Value error, warning 60 must not be above critical 30: warning "
     "must trip first; fix it in the profile (conservative), the env file, SIGMAX_* or the option."),
    (["--interval", "0", "--watch"], {}, None),
    (["--interval", "soon"], {}, None),
    (["--bogus-option"], {}, None),
]


@pytest.mark.parametrize("args, env, sentence", BAD)
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_input_is_unknown(cli, home, tmp_path, args, env, sentence, as_json):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = cli("health", *args, *(["--json"] if as_json and "--json" not in args else []), env=env)
    as_json = as_json or "--json" in args
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    if sentence is not None:
        assert result.stderr == f"error: {sentence}\n"
    if as_json:
        doc = json.loads(result.stdout)
        jsonschema.validate(doc, HEALTH_JSON)
        assert doc["status"] == "fail" and doc["output"].startswith("SIGMAX UNKNOWN - ")
    else:
        assert result.stdout.startswith("SIGMAX UNKNOWN - ") and result.stdout.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no lock, no textfile, no ledger


def test_bad_threshold_in_a_profile_file(cli, home, tmp_path):
    profile = tmp_path / "mine.toml"
    profile.write_text('[health]\nbackup_age_h = { warning = 48, critical = "two days" }\n')
    result = cli("--profile", profile, "health", env={})
    assert result.exit_code == 3
    assert result.stderr.startswith("error: setting 'health.backup_age_h.critical' is invalid: Input should be a "
                                    "valid number")


# -- the cron lock --------------------------------------------------------------------------
def test_a_second_run_while_one_holds_the_lock_is_unknown(cli, home):
    with RunLock(home):
        result = cli("health", "--check", "system", env=HOST_UNGRADED)
    assert result.exit_code == 3
    lock = home / "health.lock"
    assert re.fullmatch(rf"SIGMAX UNKNOWN - another sigmax health run \(pid {os.getpid()}, started \d+ s ago\) "
                        rf"still holds {re.escape(str(lock))}; this run was skipped; if pid {os.getpid()} hangs, "
                        r"look at it\.\n", result.stdout)
    assert result.stderr.startswith("error: another sigmax health run")
    again = cli("health", "--check", "system", env=HOST_UNGRADED)
    assert again.exit_code == 0 and again.stdout.startswith("SIGMAX OK")


def test_a_killed_run_leaves_no_stale_lock(home):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom sigmax_cli.health.lock import RunLock\n"
         f"RunLock({str(home)!r}).__enter__()\nprint('locked', flush=True)\ntime.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(Exception, match=rf"pid {holder.pid}"), RunLock(home):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    holder.stdout.close()
    with RunLock(home) as lock:
        assert lock.error is None and lock.locked


def test_unusable_home_is_critical_and_runs_unlocked(cli, tmp_path):
    not_a_dir = tmp_path / "home-is-a-file"
    not_a_dir.write_text("oops")
    result = cli("health", "--check", "system,killswitch", env={"SIGMAX_HOME": str(not_a_dir)})
    assert result.exit_code == 2
    assert result.stdout.startswith(f"SIGMAX CRITICAL - system: SIGMAX_HOME {not_a_dir} is not a directory")
    assert (f"[CRITICAL] health:lock - cannot create the overlap lock {not_a_dir}/health.lock (Not a directory); "
            "ran without it") in result.stdout


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.parametrize("disk", ["tmpfs", "rlimit"])
def test_a_full_disk_is_critical_and_names_the_files_health_could_not_write(tmp_path, disk):
    """The disk is really full in the ``tmpfs`` case: SIGMAX_HOME is a 256 KiB tmpfs filled to
    the last block, mounted in a private user and mount namespace (``unshare -rm``, which needs
    no root), so ``write(2)`` fails with ENOSPC exactly as on a full disk. Where user
    namespaces are not allowed that case is skipped and the ``rlimit`` case stands in for it:
    ``RLIMIT_FSIZE`` = 0 in the child makes every write to a file fail (EFBIG; Python ignores
    SIGXFSZ), on the same code paths, with the real file system."""
    home = tmp_path / "home"
    home.mkdir()
    prom = home / "sigmax.prom"
    argv = [sys.executable, "-m", "commands.app", "--home", str(home), "health", "--check", "system,killswitch",
            "--prometheus", str(prom)]
    env = {**os.environ, **HOST_UNGRADED, "PYTHONDONTWRITEBYTECODE": "1"}
    if disk == "tmpfs":
        if not _unshare_works():
            pytest.skip("user namespaces are not allowed here (unshare -rm); the rlimit case covers the code")
        script = (f'mount -t tmpfs -o size=256k tmpfs "{home}" && '
                  f'(dd if=/dev/zero of="{home}/filler" bs=4096 2>/dev/null; true) && exec "$@"')
        out = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *argv], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
        reason = "No space left on device"
    else:
        import resource

        prom.write_text("# the previous textfile\n")

        def no_file_growth() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

        out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                             preexec_fn=no_file_growth)
        reason = "File too large"
        assert prom.read_text() == "# the previous textfile\n"  # untouched, and no temporary file beside it
        assert sorted(p.name for p in home.iterdir()) == ["health.lock", "sigmax.prom"]
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
    assert out.stdout.startswith("SIGMAX CRITICAL - health: cannot write the overlap lock")
    assert f"[CRITICAL] health:lock - cannot write the overlap lock {home}/health.lock ({reason})" in out.stdout
    assert (f"[CRITICAL] health:textfile - cannot write the Prometheus textfile {prom} ({reason}); node_exporter "
            "still serves the previous one") in out.stdout


# -- watch, start-up -----------------------------------------------------------------------
def test_watch_without_a_terminal_prints_each_round(cli, home, tmp_path):
    prom = tmp_path / "watch.prom"
    result = cli("health", "--watch", "--count", "2", "--interval", "1", "--check", "system,killswitch",
                 "--prometheus", prom, env=HOST_UNGRADED)
    assert result.exit_code == 0
    assert [line.split(" | ")[0] for line in result.stdout.splitlines() if line.startswith("SIGMAX ")] == \
        ["SIGMAX OK - 5 measurements OK in 2 checks"] * 2
    assert "sigmax_health_status 0.0" in prom.read_text()


def test_on_a_terminal_a_table_and_a_live_panel(cli, home):
    tty = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1", "COLUMNS": "150", **HOST_UNGRADED}
    once = cli("health", "--check", "system,killswitch", env=tty)
    assert once.exit_code == 0
    assert "sigmax health: OK" in once.stdout and "killswitch:engaged" in once.stdout and "SIGMAX OK" not in once.stdout
    watched = cli("health", "--watch", "--count", "1", "--check", "killswitch", env=tty)
    assert watched.exit_code == 0 and "released (file)" in watched.stdout and "1 checks in" in watched.stdout


def test_local_checks_import_no_heavy_library(home):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom commands.app import app\n"
            "r = CliRunner().invoke(app, ['health', '--check', 'ledger,system,heartbeat,killswitch,data,backup'])\n"
            "print(r.exit_code)\n"
            "print(','.join(m for m in ('sqlalchemy', 'ccxt', 'pandas', 'numpy', 'requests', 'matplotlib')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "SIGMAX_DATABASE_URL": f"sqlite:///{home / 'ledger.db'}"})
    exit_code, heavy = out.stdout.splitlines()
    assert exit_code == "2" and heavy == ""  # CRITICAL: there is no ledger there


def test_pushgateway_receives_the_metrics_and_a_failed_push_is_critical(cli, home, pushgateway):
    """Debian's Pushgateway on a free port gets the same metrics as the textfile (job
    sigmax_health, instance = host); a push to a closed port is a CRITICAL health:pushgateway."""
    import socket

    from tests.support.fixtures import free_port, pushed

    result = cli("health", "--check", "system", "--pushgateway", pushgateway, env=HOST_UNGRADED)
    assert result.exit_code == 0, result.stdout + result.stderr
    families = pushed(pushgateway)
    (status,) = families["sigmax_health_status"].samples
    assert status.value == 0 and status.labels["job"] == "sigmax_health"
    assert status.labels["instance"] == socket.gethostname()
    assert any(s.labels.get("check") == "system" for s in families["sigmax_health_check_status"].samples)

    closed = free_port()
    failed = cli("health", "--check", "system", "--pushgateway", f"http://127.0.0.1:{closed}", env=HOST_UNGRADED)
    assert failed.exit_code == 2
    assert f"[CRITICAL] health:pushgateway - cannot push to the Pushgateway http://127.0.0.1:{closed}" in failed.stdout
