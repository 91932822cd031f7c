"""freqtrade's spellings, so switching is cheap: --timerange, -p/--pairs (space- or
comma-separated), -i, --datadir; `report --format csv` (the trades); shell completion.

Everything runs through the real CLI (the root app in process, or the `sigmax` console script
where the shell's view matters) on the real bundled sample; each bad input is one sentence,
exit 2, and nothing written."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.data.timerange import parse_timerange
from sigmax_cli.errors import ConfigError
from sigmax_cli.report.formats import RUN_COLUMNS, TRADE_COLUMNS
from tests.conftest import FREQTRADE_1H, REPO

JAN_2021 = 1609459200000  # 2021-01-01 00:00 UTC
FEB_2021 = 1612137600000
MAR_2021 = 1614556800000
HOUR = 3_600_000


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _one_sentence(result, *needles: str) -> str:
    """The error of a bad input: exit 2, one line on stderr, ``error: ...;  ....``, nothing on stdout."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), result.stderr
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# -- --timerange ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "start", "end"), [
    ("20210101-20210301", JAN_2021, MAR_2021),
    ("20210101-", JAN_2021, None),
    ("-20210301", None, MAR_2021),
    ("1609459200-1614556800", JAN_2021, MAR_2021),  # Unix seconds
    ("1609459200000-", JAN_2021, None),  # Unix milliseconds
    (" 20210101-20210201 ", JAN_2021, FEB_2021),
])
def test_timerange_grammar_is_freqtrades(text, start, end):
    parsed = parse_timerange(text)
    assert (parsed.start_ms, parsed.end_ms) == (start, end)


@pytest.mark.parametrize(("text", "needle"), [
    ("2021-01-01", "is not a time range"),
    ("20210101", "is not a time range"),
    ("202101-202103", "is not a time range"),
    ("-", "leaves both ends open"),
    ("20210230-", "20210230 is not a calendar date"),
    ("20210301-20210101", "does not start before it ends"),
    ("20210101-20210101", "does not start before it ends"),
])
def test_a_bad_timerange_is_refused_with_its_reason(text, needle):
    with pytest.raises(ConfigError) as err:
        parse_timerange(text)
    sentence = err.value.sentence()
    assert needle in sentence and repr(text) in sentence
    assert ("swap or correct the dates" if "before it ends" in needle else "20210101-") in sentence


def test_timerange_replays_the_same_bars_as_start_and_end(cli):
    by_range = _json(cli("paper", "--data", "sample", "--timerange", "20210101-20210201", "--no-tui", "--json"))
    by_dates = _json(cli("paper", "--data", "sample", "--start", "2021-01-01", "--end", "2021-02-01",
                         "--no-tui", "--json"))
    for key in ("bars", "first_bar_ms", "last_bar_ms", "orders", "fills", "final_equity"):
        assert by_range[key] == by_dates[key], key
    assert by_range["first_bar_ms"] == JAN_2021 and by_range["last_bar_ms"] == FEB_2021 - HOUR  # end excluded
    open_end = _json(cli("paper", "--data", "sample", "--timerange", "20210215-", "--no-tui", "--json"))
    assert open_end["first_bar_ms"] == JAN_2021 + 45 * 24 * HOUR and open_end["last_bar_ms"] == MAR_2021 - HOUR


@pytest.mark.parametrize(("args", "needles"), [
    (["--timerange", "20210101-", "--start", "2021-01-01"], ["--timerange 20210101-", "--start 2021-01-01"]),
    (["--timerange", "20210101-20210201", "--end", "2021-02-01"], ["--end 2021-02-01", "not both"]),
    (["--timerange", "2021-01-01"], ["is not a time range"]),
    (["--timerange", "20210230-"], ["not a calendar date"]),
    (["--timerange", "20210301-20210101"], ["does not start before it ends"]),
])
def test_bad_timerange_on_paper_is_one_sentence_exit_2_and_nothing_written(cli, tmp_path, args, needles):
    _one_sentence(cli("paper", "--data", "sample", *args, "--no-tui", "--json"), *needles)
    assert not (tmp_path / "home" / "ledger.db").exists()


def test_a_timerange_with_an_end_needs_data_to_replay(cli, tmp_path):
    _one_sentence(cli("paper", "--timerange", "20210101-20210201", "--no-tui"), "a live run (no --data)",
                  "--data sample")
    assert not (tmp_path / "home" / "ledger.db").exists()


