"""``sigmax signals tail`` on the real Redis at 127.0.0.1 (own key prefix per test): resuming
from the group's checkpoint across process restarts, --follow until SIGTERM, bad input, and
its metrics on a real Pushgateway, scraped by a real Prometheus that answers the dashboards'
queries on the pushed metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sigmax_cli.research.signals import SignalReader, connect, publish
from tests.conftest import REDIS_URL, REPO
from tests.support.fixtures import free_port, pushed, wait_http

pytestmark = pytest.mark.redis


@pytest.fixture
def client():
    c = connect(REDIS_URL)
    yield c
    c.close()


@pytest.fixture
def stream(redis_prefix):
    return f"{redis_prefix}signals"


def _env(stream: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SIGMAX_REDIS_URL": REDIS_URL,
            "SIGMAX_RESEARCH__STREAM": stream, **extra}


def sigmax(stream: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``sigmax ARGS`` in its own process (a restart is a new process)."""
    return subprocess.run([sys.executable, "-m", "commands.app", *args], cwd=REPO, env=_env(stream, **env),
                          capture_output=True, text=True, timeout=120)


def _entries(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"kind": "sentiment", "coin": "BTC" if i % 2 else "*", "score": f"{i / 10:.6f}", "fear_greed": "",
             "n": str(i)} for i in range(start, start + n)]


def test_tail_resumes_from_the_checkpoint_after_a_restart(client, stream):
    ids = publish(client, stream, _entries(5), 1000)
    first = sigmax(stream, "signals", "tail", "--group", "ops", "--create", "--count", "2")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ids[:2]
    assert lines[0].endswith("kind=sentiment coin=* score=0.000000 n=0")  # empty fields left out
    assert SignalReader(client, stream, "ops").checkpoint == ids[1]

    rest = sigmax(stream, "signals", "tail", "--group", "ops", "--json")  # the restart: no --create needed
    assert rest.returncode == 0, rest.stderr
    docs = [json.loads(line) for line in rest.stdout.splitlines()]
    assert [d["id"] for d in docs] == ids[2:]
    assert docs[0]["fields"] == {"kind": "sentiment", "coin": "*", "score": "0.200000", "fear_greed": "", "n": "2"}
    assert docs[0]["group"] == "ops" and docs[0]["stream"] == stream and docs[0]["ms"] == int(ids[2].split("-")[0])

    assert sigmax(stream, "signals", "tail", "--group", "ops").stdout == ""  # caught up: nothing again
    more = publish(client, stream, _entries(2, start=5), 1000)
    again = sigmax(stream, "signals", "tail", "--group", "ops", "--json")
    assert [json.loads(line)["id"] for line in again.stdout.splitlines()] == more
    other = sigmax(stream, "signals", "tail", "--group", "audit", "--create", "--json")  # its own checkpoint
    assert [json.loads(line)["id"] for line in other.stdout.splitlines()] == ids + more


def test_follow_prints_new_signals_until_sigterm_and_keeps_the_checkpoint(client, stream):
    old = publish(client, stream, _entries(1), 1000)
    proc = subprocess.Popen([sys.executable, "-m", "commands.app", "signals", "tail", "--group", "live", "--create",
                             "--follow", "--json"], cwd=REPO, env=_env(stream), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline())["id"] == old[0]
        new = publish(client, stream, _entries(3, start=1), 1000)
        assert [json.loads(proc.stdout.readline())["id"] for _ in new] == new
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert SignalReader(client, stream, "live").checkpoint == new[-1]


