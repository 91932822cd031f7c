"""`sigmax paper` without --data: live public candles through real ccxt HTTP to the
Binance emulator on 127.0.0.1 (serving the real BTC/ETH 1h klines)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from sigmax_cli.data.candles import load_candles
from tests.conftest import FREQTRADE_1H
from tests.support.binance_emulator import BinanceEmulator

MARCH_1 = 1_614_556_800_000  # 2021-03-01 00:00 UTC: the emulator's "now"


@pytest.fixture
def emulator(data_dir):
    with BinanceEmulator(data_dir, clock=lambda: MARCH_1 + 30 * 60_000) as emu:
        for name in ("BTC_USDT-1h.json", "ETH_USDT-1h.json"):
            emu.add_candles(load_candles(FREQTRADE_1H / name))
        yield emu


def test_live_paper_catches_up_from_start_and_trades_closed_bars_only(cli, emulator, tmp_path):
    result = cli("paper", "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h", "--start", "2021-02-01",
                 "--max-bars", "400", "--json", env={"SIGMAX_EXCHANGE_API_URL": emulator.url})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["bars"] == 400
    assert summary["first_bar_ms"] == 1_612_137_600_000  # 2021-02-01 00:00, the --start bar
    assert summary["last_bar_ms"] < MARCH_1  # the forming 2021-03-01 00:00 bar is never traded
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        (files,) = conn.execute("select data_files_json from runs").fetchone()
        assert {f["symbol"] for f in json.loads(files)} == {"BTC/USDT", "ETH/USDT"}
    # markets came from the exchange: no default-precision warning was recorded
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        assert conn.execute("select count(*) from events where kind='markets.default'").fetchone()[0] == 0
    assert emulator.requests("/api/v3/klines")


def test_unreachable_exchange_is_one_sentence_and_nothing_written(cli, tmp_path):
    result = cli("paper", "--symbols", "BTC/USDT", "--max-bars", "5", "--json",
                 env={"SIGMAX_EXCHANGE_API_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 69
    assert result.stderr.startswith("error: cannot reach binance") and result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert not (tmp_path / "home" / "ledger.db").exists()


def test_unknown_symbol_and_end_without_data(cli, emulator, tmp_path):
    env = {"SIGMAX_EXCHANGE_API_URL": emulator.url}
    bad = cli("paper", "--symbols", "FOO/USDT", "--max-bars", "5", "--json", env=env)
    assert bad.exit_code == 2 and "FOO/USDT" in bad.stderr
    bad = cli("paper", "--symbols", "BTC/USDT", "--end", "2021-02-02", "--json", env=env)
    assert bad.exit_code == 2 and "--end needs --data" in bad.stderr
    assert not (tmp_path / "home" / "ledger.db").exists()