# -- -p/--pairs, -i, --datadir -------------------------------------------------------------------
@pytest.mark.parametrize("spelling", [
    ["--symbols", "BTC/USDT,XRP/USDT"],
    ["-p", "BTC/USDT", "XRP/USDT"],  # freqtrade's nargs='+'
    ["--pairs", "btc/usdt", "xrp/usdt"],
    ["-p", "BTC/USDT XRP/USDT"],
    ["--pairs=BTC/USDT,", "XRP/USDT"],
    ["--symbols", "BTC/USDT, XRP/USDT BTC/USDT"],  # repeats dropped
])
def test_pairs_may_be_spelled_as_freqtrade_does(cli, spelling):
    summary = _json(cli("paper", "--datadir", "sample", *spelling, "-i", "1h", "--max-bars", "4",
                        "--no-tui", "--json"))
    assert summary["symbols"] == ["BTC/USDT", "XRP/USDT"] and summary["timeframe"] == "1h"


def test_a_pair_list_ends_at_the_next_option(cli):
    summary = _json(cli("paper", "-p", "ETH/USDT", "XRP/USDT", "--data", "sample", "--max-bars", "2",
                        "--no-tui", "--json"))
    assert summary["symbols"] == ["ETH/USDT", "XRP/USDT"]


def test_a_pair_the_data_lacks_is_still_one_sentence(cli):
    result = cli("paper", "--datadir", "sample", "-p", "BTC/USDT", "SOL/USDT", "--no-tui", "--json")
    assert result.exit_code == 65 and "no 1h candles for SOL/USDT" in result.stderr


@pytest.mark.parametrize("command", [["paper", "--data", "sample"], ["data", "check", "sample", "-i", "1h"],
                                     ["data", "download", "--since", "2021-01-01"]])
@pytest.mark.parametrize("value", ["", ",", " , "])
def test_a_pair_list_naming_no_pair_is_one_sentence(cli, tmp_path, command, value):
    _one_sentence(cli(*command, "-p", value), "names no symbol", "--symbols BTC/USDT,ETH/USDT")
    assert not (tmp_path / "home" / "ledger.db").exists()


def test_data_check_takes_pairs_and_i(cli):
    doc = _json(cli("data", "check", "sample", "-p", "btc/usdt xrp/usdt", "-i", "1h", "--json"))
    assert [f["symbol"] for f in doc["files"]] == ["BTC/USDT", "XRP/USDT"]
    assert all(f["bars"] == 2155 for f in doc["files"])


def test_data_download_takes_freqtrades_spellings(cli, binance_emulator, tmp_path):
    for name in ("BTC_USDT-1h.json", "ETH_USDT-1h.json"):
        binance_emulator.add_candles(load_candles(FREQTRADE_1H / name))
    out = tmp_path / "dl"
    result = cli("data", "download", "-p", "BTC/USDT", "ETH/USDT", "-i", "1h", "--timerange", "20210101-20210102",
                 "--datadir", out, "--json", env={"SIGMAX_EXCHANGE_API_URL": binance_emulator.url})
    doc = _json(result)
    assert sorted(Path(f["path"]).name for f in doc["files"]) == ["BTC_USDT-1h.json", "ETH_USDT-1h.json"]
    for name in ("BTC_USDT-1h.json", "ETH_USDT-1h.json"):
        rows = json.loads((out / name).read_text())
        assert len(rows) == 24 and rows[0][0] == JAN_2021 and rows[-1][0] == JAN_2021 + 23 * HOUR
        source = json.loads((FREQTRADE_1H / name).read_text())
        assert rows == [r for r in source if JAN_2021 <= r[0] < JAN_2021 + 24 * HOUR]