def test_bad_input_is_one_sentence_and_a_non_zero_exit(client, stream):
    missing = sigmax(stream, "signals", "tail", "--group", "ops")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == (f"error: the signal stream '{stream}' does not exist in this Redis; check "
                              "research.stream (SIGMAX_RESEARCH__STREAM) and SIGMAX_REDIS_URL, or publish first with "
                              "`sigmax research --publish`.\n")
    publish(client, stream, _entries(1), 1000)
    unknown = sigmax(stream, "signals", "tail", "--group", "nobody")
    assert unknown.returncode == 2
    assert unknown.stderr == (f"error: consumer group 'nobody' has no checkpoint on {stream}; check the name, or pass "
                              "--create to start it at the oldest entry.\n")
    assert not client.exists(f"{stream}:checkpoint:nobody")  # nothing created by a refusal

    client.set(f"{stream}:not-a-stream", "x")
    wrong = sigmax(stream, "signals", "tail", "--group", "ops", "--stream", f"{stream}:not-a-stream")
    assert wrong.returncode == 2 and "is a string, not a stream" in wrong.stderr

    down = sigmax(stream, "signals", "tail", "--group", "ops", SIGMAX_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 69
    assert down.stderr.startswith("error: cannot reach Redis at redis://127.0.0.1:") and down.stderr.count("\n") == 1
    assert down.stderr.rstrip().endswith("; start Redis or fix SIGMAX_REDIS_URL.")

    no_redis = subprocess.run([sys.executable, "-m", "commands.app", "signals", "tail", "--group", "ops"], cwd=REPO,
                              env={k: v for k, v in _env(stream).items() if k != "SIGMAX_REDIS_URL"},
                              capture_output=True, text=True, timeout=120)
    assert no_redis.returncode == 2 and "no Redis is configured; set SIGMAX_REDIS_URL" in no_redis.stderr
    bad_url = sigmax(stream, "signals", "tail", "--group", "ops", "--pushgateway", "ftp://x")
    assert bad_url.returncode == 2 and "--pushgateway ftp://x is not an http(s) URL" in bad_url.stderr
    bad_group = sigmax(stream, "signals", "tail", "--group", "a b")
    assert bad_group.returncode == 2 and "consumer group name 'a b' is not allowed" in bad_group.stderr


def test_pushed_metrics_reach_a_real_prometheus_and_answer_the_dashboards(client, stream, pushgateway, tmp_path):
    """The stream's state as pushed (newest entry, lag of the group, consumed count, job
    outcome), then a Prometheus scraping that Pushgateway: every dashboard query on pushed
    metrics returns series. A push to a closed port is a warning and leaves the exit code 0."""
    import shutil
    import urllib.request
    from urllib.parse import quote

    import yaml

    from sigmax_cli.observability.export import dashboards, files

    ids = publish(client, stream, _entries(5), 1000)
    done = sigmax(stream, "signals", "tail", "--group", "ops", "--create", "--count", "2", "--consumer", "box1",
                  "--pushgateway", pushgateway)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    families = pushed(pushgateway)

    def sample(name: str):
        (found,) = [s for s in families[name.removesuffix("_total")].samples
                    if s.name == name and s.labels.get("job") == "sigmax_signals"]
        assert found.labels["instance"] == "box1"
        return found

    assert sample("sigmax_signal_newest_timestamp_seconds").value == int(ids[-1].split("-")[0]) / 1000
    assert 0 <= sample("sigmax_signal_age_seconds").value < 600
    lag = sample("sigmax_signal_consumer_lag_entries")
    assert lag.value == 3 and lag.labels["group"] == "ops" and lag.labels["stream"] == stream
    assert 0 <= sample("sigmax_signal_consumer_lag_seconds").value < 600
    assert sample("sigmax_signal_consumed_total").value == 2
    assert sample("sigmax_job_exit_code").value == 0
    assert time.time() - sample("sigmax_job_last_success_timestamp_seconds").value < 600

    refused = sigmax(stream, "signals", "tail", "--group", "ops", "--pushgateway", f"http://127.0.0.1:{free_port()}")
    assert refused.returncode == 0 and len(refused.stdout.splitlines()) == 3
    assert refused.stderr.startswith("warning: cannot push to the Pushgateway http://127.0.0.1:")
    assert refused.stderr.rstrip().endswith("; the signals tail itself is not affected (its exit code is unchanged).")

    failed = sigmax(stream, "signals", "tail", "--group", "nobody", "--consumer", "box1", "--pushgateway", pushgateway)
    assert failed.returncode == 2
    families = pushed(pushgateway)
    outcome = [s for s in families["sigmax_job_exit_code"].samples if s.labels.get("group") == "nobody"]
    assert [s.value for s in outcome] == [2]  # the failure is pushed (added to its own group)

    if shutil.which("prometheus") is None:
        pytest.skip("prometheus missing: apt-get install prometheus (.ci/run installs it)")
    prom_port = free_port()
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    (prom_dir / "sigmax-rules.yml").write_text(files()["prometheus/sigmax-rules.yml"])
    config = yaml.safe_load(files()["prometheus/prometheus.yml"])
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(prom_dir / "sigmax-rules.yml")]
    config["scrape_configs"] = [c for c in config["scrape_configs"] if c["job_name"] == "pushgateway"]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [pushgateway.removeprefix("http://")]}]
    (prom_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(["prometheus", f"--config.file={prom_dir / 'prometheus.yml'}",
                             f"--storage.tsdb.path={prom_dir / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=open(prom_dir / "prometheus.log", "w"))
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr: str) -> dict:
        try:
            return json.loads(urllib.request.urlopen(f"{api}/query?query={quote(expr)}", timeout=5).read())
        except OSError:
            return {}

    try:
        assert wait_http(f"{api}/status/buildinfo"), (prom_dir / "prometheus.log").read_text()[-2000:]
        exprs = [t["expr"] for board in dashboards().values() for p in board["panels"] for t in p["targets"]
                 if any(w in t["expr"] for w in ("sigmax_signal", "sigmax_job"))]
        assert len(exprs) >= 4
        deadline = time.monotonic() + 90
        answered: dict[str, bool] = {}
        while time.monotonic() < deadline:
            answered = {e: bool(query(e).get("data", {}).get("result")) for e in exprs}
            if all(answered.values()):
                break
            time.sleep(0.5)
        assert all(answered.values()), [e for e, ok in answered.items() if not ok]
        age = query(f'time() - max by (stream) (sigmax_signal_newest_timestamp_seconds{{stream="{stream}"}})')
        assert 0 <= float(age["data"]["result"][0]["value"][1]) < 600
        failed_jobs = query("sigmax_job_exit_code != 0")["data"]["result"]
        assert [r["metric"]["group"] for r in failed_jobs] == ["nobody"]  # SigmaxBatchJobFailed's condition
    finally:
        proc.terminate()
        proc.wait(timeout=30)
