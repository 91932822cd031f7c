"""``--pushgateway URL`` of the batch jobs ``backup`` and ``research`` on a real Pushgateway
(Debian's ``prometheus-pushgateway``, started on a free port by the shared fixture): a run
that succeeds replaces its group's metrics, a failed run adds its outcome and keeps the last
success's timestamp, and a push that fails is a warning that leaves the exit code alone."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.conftest import REDIS_URL
from tests.support.feeds_server import FeedsServer
from tests.support.fixtures import free_port, pushed

WARNING = "the {} itself is not affected (its exit code is unchanged)."


def _job(families: dict, name: str, job: str) -> dict[tuple, float]:
    """``{label values except job/instance: value}`` of one metric pushed by ``job`` from this host."""
    family = families.get(name.removesuffix("_total"))
    if family is None:
        return {}
    return {tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("job", "instance"))): s.value
            for s in family.samples if s.name == name and s.labels.get("job") == job
            and s.labels.get("instance") == socket.gethostname()}


def _one(families: dict, name: str, job: str) -> float:
    (value,) = _job(families, name, job).values()
    return value


def test_backup_pushes_its_metrics_and_a_failure_keeps_the_last_success(cli, pushgateway, tmp_path):
    before = time.time()
    done = cli("backup", "--include", "config", "--json", "--pushgateway", pushgateway)
    assert done.exit_code == 0, done.output
    archive = json.loads(done.stdout)
    families = pushed(pushgateway)
    success = _one(families, "sigmax_job_last_success_timestamp_seconds", "sigmax_backup")
    assert before <= success <= time.time()
    assert _one(families, "sigmax_backup_size_bytes", "sigmax_backup") == archive["size_bytes"] > 0
    assert _one(families, "sigmax_job_exit_code", "sigmax_backup") == 0
    assert 0 < _one(families, "sigmax_job_duration_seconds", "sigmax_backup") < 600

    failed = cli("backup", "--include", "nothing", "--pushgateway", pushgateway)
    assert failed.exit_code == 2 and failed.stderr.startswith("error: ")
    families = pushed(pushgateway)
    assert _one(families, "sigmax_job_exit_code", "sigmax_backup") == 2
    assert _one(families, "sigmax_job_last_failure_timestamp_seconds", "sigmax_backup") >= success
    assert _one(families, "sigmax_job_last_success_timestamp_seconds", "sigmax_backup") == success  # kept
    assert _one(families, "sigmax_backup_size_bytes", "sigmax_backup") == archive["size_bytes"]

    again = cli("backup", "--include", "config", "--pushgateway", pushgateway)  # success replaces the group
    assert again.exit_code == 0, again.output
    families = pushed(pushgateway)
    assert _one(families, "sigmax_job_exit_code", "sigmax_backup") == 0
    assert _job(families, "sigmax_job_last_failure_timestamp_seconds", "sigmax_backup") == {}

    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = cli("backup", "--include", "config", "--json", "--pushgateway", closed)
    assert unreachable.exit_code == 0 and json.loads(unreachable.stdout)["verified"]
    assert unreachable.stderr.startswith(f"warning: cannot push to the Pushgateway {closed} (")
    assert unreachable.stderr.rstrip().endswith(WARNING.format("backup"))
    listed = cli("backup", "list", "--pushgateway", pushgateway)  # only a backup pushes
    assert listed.exit_code == 2


def test_backup_refuses_a_bad_pushgateway_url_before_writing_anything(cli, tmp_path):
    done = cli("backup", "--include", "config", "--pushgateway", "gateway:9091")
    assert done.exit_code == 2
    assert done.stderr == ("error: --pushgateway gateway:9091 is not an http(s) URL; pass the Pushgateway's "
                           "address, e.g. http://127.0.0.1:9091.\n")
    assert not (tmp_path / "home" / "backups").exists()


def test_research_pushes_each_run_and_the_newest_published_signal(cli, data_dir, pushgateway, redis_prefix):
    stream = f"{redis_prefix}signals"
    with FeedsServer(data_dir) as server:
        env = {**server.env(), "SIGMAX_RESEARCH__MARKET_COINS": "BTC", "SIGMAX_RESEARCH__LOOKBACK_HOURS": "1000000",
               "SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_RESEARCH__STREAM": stream}
        result = cli("research", "--publish", "--json", "--pushgateway", pushgateway, env=env)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    families = pushed(pushgateway)
    items = _job(families, "sigmax_research_items", "sigmax_research")
    assert items[(("kind", "new"),)] == doc["new_count"] > 0
    assert items[(("kind", "fetched"),)] >= doc["new_count"]
    assert _one(families, "sigmax_research_sources_failed", "sigmax_research") == 0
    assert _one(families, "sigmax_job_exit_code", "sigmax_research") == 0
    newest = _job(families, "sigmax_signal_newest_timestamp_seconds", "sigmax_research")
    assert newest == {(("stream", stream),): int(doc["published"]["ids"][-1].split("-")[0]) / 1000}

    down = cli("research", "--publish", "--pushgateway", pushgateway,
               env={"SIGMAX_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert down.exit_code == 69
    families = pushed(pushgateway)
    assert _one(families, "sigmax_job_exit_code", "sigmax_research") == 69
    assert _job(families, "sigmax_signal_newest_timestamp_seconds", "sigmax_research") == newest  # kept


@pytest.mark.parametrize("command", [["research"], ["backup", "--include", "config"]])
def test_a_failed_push_never_changes_the_exit_code(cli, data_dir, command):
    closed = f"http://127.0.0.1:{free_port()}"
    with FeedsServer(data_dir) as server:
        done = cli(*command, "--pushgateway", closed, env={**server.env(), "SIGMAX_RESEARCH__MARKET_COINS": "BTC"})
    assert done.exit_code == 0, done.output
    assert f"warning: cannot push to the Pushgateway {closed} (" in done.stderr
    assert WARNING.format(command[0]) in done.stderr