@pytest.mark.parametrize(("args", "needles"), [
    (["--timerange", "20210101-", "--since", "2021-01-01"], ["--timerange 20210101-", "--since 2021-01-01"]),
    (["--timerange", "20210101-20210201", "--until", "2021-02-01"], ["--until", "not both"]),
    (["--timerange", "-20210201"], ["needs its first bar", "--timerange 20240101-"]),
    ([], ["needs its first bar", "--since 2024-01-01"]),
    (["--timerange", "20210101"], ["is not a time range"]),
])
def test_bad_download_ranges_are_one_sentence_exit_2_before_any_request(cli, tmp_path, args, needles):
    # SIGMAX_EXCHANGE_API_URL names no server: an answer would need a request, which is not made
    result = cli("data", "download", "-p", "BTC/USDT", "-i", "1h", *args, "--datadir", tmp_path / "dl",
                 env={"SIGMAX_EXCHANGE_API_URL": "http://127.0.0.1:9"})
    _one_sentence(result, *needles)
    assert not (tmp_path / "dl").exists()


# -- report --format csv --------------------------------------------------------------------------
def _csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def test_report_csv_exports_one_row_per_trade(cli, tmp_path):
    run = _json(cli("paper", "--data", "sample", "--no-tui", "--json"))
    doc = _json(cli("report", "--format", "json"))
    trips = doc["round_trips"]
    assert len(trips) == doc["trading"]["trades"] > 0
    result = cli("report", "--format", "csv")
    assert result.exit_code == 0, result.output
    header, rows = _csv_rows(result.stdout)
    assert header == list(TRADE_COLUMNS) and len(rows) == len(trips)
    for row, trip in zip(rows, trips, strict=True):
        assert row["run_id"] == run["run_id"] and row["quote"] == "USDT"
        assert row["symbol"] == trip["symbol"] and int(row["entry_ms"]) == trip["entry_ms"]
        for key in ("qty", "entry_price", "exit_price", "gross_pnl", "fees", "pnl", "return_pct"):
            assert float(row[key]) == trip[key], key  # unrounded
        for when in ("entry", "exit"):
            iso = datetime.fromtimestamp(trip[f"{when}_ms"] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert row[f"{when}_time"] == iso
    assert sum(float(r["pnl"]) for r in rows) == pytest.approx(run["final_equity"] - 10_000, abs=1e-6)
    out = tmp_path / "trades.csv"
    written = cli("report", "--format", "csv", "--output", out)
    assert written.exit_code == 0 and written.stdout == ""
    assert out.read_text() == result.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".trades.csv")] == []  # no temporary left


def test_report_csv_of_a_run_without_trades_is_the_header_only(cli):
    _json(cli("paper", "--data", "sample", "--max-bars", "3", "--no-tui", "--json"))
    result = cli("report", "--format", "csv")
    assert result.exit_code == 0 and result.stdout == ",".join(TRADE_COLUMNS) + "\n"


def test_report_list_as_csv_is_one_row_per_run(cli):
    ids = [_json(cli("paper", "--data", "sample", "--max-bars", "3", "--no-tui", "--json"))["run_id"]
           for _ in range(2)]
    header, rows = _csv_rows(cli("report", "--list", "--format", "csv").stdout)
    assert header == list(RUN_COLUMNS)
    assert sorted(r["run_id"] for r in rows) == sorted(ids)
    assert {r["symbols"] for r in rows} == {"BTC/USDT ETH/USDT XRP/USDT"}


def test_report_csv_into_a_missing_directory_is_one_sentence_and_writes_nothing(cli, tmp_path):
    _json(cli("paper", "--data", "sample", "--max-bars", "3", "--no-tui", "--json"))
    result = cli("report", "--format", "csv", "--output", tmp_path / "nowhere" / "trades.csv")
    _one_sentence(result, "cannot write")
    assert not (tmp_path / "nowhere").exists()


# -- shell completion ------------------------------------------------------------------------------
def _sigmax(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {}),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.run([sys.executable, "-m", "commands.app", *args], env=full, capture_output=True,
                          text=True, timeout=120)


def test_shell_completion_completes_commands_and_the_new_options():
    def complete(words: str) -> list[str]:
        done = _sigmax(env={"_SIGMAX_COMPLETE": "complete_bash", "COMP_WORDS": words,
                            "COMP_CWORD": str(len(words.split()) - 1)})
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("sigmax pap") == ["paper"]
    assert complete("sigmax paper --time") == ["--timeframe", "--timerange"]
    assert "--pairs" in complete("sigmax paper --pa") and "--datadir" in complete("sigmax data download --da")
    assert complete("sigmax report --format c") == ["csv"]
    script = _sigmax("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.returncode == 0 and "complete -o default -F _sigmax_completion sigmax" in script.stdout
