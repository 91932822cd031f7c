"""Candle loading and validation on the real files in ../shared/data."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from sigmax_cli.data.candles import Gap, discover, load_candles, parse_filename
from sigmax_cli.errors import ConfigError, DataError
from tests.conftest import FREQTRADE_1H

H = 3_600_000


def test_btc_1h_has_5482_bars_and_its_real_maintenance_gaps():
    c = load_candles(FREQTRADE_1H / "BTC_USDT-1h.json")
    assert (c.symbol, c.timeframe, len(c)) == ("BTC/USDT", "1h", 5482)
    assert c.ts[0] == 1_606_780_800_000 and c.open[0] == 19695.87  # 2020-12-01 00:00 UTC
    assert np.all(np.diff(c.ts) >= H)
    assert len(c.gaps) == 6 and c.missing_bars == 11
    # Binance's 2021-04-25 maintenance: bars 05:00-07:00 missing, reported, not filled in
    assert Gap(1_619_323_200_000, 1_619_337_600_000, 3) in c.gaps
    assert len(c.sha256) == 64


@pytest.mark.parametrize("rel, symbol, timeframe, rows", [
    ("freqtrade_testdata/ETH_BTC-5m.feather", "ETH/BTC", "5m", 5760),
    ("freqtrade_testdata/UNITTEST_BTC-1m.json", "UNITTEST/BTC", "1m", 13681),
    ("freqtrade_testdata/futures/XRP_USDT_USDT-1h-futures.feather", "XRP/USDT:USDT", "1h", None),
    ("ohlcv/binance_spot_daily_2017-2025/BTC_USDT-1d.csv", "BTC/USDT", "1d", 2800),
])
def test_freqtrade_layouts_and_csv(data_dir, rel, symbol, timeframe, rows):
    c = load_candles(data_dir / rel)
    assert (c.symbol, c.timeframe) == (symbol, timeframe)
    if rows:
        assert len(c) == rows
    assert np.all(np.diff(c.ts) > 0) and c.ts.dtype == np.int64


def test_newest_first_csv_with_banner_is_sorted(data_dir):
    c = load_candles(data_dir / "ohlcv/coinbase_btcusd_2014-2019/Coinbase_BTCUSD_1h.csv", "BTC/USD", "1h")
    assert len(c) == 20111 and np.all(np.diff(c.ts) > 0)


def test_json_gz(tmp_path):
    src = (FREQTRADE_1H / "ETH_USDT-1h.json").read_bytes()
    gz = tmp_path / "ETH_USDT-1h.json.gz"
    gz.write_bytes(gzip.compress(src))
    assert len(load_candles(gz)) == 5482


def _write(tmp_path, rows, name="BTC_USDT-1h.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


GOOD = [[H * 400_000 + i * H, 10.0, 11.0, 9.0, 10.5, 1.0] for i in range(5)]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[2].__setitem__(2, 9.5), "high below open/close"),
    (lambda r: r[2].__setitem__(3, 10.9), "low above open/close"),
    (lambda r: r[1].__setitem__(4, -1.0), "non-positive price"),
    (lambda r: r[1].__setitem__(5, -2.0), "negative volume"),
    (lambda r: r.append([r[1][0], 10.0, 12.0, 9.0, 10.0, 1.0]), "two different candles"),
    (lambda r: r[3].__setitem__(0, r[3][0] + 60_000), "off the 1h grid"),
    (lambda r: r[3].__setitem__(4, None), "empty value"),
])
def test_invalid_rows_are_refused_with_the_row_named(tmp_path, mutate, message):
    rows = [list(r) for r in GOOD]
    mutate(rows)
    with pytest.raises(DataError, match=message):
        load_candles(_write(tmp_path, rows))


def test_exact_duplicates_are_dropped_and_unsorted_rows_sorted(tmp_path):
    rows = [list(r) for r in GOOD]
    rows = rows[::-1] + [list(GOOD[2])]
    c = load_candles(_write(tmp_path, rows))
    assert len(c) == 5 and c.dropped_duplicates == 1 and np.all(np.diff(c.ts) == H)


def test_corrupt_unreadable_and_unnamed_files(tmp_path):
    with pytest.raises(DataError, match="corrupt"):
        load_candles(_write(tmp_path, None).with_name("x") if False else _bad(tmp_path, "[[1, 2, 3"))
    with pytest.raises(DataError, match="not a JSON array"):
        load_candles(_bad(tmp_path, '{"a": 1}'))
    with pytest.raises(DataError, match="does not exist"):
        load_candles(tmp_path / "BTC_USDT-1h.json.missing")
    odd = tmp_path / "candles.json"
    odd.write_text(json.dumps(GOOD))
    with pytest.raises(ConfigError, match="cannot tell the symbol"):
        load_candles(odd)
    bad_feather = tmp_path / "ETH_BTC-5m.feather"
    bad_feather.write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match="corrupt"):
        load_candles(bad_feather)


def _bad(tmp_path, text):
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_text(text)
    return path


def test_discover_and_names(tmp_path):
    assert parse_filename(FREQTRADE_1H / "BTC_USDT-1h.json") == ("BTC/USDT", "1h")
    assert len(discover(FREQTRADE_1H, None, "1h")) == 10
    assert len(discover(FREQTRADE_1H, None, "5m")) == 5
    with pytest.raises(DataError, match="no 1h candles for DOGE/BTC"):
        discover(FREQTRADE_1H, ["BTC/USDT", "DOGE/BTC"], "1h")
    shutil.copy(FREQTRADE_1H / "BTC_USDT-1h.json", tmp_path / "BTC_USDT-1h.json")
    with pytest.raises(DataError, match="no 4h candle files"):
        discover(tmp_path, None, "4h")


def test_data_check_command(cli):
    result = cli("data", "check", FREQTRADE_1H / "BTC_USDT-1h.json", "--json")
    assert result.exit_code == 0
    (report,) = json.loads(result.stdout)["files"]
    assert report["bars"] == 5482 and len(report["gaps"]) == 6 and report["missing_bars"] == 11
    bad = cli("data", "check", "/nonexistent")
    assert bad.exit_code == 65 and bad.stderr.startswith("error: data path /nonexistent does not exist")
