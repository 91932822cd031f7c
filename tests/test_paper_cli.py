"""`sigmax paper` end to end on real candles: the main job, the May 2021 crash, Ctrl-C,
and every kind of bad input (one sentence, non-zero exit, nothing written)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FREQTRADE_1H

MARKETS = "exchange_api/ccxt_static/binance_markets_spot_subset.json"


def ledger_rows(home: Path, sql: str, *args):
    with sqlite3.connect(home / "ledger.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, args)]


def test_ten_pairs_replay_completes_with_orders_fills_and_a_consistent_ledger(cli, tmp_path):
    result = cli("paper", "--data", FREQTRADE_1H, "--timeframe", "1h", "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert len(summary["symbols"]) == 10
    assert summary["bars"] == 10 * 5482 - 10 * 200  # every bar after the EMA(200) warm-up
    assert summary["orders"] > 0 and summary["fills"] > 0
    for key in ("run_id", "final_equity", "return_pct", "max_drawdown_pct"):
        assert key in summary
    home = tmp_path / "home"
    (run,) = ledger_rows(home, "select * from runs")
    assert run["status"] == "completed" and run["run_id"] == summary["run_id"]
    files = json.loads(run["data_files_json"])
    assert len(files) == 10 and all(len(f["sha256"]) == 64 for f in files)
    assert ledger_rows(home, "select count(*) n from equity")[0]["n"] == summary["steps"]
    assert ledger_rows(home, "select count(*) n from fills")[0]["n"] == summary["fills"]
    # every fill belongs to a recorded order, and no order is left half-way in the ledger
    orphans = ledger_rows(home, "select count(*) n from fills f left join orders o "
                                "on f.client_order_id = o.client_order_id where o.client_order_id is null")
    assert orphans[0]["n"] == 0


def test_fees_are_always_charged_and_cash_never_goes_negative(cli, tmp_path, data_dir):
    result = cli("paper", "--data", FREQTRADE_1H, "--symbols", "BTC/USDT,ETH/USDT,XRP/USDT", "--timeframe", "1h",
                 "--fee", "0.00075", "--markets", data_dir / MARKETS, "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["symbols"] == ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
    home = tmp_path / "home"
    fills = ledger_rows(home, "select * from fills")
    assert fills
    # each symbol traded at its own prices (a mislabelled file would put XRP's 0.5 USDT on BTC)
    prices = {r["symbol"]: r["p"] for r in ledger_rows(home, "select symbol, avg(price) p from fills group by symbol")}
    assert prices["BTC/USDT"] > 10_000 and 500 < prices["ETH/USDT"] < 5_000 and prices["XRP/USDT"] < 3
    for fill in fills:
        assert fill["fee"] == pytest.approx(fill["price"] * fill["amount"] * 0.00075, rel=1e-9)
        assert fill["fee"] > 0
    # amounts respect the real Binance steps of the markets file
    for fill in fills:
        step = {"BTC/USDT": 1e-5, "ETH/USDT": 1e-4, "XRP/USDT": 1.0}[fill["symbol"]]
        assert abs(fill["amount"] / step - round(fill["amount"] / step)) < 1e-6
    cash = ledger_rows(home, "select min(cash) c, min(equity - exposure) e from equity")[0]
    assert cash["c"] >= 0
    positions = ledger_rows(home, "select min(qty) q from positions")[0]
    assert positions["q"] >= 0


CRASH_PROFILE = """
symbols = ["BTC/USDT", "ETH/USDT"]
timeframe = "1h"
[strategy]
trend_ema = 2          # bars: a weak trend filter, so the strategy keeps buying the dips
rsi_entry = 45.0
position_fraction = 0.2
[risk]
max_order_notional = 3000.0
max_position_notional = 5000.0
max_total_notional = 10000.0
max_open_orders = 10
daily_loss_limit_pct = 2.0
max_drawdown_pct = 50.0
[paper]
balance = 10000.0
"""


def test_may_2021_crash_daily_loss_limit_stops_new_entries(cli, tmp_path):
    """Replays 2021-05-12 .. 2021-05-24 (the May 2021 crash). When the day's loss reaches
    2 %, trading goes REDUCING: the strategy's buys are refused until the next UTC day,
    while its exits still go through."""
    profile = tmp_path / "crash.toml"
    profile.write_text(CRASH_PROFILE)
    result = cli("--profile", profile, "paper", "--data", FREQTRADE_1H, "--timeframe", "1h",
                 "--start", "2021-05-12", "--end", "2021-05-24", "--no-tui", "--json", "--run-id", "may-crash")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    trips = [t for t in summary["risk_trips"] if t["rule"] == "daily_loss_limit"]
    assert trips, "the crash must trip the daily loss limit"
    home = tmp_path / "home"
    denied_total = 0
    for trip in trips:
        assert trip["value"] >= 2.0 and trip["state"] == "REDUCING"
        window = (trip["ts_ms"], trip["until_ms"])
        buys = ledger_rows(home, "select * from orders where side='buy' and created_ms > ? and created_ms < ?", *window)
        assert buys == [], f"entries were placed while REDUCING: {buys}"
        denied_total += ledger_rows(home, "select count(*) n from events where kind='risk.denied.trading_state' "
                                          "and ts_ms > ? and ts_ms < ?", *window)[0]["n"]
    assert denied_total > 0, "the strategy must have wanted to buy during a REDUCING window"
    assert summary["risk_denials"] >= denied_total
    events = ledger_rows(home, "select * from events where kind='risk.daily_loss_limit'")
    assert len(events) == len(trips)
    assert json.loads(events[0]["data_json"])["limit"] == 2.0
    # trading resumed on the next UTC day: some buy happened after the first trip ended
    assert ledger_rows(home, "select count(*) n from orders where side='buy' and created_ms >= ?",
                       trips[0]["until_ms"])[0]["n"] > 0


def test_plain_progress_and_summary_when_not_a_terminal(cli):
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--max-bars", "500", "--no-tui")
    assert result.exit_code == 0, result.output
    assert "paper run" in result.stdout and "final equity" in result.stdout
    assert "bars" in result.stdout


def test_ctrl_c_leaves_a_consistent_ledger_and_the_run_interrupted(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "SIGMAX_HOME": str(home)}
    # 1h bars at 360,000x real time: 10 ms per step, so the replay takes ~50 s unless stopped
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands.app", "paper", "--data", str(FREQTRADE_1H), "--symbols", "BTC/USDT,ETH/USDT",
         "--timeframe", "1h", "--speed", "360000", "--no-tui", "--run-id", "ctrl-c"],
        cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:  # the file may exist before its tables do
            if (home / "ledger.db").exists() and ledger_rows(home, "select count(*) n from runs")[0]["n"]:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    (run,) = ledger_rows(home, "select * from runs")
    assert run["status"] == "interrupted" and run["ended_ms"] is not None
    summary = json.loads(run["summary_json"])
    assert 0 < summary["steps"] < 5282
    assert ledger_rows(home, "select count(*) n from equity")[0]["n"] == summary["steps"]
    assert ledger_rows(home, "select count(*) n from fills")[0]["n"] == summary["fills"]


@pytest.mark.parametrize("args, message", [
    (["--data", "{empty}"], "holds no candles"),
    (["--data", FREQTRADE_1H, "--symbols", "BTC/USDT", "--start", "2021-04-25T05:00", "--end", "2021-04-25T08:00"],
     "bars to trade"),
    (["--data", FREQTRADE_1H, "--symbols", "BTC/USDT,FOO/USDT"], "no 1h candles for FOO/USDT"),
    (["--data", FREQTRADE_1H, "--start", "2021-06-01", "--end", "2021-05-01"], "is not before --end"),
    (["--data", FREQTRADE_1H, "--balance", "0"], "--balance 0 is not a starting balance"),
    (["--data", FREQTRADE_1H, "--strategy", "magic"], "unknown strategy 'magic'"),
    (["--data", FREQTRADE_1H, "--start", "yesterday"], "is not a date"),
    (["--data", "{corrupt}"], "corrupt"),
    (["--data", "/nonexistent/dir"], "does not exist"),
    (["--data", FREQTRADE_1H, "--timeframe", "7x"], "unknown timeframe"),
    (["--data", FREQTRADE_1H, "--run-id", "bad id!"], "run id"),
])
def test_bad_input_is_one_sentence_a_non_zero_exit_and_nothing_written(cli, tmp_path, args, message):
    empty = tmp_path / "BTC_USDT-1h.json"
    empty.write_text("[]")
    corrupt = tmp_path / "ETH_USDT-1h.json"
    corrupt.write_text('[[1609459200000, 1, 2, 0.5, 1.5')
    args = [str(a).replace("{empty}", str(empty)).replace("{corrupt}", str(corrupt)) for a in args]
    result = cli("paper", *args, "--no-tui", "--json")
    assert result.exit_code != 0
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert result.stdout == ""
    assert not (tmp_path / "home" / "ledger.db").exists()


def test_a_run_id_already_in_the_ledger_is_refused_and_the_old_run_kept(cli, tmp_path):
    args = ["paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--max-bars", "50", "--run-id", "same", "--json"]
    assert cli(*args).exit_code == 0
    again = cli(*args)
    assert again.exit_code == 2 and "already in the ledger" in again.stderr
    runs = ledger_rows(tmp_path / "home", "select * from runs")
    assert len(runs) == 1 and runs[0]["status"] == "completed"


def test_paper_on_postgresql(cli, pg_url):
    result = cli("paper", "--data", FREQTRADE_1H / "ETH_USDT-1h.json", "--max-bars", "2000", "--json",
                 env={"SIGMAX_DATABASE_URL": pg_url})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    from sigmax_cli.ledger import Ledger

    with Ledger(pg_url) as ledger:
        run = ledger.get_run(summary["run_id"])
        assert run.status == "completed"
        assert ledger.count("equity", run.run_id) == summary["steps"] == 2000


RULES_PROFILE = CRASH_PROFILE.replace("position_fraction = 0.2", "position_fraction = 0.3").replace(
    "max_drawdown_pct = 50.0", "max_drawdown_pct = 5.0\nmax_consecutive_losses = 3\ncooldown_minutes = 120")


def test_may_2021_crash_trips_drawdown_daily_loss_and_consecutive_losses(cli, tmp_path):
    """The same crash with tighter limits: each of the three rules trips on real prices, each
    trip is an event with its measured value and limit, and no entry is placed while any of
    them holds trading in REDUCING."""
    profile = tmp_path / "rules.toml"
    profile.write_text(RULES_PROFILE)
    result = cli("--profile", profile, "paper", "--data", FREQTRADE_1H, "--timeframe", "1h",
                 "--start", "2021-05-12", "--end", "2021-05-24", "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    trips = json.loads(result.stdout)["risk_trips"]
    rules = {t["rule"] for t in trips}
    assert {"max_drawdown", "daily_loss_limit", "consecutive_losses"} <= rules
    for trip in trips:
        assert trip["value"] >= trip["limit"]
    home = tmp_path / "home"
    dd = next(t for t in trips if t["rule"] == "max_drawdown")
    assert dd["resume"] == "operator"
    late_buys = ledger_rows(home, "select count(*) n from orders where side='buy' and created_ms > ?", dd["ts_ms"])
    assert late_buys[0]["n"] == 0  # only an operator resumes entries after a drawdown trip
    events = {e["kind"] for e in ledger_rows(home, "select kind from events")}
    assert {"risk.max_drawdown", "risk.daily_loss_limit", "risk.consecutive_losses"} <= events


def test_extreme_negative_research_sentiment_stops_entries(cli, tmp_path, redis_prefix):
    """A bearish overall signal on the research stream (real Redis) trips the sentiment rule:
    the run goes REDUCING at its first bar and places no entry."""
    from sigmax_cli.research.signals import connect, publish
    from tests.conftest import REDIS_URL

    stream = f"{redis_prefix}signals"
    publish(connect(REDIS_URL), stream, [{"kind": "sentiment", "coin": "*", "ts_ms": "0", "score": "-0.900000",
                                          "mean": "-0.8", "count": "12", "fear_greed": "10",
                                          "fear_greed_class": "Extreme Fear"}], 100)
    env = {"SIGMAX_REDIS_URL": REDIS_URL, "SIGMAX_REDIS_PREFIX": redis_prefix, "SIGMAX_RESEARCH__STREAM": stream}
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--json", env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    (trip,) = [t for t in summary["risk_trips"] if t["rule"] == "extreme_sentiment"]
    assert trip["value"] == -0.9 and trip["limit"] == -0.5
    assert summary["orders"] == 0 and summary["trading_state"] == "REDUCING"


# ------------------------------------------- markets.json written by `sigmax data download`
STEPS = {"BTC/USDT": 1e-5, "ETH/USDT": 1e-4}  # LOT_SIZE stepSize of the emulator's exchangeInfo


@pytest.fixture
def downloaded(cli, binance_emulator, tmp_path):
    """The README quick start's first half: `sigmax data download` of BTC/ETH 1h candles
    (Jan-Mar 2021, from the loopback Binance emulator) into tmp/data/binance."""
    from sigmax_cli.data.candles import load_candles

    for name in ("BTC_USDT-1h.json", "ETH_USDT-1h.json"):
        binance_emulator.add_candles(load_candles(FREQTRADE_1H / name))
    out = tmp_path / "data" / "binance"
    result = cli("data", "download", "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h", "--since", "2021-01-01",
                 "--until", "2021-04-01", "--out", out, "--json", env={"SIGMAX_EXCHANGE_API_URL": binance_emulator.url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["markets_file"] == str(out / "markets.json")
    return out


def _run(home: Path, run_id: str):
    (run,) = ledger_rows(home, "select * from runs where run_id = ?", run_id)
    fills = ledger_rows(home, "select symbol, price, amount from fills where run_id = ?", run_id)
    warned = [e["message"] for e in ledger_rows(home, "select message from events where run_id = ? "
                                                      "and kind = 'markets.default'", run_id)]
    return json.loads(run["params_json"]), fills, warned


def _on_step(fill) -> bool:
    steps = fill["amount"] / STEPS[fill["symbol"]]
    return abs(steps - round(steps)) < 1e-6


def test_paper_data_dir_uses_the_markets_json_written_by_data_download(cli, downloaded, tmp_path):
    home = tmp_path / "home"
    result = cli("paper", "--data", downloaded, "--timeframe", "1h", "--no-tui", "--json", "--run-id", "with")
    assert result.exit_code == 0, result.output
    params, fills, warned = _run(home, "with")
    assert warned == []  # no "no market metadata" warning recorded
    assert params["markets_file"] == str(downloaded / "markets.json")
    assert {f["symbol"] for f in fills} == {"BTC/USDT", "ETH/USDT"}
    assert all(_on_step(f) for f in fills)  # the real Binance amount steps
    assert min(f["price"] * f["amount"] for f in fills) >= 10.0  # and minimum notional

    # the same candles without markets.json: the 1e-8 default, which the fills show
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in downloaded.glob("*-1h.json"):
        shutil.copy(f, bare / f.name)
    result = cli("paper", "--data", bare, "--timeframe", "1h", "--no-tui", "--json", "--run-id", "without")
    assert result.exit_code == 0, result.output
    params, fills, warned = _run(home, "without")
    assert params["markets_file"] is None
    assert sorted(w.split(":")[0] for w in warned) == ["no market metadata for BTC/USDT",
                                                       "no market metadata for ETH/USDT"]
    assert not all(_on_step(f) for f in fills)


def test_paper_data_file_finds_markets_json_in_its_directory_and_says_so(cli, downloaded, tmp_path):
    result = cli("paper", "--data", downloaded / "BTC_USDT-1h.json", "--max-bars", "300", "--no-tui",
                 env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "no market metadata" not in result.stdout
    assert f"{downloaded / 'markets.json'} (beside --data)" in result.stdout  # the summary's "market rules"
    (run,) = ledger_rows(tmp_path / "home", "select params_json from runs")
    assert json.loads(run["params_json"])["markets_file"] == str(downloaded / "markets.json")


def test_explicit_markets_file_wins_over_the_one_beside_the_data(cli, downloaded, tmp_path):
    mine = json.loads((downloaded / "markets.json").read_text())["BTC/USDT"]
    mine["precision"]["amount"] = 0.001
    for f in mine["info"]["filters"]:
        if f["filterType"] == "LOT_SIZE":
            f.update(stepSize="0.00100000", minQty="0.00100000")
    explicit = tmp_path / "mine.json"
    explicit.write_text(json.dumps({"BTC/USDT": mine}))  # no ETH/USDT in it
    result = cli("paper", "--data", downloaded, "--timeframe", "1h", "--markets", explicit, "--no-tui", "--json",
                 "--run-id", "explicit")
    assert result.exit_code == 0, result.output
    params, fills, warned = _run(tmp_path / "home", "explicit")
    assert params["markets_file"] == str(explicit)
    btc = [f["amount"] for f in fills if f["symbol"] == "BTC/USDT"]
    assert btc and all(abs(a / 0.001 - round(a / 0.001)) < 1e-6 for a in btc)
    # the file beside the data is not merged in: ETH/USDT has no rules from --markets
    assert [w.split(":")[0] for w in warned] == ["no market metadata for ETH/USDT"]


@pytest.mark.parametrize("target", ["dir", "file"])
def test_a_corrupt_markets_json_beside_the_data_is_one_sentence(cli, downloaded, tmp_path, data_dir, target):
    markets = downloaded / "markets.json"
    markets.write_text('{"BTC/USDT": {"symbol": "BTC/USDT", "base": "BT')
    data = downloaded if target == "dir" else downloaded / "BTC_USDT-1h.json"
    result = cli("paper", "--data", data, "--timeframe", "1h", "--no-tui", "--json")
    assert result.exit_code == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: markets file {markets} is not readable JSON")
    assert "found beside --data; delete it or rerun `sigmax data download` into that directory" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "home" / "ledger.db").exists()
    # the way out the sentence offers: an explicit markets file is used and this one not read
    ok = cli("paper", "--data", data, "--timeframe", "1h", "--max-bars", "100", "--no-tui", "--json",
             "--markets", data_dir / MARKETS)
    assert ok.exit_code == 0, ok.output
