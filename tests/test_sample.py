"""The real candle sample bundled with sigmax and the first run that works offline.

`sigmax paper --data sample` replays it; `make paper` downloads when the exchange answers and
falls back to the sample, in one line, when it cannot be reached (exit 69), but never hides
another failure. The `make paper` tests run the real Makefile in a subprocess with PIP=true
(the install step is the only part skipped: sigmax is already installed in the test
environment), against the exchange emulator or a local port that refuses connections.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.data.sample import SAMPLE_DIR, SAMPLE_SYMBOLS, resolve_data
from sigmax_cli.markets import DECIMAL_PLACES, load_markets_file
from tests.conftest import FREQTRADE_1H, REPO

FILES = [f"{s.replace('/', '_')}-1h.json" for s in SAMPLE_SYMBOLS]
FALLBACK_LINE = "cannot reach binance"
DEC_2020 = 1606780800000  # 2020-12-01 00:00 UTC
MAR_2021 = 1614556800000  # 2021-03-01 00:00 UTC


def test_the_sample_holds_three_months_of_real_binance_1h_candles():
    for name, symbol in zip(FILES, SAMPLE_SYMBOLS, strict=True):
        candles = load_candles(SAMPLE_DIR / name)
        assert candles.symbol == symbol and candles.timeframe == "1h"
        assert len(candles) == 2155
        assert int(candles.ts[0]) == DEC_2020 and int(candles.ts[-1]) == MAR_2021 - 3_600_000
        assert candles.missing_bars == 5 and len(candles.gaps) == 3  # Binance maintenance, left in
        assert not candles.warnings()
    btc = load_candles(SAMPLE_DIR / "BTC_USDT-1h.json")
    assert float(btc.open[0]) == 19695.87  # the spot check of shared/data's README
    assert float(btc.close[-1]) == 45135.66


def test_sample_rows_are_the_source_files_rows_byte_for_byte(data_dir):
    for name in FILES:
        sample = (SAMPLE_DIR / name).read_bytes()
        source = (FREQTRADE_1H / name).read_bytes()
        assert sample.endswith(b"]]")
        body = sample[:-1]  # the source's text up to the end of the last row kept
        assert source.startswith(body) and source[len(body):len(body) + 1] == b","
        assert all(row[0] < MAR_2021 for row in json.loads(sample))
        assert json.loads(source)[len(json.loads(sample))][0] == MAR_2021  # nothing before March left out


def test_sample_markets_parse_with_binances_real_precision(data_dir):
    rules = load_markets_file(SAMPLE_DIR / "markets.json")
    assert sorted(rules) == sorted(SAMPLE_SYMBOLS)
    expected = {"BTC/USDT": (1e-05, 0.01), "ETH/USDT": (1e-04, 0.01), "XRP/USDT": (1.0, 0.0001)}
    for symbol, (step, tick) in expected.items():
        rule = rules[symbol]
        assert rule.precision_mode == DECIMAL_PLACES  # the fixture's digit counts, read as such
        assert (rule.amount_step, rule.price_tick) == (step, tick)
        assert rule.min_notional == 5.0 and rule.min_amount == step
    # the entries are ccxt's static fixture unchanged, plus the precision mode
    saved = json.loads((SAMPLE_DIR / "markets.json").read_text())
    fixture = json.loads((data_dir / "exchange_api" / "ccxt_static" / "binance_markets_spot_subset.json").read_text())
    for symbol, market in saved.items():
        assert market.pop("precisionMode") == DECIMAL_PLACES
        assert market == fixture[symbol]
        # the fixture's digit counts and Binance's own filters agree
        assert 10.0 ** -market["precision"]["amount"] == expected[symbol][0]
        assert 10.0 ** -market["precision"]["price"] == expected[symbol][1]


def test_the_sample_is_small_and_names_its_source():
    total = sum(p.stat().st_size for p in SAMPLE_DIR.iterdir())
    assert total < 1_000_000
    source = (SAMPLE_DIR / "SOURCE.md").read_text()
    for fact in ("iterativv/NostalgiaForInfinity", "9b00667ee66e0cde90f9fd0619ece684785676be", "GPL-3.0",
                 "ccxt", "4c47e71283a2010e02a3e10c57daaf06a91ac846", "MIT"):
        assert fact in source
    import hashlib

    for line in source.split("```")[-2].strip().splitlines():  # the sha256 block
        digest, name = line.split()
        assert hashlib.sha256((SAMPLE_DIR / name).read_bytes()).hexdigest() == digest


def test_the_wheel_ships_the_sample(tmp_path):
    pytest.importorskip("hatchling", reason="building the wheel offline needs hatchling (dev extra)")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("sigmax-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [*FILES, "markets.json", "SOURCE.md"]:
        assert f"sigmax_cli/sample/{name}" in names


def test_paper_data_sample_replays_the_bundled_sample(cli, tmp_path):
    result = cli("paper", "--data", "sample", "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["symbols"] == list(SAMPLE_SYMBOLS)
    assert summary["timeframe"] == "1h"
    assert summary["bars"] == 3 * (2155 - 200)  # after the rules strategy's EMA(200) warm-up
    assert summary["fills"] > 0 and summary["rejections"] == {}
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        files, params = conn.execute("select data_files_json, params_json from runs").fetchone()
    assert {Path(f["path"]).resolve() for f in json.loads(files)} == {SAMPLE_DIR / n for n in FILES}
    assert Path(json.loads(params)["markets_file"]).resolve() == SAMPLE_DIR / "markets.json"


def test_paper_data_sample_takes_the_samples_timeframe_whatever_the_profile(cli, tmp_path):
    profile = tmp_path / "five.toml"
    profile.write_text('symbols = ["BTC/USDT"]\ntimeframe = "5m"\n')
    result = cli("--profile", profile, "paper", "--data", "sample", "-p", "BTC/USDT", "--max-bars", "10",
                 "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["timeframe"] == "1h"


def test_a_local_directory_named_sample_is_reached_as_dot_slash_sample(cli, tmp_path):
    local = tmp_path / "sample"  # the tests run in tmp_path
    local.mkdir()
    (local / "BTC_USDT-1h.json").write_bytes((SAMPLE_DIR / "BTC_USDT-1h.json").read_bytes())
    path, note = resolve_data("sample")
    assert path == SAMPLE_DIR and "./sample" in note
    assert resolve_data("./sample") == (Path("./sample"), None)
    result = cli("paper", "--data", "./sample", "--timeframe", "1h", "--max-bars", "5", "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["symbols"] == ["BTC/USDT"]
    result = cli("paper", "--data", "sample", "--max-bars", "5", "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["symbols"] == list(SAMPLE_SYMBOLS)
    assert "not ./sample here" in result.stderr


# -- make paper ----------------------------------------------------------------------------------
def _make_paper(tmp_path: Path, api_url: str, **variables: str) -> subprocess.CompletedProcess:
    """``make paper`` as a user runs it, with the install step skipped (PIP=true) and the code
    of this checkout on the path of the ``sigmax`` console script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGMAX_") or k.startswith("SIGMAX_TEST")}
    env.update(SIGMAX_HOME=str(tmp_path / "home"), SIGMAX_EXCHANGE_API_URL=api_url,
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    args = ["make", "--no-print-directory", "-C", str(REPO), "paper", "PIP=true",
            f"DATA_DIR={tmp_path / 'data'}", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def _runs(home: Path) -> list[tuple[str, list[str]]]:
    with sqlite3.connect(home / "ledger.db") as conn:
        return [(status, [f["path"] for f in json.loads(files)])
                for status, files in conn.execute("select status, data_files_json from runs")]


@pytest.fixture
def refused_url():
    """The URL of a local port that refuses connections: bound, never listening (so no other
    process can take it while the test runs)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_make_paper_replays_the_sample_in_one_line_when_the_exchange_is_unreachable(tmp_path, refused_url):
    done = _make_paper(tmp_path, refused_url)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in done.stdout.splitlines() if FALLBACK_LINE in line]
    assert len(said) == 1 and "sigmax paper --data sample" in said[0]
    assert done.stdout.index(said[0]) < done.stdout.index("paper run")  # said first, then the run
    assert "(completed)" in done.stdout and "run id: paper-" in done.stdout  # ends with the summary
    assert "bundled sample" in done.stdout
    assert "error" not in done.stderr  # the download's error was the reason for the line, not repeated
    ((status, files),) = _runs(tmp_path / "home")
    assert status == "completed"
    assert {Path(f).resolve() for f in files} == {SAMPLE_DIR / "BTC_USDT-1h.json", SAMPLE_DIR / "ETH_USDT-1h.json"}
    assert not (tmp_path / "data").exists()


def test_make_paper_downloads_and_replays_when_the_exchange_answers(tmp_path, binance_emulator, data_dir):
    for name in ("BTC_USDT-1h.json", "ETH_USDT-1h.json"):
        binance_emulator.add_candles(load_candles(FREQTRADE_1H / name))
    done = _make_paper(tmp_path, binance_emulator.url, SINCE="2021-06-01")
    assert done.returncode == 0, done.stdout + done.stderr
    assert FALLBACK_LINE not in done.stdout and "sample" not in done.stdout
    assert "(completed)" in done.stdout and "run id: paper-" in done.stdout
    ((status, files),) = _runs(tmp_path / "home")
    assert status == "completed"
    assert {Path(f).resolve() for f in files} == {(tmp_path / "data" / n).resolve()
                                                 for n in ("BTC_USDT-1h.json", "ETH_USDT-1h.json")}


def test_make_paper_does_not_hide_a_failure_that_is_not_an_unreachable_exchange(tmp_path, refused_url):
    done = _make_paper(tmp_path, refused_url, SINCE="not-a-date")
    assert done.returncode != 0
    assert "error: --since 'not-a-date' is not a date" in done.stderr  # the download's own sentence
    assert FALLBACK_LINE not in done.stdout and "paper run" not in done.stdout
    assert not (tmp_path / "home" / "ledger.db").exists()
