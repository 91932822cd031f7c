"""The Redis signal stream on the real Redis at 127.0.0.1: capped XADD, incremental readers
whose checkpoint survives a process dying mid-batch, the newest signal's age, and
``sigmax research --publish`` end to end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from sigmax_cli.research.signals import (
    SignalReader,
    connect,
    latest_signal,
    newest_signal_age_ms,
    publish,
    signal_fields,
)
from tests.conftest import REDIS_URL
from tests.support.feeds_server import FeedsServer

pytestmark = pytest.mark.redis

READER_SCRIPT = r"""
import os, sys
from sigmax_cli.research.signals import SignalReader, connect

url, stream, out, crash_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
reader = SignalReader(connect(url), stream, "risk")
handled = 0

def handle(signal):
    global handled
    handled += 1
    if handled == crash_at:
        os._exit(3)  # the process dies while handling: this entry is not finished
    with open(out, "a") as fh:
        fh.write(signal.id + "\n")
        fh.flush()
        os.fsync(fh.fileno())

while reader.consume(handle, count=5):
    pass
"""


@pytest.fixture
def client():
    c = connect(REDIS_URL)
    yield c
    c.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_reader(stream: str, out, crash_at: int) -> int:
    return subprocess.run([sys.executable, "-c", READER_SCRIPT, REDIS_URL, stream, str(out), str(crash_at)],
                          capture_output=True, text=True, timeout=60).returncode


def test_checkpoint_survives_a_reader_dying_mid_batch_without_loss_or_repeat(client, redis_prefix, tmp_path):
    stream = f"{redis_prefix}signals"
    ids = publish(client, stream, [{"kind": "sentiment", "coin": "BTC", "n": str(i)} for i in range(23)], 1000)
    out = tmp_path / "handled.txt"
    assert _run_reader(stream, out, crash_at=8) == 3  # killed inside its second batch of 5
    first = out.read_text().split()
    assert first == ids[:7]
    assert SignalReader(client, stream, "risk").checkpoint == ids[6]
    assert _run_reader(stream, out, crash_at=0) == 0  # the restart
    assert out.read_text().split() == ids  # every signal once, in order
    assert SignalReader(client, stream, "risk").checkpoint == ids[-1]
    assert SignalReader(client, stream, "risk").read() == []
    other = SignalReader(client, stream, "health")  # another reader keeps its own checkpoint
    assert [s.id for s in other.read(count=100)] == ids
    more = publish(client, stream, [{"kind": "sentiment", "coin": "*", "n": "x"}], 1000)
    assert _run_reader(stream, out, crash_at=0) == 0
    assert out.read_text().split() == ids + more


def test_a_handler_error_stops_the_batch_on_the_last_finished_entry(client, redis_prefix):
    stream = f"{redis_prefix}signals"
    ids = publish(client, stream, [{"coin": "BTC", "n": str(i)} for i in range(6)], 1000)
    reader = SignalReader(client, stream, "risk")
    seen: list[str] = []

    def handler(signal):
        if signal.fields["n"] == "3":
            raise RuntimeError("boom")
        seen.append(signal.id)

    with pytest.raises(RuntimeError):
        reader.consume(handler)
    assert seen == ids[:3] and reader.checkpoint == ids[2]
    assert [s.id for s in SignalReader(client, stream, "risk").read()] == ids[3:]


def test_xadd_is_capped_near_max_len(client, redis_prefix):
    stream = f"{redis_prefix}signals"
    last: list[str] = []
    for chunk in range(10):
        last = publish(client, stream, [{"coin": "BTC", "n": f"{chunk}-{i}"} for i in range(100)], max_len=50)
    length = client.xlen(stream)
    assert 50 <= length < 1000  # "~": Redis trims whole nodes, so a little more than 50 may stay
    assert client.xrevrange(stream, count=1)[0][0] == last[-1]


def test_newest_signal_age(client, redis_prefix):
    stream = f"{redis_prefix}signals"
    assert newest_signal_age_ms(client, stream) is None
    [first] = publish(client, stream, [{"coin": "*"}], 100)
    [newest] = publish(client, stream, [{"coin": "BTC"}], 100)
    newest_ms = int(newest.split("-")[0])
    assert newest_signal_age_ms(client, stream, now_ms=newest_ms + 1234) == 1234
    assert newest_signal_age_ms(client, stream, now_ms=newest_ms - 10) == 0  # never negative
    assert newest_signal_age_ms(client, stream) >= 0  # on the Redis server's clock


def test_reader_names_and_redis_faults(client, redis_prefix):
    from sigmax_cli.errors import ConfigError
    from sigmax_cli.research.signals import StreamUnavailable

    with pytest.raises(ConfigError, match="consumer group name"):
        SignalReader(client, f"{redis_prefix}s", "has space")
    port = _closed_port()
    with pytest.raises(StreamUnavailable) as err:
        connect(f"redis://:hunter2pass@127.0.0.1:{port}/0", timeout_s=1)
    assert "hunter2pass" not in err.value.sentence() and f"127.0.0.1:{port}" in err.value.sentence()
    with pytest.raises(ConfigError, match="malformed"):
        connect("http://127.0.0.1:6379")


def test_research_publish_end_to_end(cli, data_dir, redis_prefix, client):
    stream = f"{redis_prefix}signals"
    with FeedsServer(data_dir) as server:
        env = {**server.env(), "SIGMAX_RESEARCH__MARKET_COINS": "BTC", "SIGMAX_RESEARCH__LOOKBACK_HOURS": "1000000",
               "SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_RESEARCH__STREAM": stream}
        result = cli("research", "--publish", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    coins = [c for c, a in doc["aggregates"]["coins"].items() if a["count"]]
    assert doc["published"]["stream"] == stream and len(doc["published"]["ids"]) == len(coins) + 1
    entries = client.xrange(stream)
    assert [e[0] for e in entries] == doc["published"]["ids"]
    by_coin = {fields["coin"]: fields for _, fields in entries}
    assert list(by_coin) == [*coins, "*"]
    overall = doc["aggregates"]["overall"]
    assert float(by_coin["*"]["score"]) == pytest.approx(overall["decayed"], abs=1e-4)
    assert int(by_coin["*"]["count"]) == overall["count"]
    assert by_coin["BTC"]["fear_greed"] == str(doc["aggregates"]["fear_greed"]["value"])
    assert by_coin["BTC"]["fear_greed_class"] == doc["aggregates"]["fear_greed"]["classification"]
    assert signal_fields(doc["aggregates"], None, 1)[-1]["fear_greed"] == ""
    market = latest_signal(client, stream)  # what the risk layer's sentiment rule reads
    assert market.id == doc["published"]["ids"][-1] and market.value("score") == pytest.approx(overall["decayed"],
                                                                                              abs=1e-4)
    assert latest_signal(client, stream, coin="BTC").fields["coin"] == "BTC"
    assert latest_signal(client, stream, coin="DOGE") is None


def test_publish_with_redis_down_exits_69_in_one_sentence_and_writes_nothing(cli, tmp_path):
    port = _closed_port()
    result = cli("research", "--publish", env={"SIGMAX_REDIS_URL": f"redis://:s3cretpw@127.0.0.1:{port}/0"})
    assert result.exit_code == 69
    assert result.stderr.startswith(f"error: cannot reach Redis at redis://:***@127.0.0.1:{port}/0 (")
    assert result.stderr.endswith("; start Redis or fix SIGMAX_REDIS_URL.\n") and result.stderr.count("\n") == 1
    assert "s3cretpw" not in result.stdout + result.stderr
    assert not (tmp_path / "home" / "ledger.db").exists()

