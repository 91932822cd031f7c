"""``download_ohlcv`` and ``sigmax data download`` against the loopback Binance emulator,
serving the real freqtrade BTC/ETH 1h files (5482 bars each, with real maintenance gaps)."""

from __future__ import annotations

import json
import math

import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.data.download import download_many, download_ohlcv, parse_date_ms
from sigmax_cli.errors import ConfigError, DataError, TemporaryError
from sigmax_cli.exchange.client import create_exchange
from sigmax_cli.exchange.errors import RetryPolicy
from sigmax_cli.markets import load_markets_file
from tests.support.binance_emulator import Fault

KLINES = "/api/v3/klines"
HOUR = 3_600_000


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Pages:
    """A DownloadObserver that records what it is told."""

    def __init__(self):
        self.starts, self.pages, self.done = [], [], []

    def on_start(self, symbol, start_ms, end_ms):
        self.starts.append((symbol, start_ms, end_ms))

    def on_page(self, symbol, fetched_bars, last_ms):
        self.pages.append((symbol, fetched_bars, last_ms))

    def on_done(self, result):
        self.done.append(result)


@pytest.fixture
def source(data_dir):
    return data_dir / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07" / "BTC_USDT-1h.json"


@pytest.fixture
def btc(source):
    return load_candles(source)


@pytest.fixture
def emulator(binance_emulator, btc, data_dir):
    binance_emulator.add_candles(btc)
    binance_emulator.add_candles(
        load_candles(
            data_dir / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07" / "ETH_USDT-1h.json"
        )
    )
    return binance_emulator


@pytest.fixture
def exchange(emulator):
    ex = create_exchange(api_url=emulator.url)
    yield ex
    ex.close()


@pytest.fixture
def fast():
    return RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002, sleep=Sleeps())


def _rows(path):
    with open(path) as fh:
        return json.load(fh)


def _strict_json(path):
    """The file's JSON, refusing the NaN / Infinity tokens Python's json would accept."""

    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _starts(emulator):
    return [r.int_param("startTime") for r in emulator.requests(KLINES)]


def test_full_download_matches_the_source_file_across_pages(
    exchange, emulator, btc, source, tmp_path, fast
):
    observer = Pages()
    result = download_ohlcv(
        exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, observer=observer, retry=fast
    )
    assert result.path == tmp_path / "BTC_USDT-1h.json"
    assert _rows(result.path) == _rows(source)
    assert (result.bars_added, result.bars_total) == (5482, 5482)
    assert (result.first_ms, result.last_ms) == (int(btc.ts[0]), int(btc.ts[-1]))
    assert list(result.gaps) == btc.gaps and result.gaps  # the real gaps are reported, not filled
    klines = emulator.requests(KLINES)
    assert [r.int_param("limit") for r in klines] == [
        1000
    ] * 7  # 6 pages + the empty one that ends it
    assert [n for _, n, _ in observer.pages] == [1000] * 5 + [482]
    assert observer.done == [result]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTC_USDT-1h.json"]


def test_the_forming_bar_is_never_kept(exchange, emulator, btc, tmp_path, fast):
    last = int(btc.ts[-1])
    emulator.clock = lambda: last + HOUR // 2  # the exchange's clock: the last bar is still forming
    result = download_ohlcv(exchange, "BTC/USDT", "1h", last - 10 * HOUR, tmp_path, retry=fast)
    assert result.last_ms == last - HOUR
    assert all(row[0] + HOUR <= last + HOUR // 2 for row in _rows(result.path))
    assert emulator.requests("/api/v3/time")  # "now" came from the exchange


def test_until_is_exclusive(exchange, btc, tmp_path, fast):
    since, until = parse_date_ms("2021-01-01"), parse_date_ms("2021-01-02")
    result = download_ohlcv(exchange, "BTC/USDT", "1h", since, tmp_path, until_ms=until, retry=fast)
    assert result.bars_total == 24
    assert (result.first_ms, result.last_ms) == (since, until - HOUR)


def test_resume_requests_only_the_missing_pages(exchange, emulator, btc, source, tmp_path, fast):
    since = int(btc.ts[0])
    cut = int(btc.ts[2500])
    first = download_ohlcv(exchange, "BTC/USDT", "1h", since, tmp_path, until_ms=cut, retry=fast)
    assert first.bars_total == 2500
    assert _rows(first.path) == _rows(source)[:2500]
    emulator.clear_log()

    second = download_ohlcv(exchange, "BTC/USDT", "1h", since, tmp_path, retry=fast)
    starts = _starts(emulator)
    assert starts[0] == first.last_ms + HOUR
    assert min(starts) > first.last_ms  # nothing already on disk is asked for again
    assert len(starts) == 4  # 1000 + 1000 + 982 bars, then the empty page
    assert (second.bars_added, second.bars_total) == (2982, 5482)
    assert _rows(second.path) == _rows(source)

    emulator.clear_log()
    again = download_ohlcv(exchange, "BTC/USDT", "1h", since, tmp_path, retry=fast)
    assert again.bars_added == 0 and again.bars_total == 5482
    assert _starts(emulator) == [int(btc.ts[-1]) + HOUR]


def test_an_earlier_since_fetches_only_the_history_before_the_file(
    exchange, emulator, btc, source, tmp_path, fast
):
    download_ohlcv(exchange, "BTC/USDT", "1h", int(btc.ts[3000]), tmp_path, retry=fast)
    emulator.clear_log()
    result = download_ohlcv(exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, retry=fast)
    assert result.bars_added == 3000
    assert _rows(result.path) == _rows(source)
    assert _starts(emulator) == [
        int(btc.ts[0]),
        int(btc.ts[1000]),
        int(btc.ts[2000]),
        int(btc.ts[-1]) + HOUR,
    ]


def test_temporary_failures_mid_download_are_retried(exchange, emulator, btc, source, tmp_path):
    emulator.inject(
        KLINES,
        Fault(status=500),
        Fault(status=502, html=True),
        Fault.dropped(),
        Fault.rate_limited(retry_after=0.01),
        after=2,
    )
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=5, base_delay=0.001, max_delay=0.002, sleep=sleeps)
    result = download_ohlcv(exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, retry=policy)
    assert _rows(result.path) == _rows(source)
    assert len(sleeps) == 4 and sleeps[-1] >= 0.01
    assert [r.status for r in emulator.requests(KLINES)][:7] == [200, 200, 500, 502, 0, 429, 200]


def test_a_persistent_failure_keeps_the_previous_file_byte_identical(
    exchange, emulator, btc, tmp_path, fast
):
    first = download_ohlcv(
        exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, until_ms=int(btc.ts[1500]), retry=fast
    )
    before = first.path.read_bytes()
    emulator.fail(KLINES, status=503, times=50, after=1, body="")  # one page comes, then nothing
    with pytest.raises(TemporaryError) as info:
        download_ohlcv(exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, retry=fast)
    assert "still after 4 attempts" in info.value.sentence()
    assert first.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTC_USDT-1h.json"]  # no temp file left


def test_a_failure_on_a_new_file_leaves_nothing(exchange, emulator, btc, tmp_path, fast):
    emulator.fail(KLINES, status=503, times=50, after=2, body="")
    with pytest.raises(TemporaryError):
        download_ohlcv(exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, retry=fast)
    assert list(tmp_path.iterdir()) == []


def test_malformed_rows_are_retried_then_refused(exchange, emulator, btc, tmp_path, fast):
    emulator.fail(KLINES, status=200, times=10, html=True)  # a captive portal answering 200
    with pytest.raises(TemporaryError, match="malformed rows"):
        download_ohlcv(exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, retry=fast)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_existing_file_is_not_overwritten(exchange, btc, tmp_path, fast):
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_text("[[1, 2, 3")
    with pytest.raises(DataError) as info:
        download_ohlcv(exchange, "BTC/USDT", "1h", int(btc.ts[0]), tmp_path, retry=fast)
    assert "cannot be resumed" in info.value.sentence() and "move it away" in info.value.sentence()
    assert path.read_text() == "[[1, 2, 3"


def test_unknown_symbol_fails_before_any_candle_request(exchange, emulator, btc, tmp_path, fast):
    with pytest.raises(ConfigError) as info:
        download_many(
            exchange, ["BTC/USDT", "BTC/USDX"], "1h", int(btc.ts[0]), tmp_path, retry=fast
        )
    assert "binance has no market BTC/USDX" in info.value.sentence()
    assert "BTC/USDT" in info.value.fix  # a close match is suggested
    assert emulator.requests(KLINES) == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("timeframe", ["7m", "1y"])
def test_unknown_timeframe_lists_valid_ones(exchange, emulator, btc, tmp_path, timeframe, fast):
    with pytest.raises(ConfigError) as info:
        download_ohlcv(exchange, "BTC/USDT", timeframe, int(btc.ts[0]), tmp_path, retry=fast)
    assert f"binance has no {timeframe!r} candles" in info.value.sentence()
    assert "1m, 3m, 5m" in info.value.fix
    assert emulator.requests(KLINES) == []


def test_until_not_after_since_is_refused(exchange, tmp_path, fast):
    with pytest.raises(ConfigError, match="not after"):
        download_ohlcv(
            exchange,
            "BTC/USDT",
            "1h",
            parse_date_ms("2021-02-01"),
            tmp_path,
            until_ms=parse_date_ms("2021-01-01"),
            retry=fast,
        )


def test_a_range_with_no_closed_bar_writes_no_file(exchange, tmp_path, fast):
    result = download_ohlcv(
        exchange,
        "BTC/USDT",
        "1h",
        parse_date_ms("2019-01-01"),
        tmp_path,
        until_ms=parse_date_ms("2019-02-01"),
        retry=fast,
    )
    assert result.path is None and result.bars_total == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2021-01-01", 1609459200000),
        ("2021-01-01T00:30", 1609461000000),
        ("2021-01-01 00:30:00", 1609461000000),
        ("2021-01-01T00:00:00Z", 1609459200000),
        ("2021-01-01T01:00:00+01:00", 1609459200000),
    ],
)
def test_dates_are_iso_and_utc(text, ms):
    assert parse_date_ms(text) == ms


@pytest.mark.parametrize("text", ["yesterday", "2021-13-01", "01/02/2021", ""])
def test_a_bad_date_is_a_config_error_sentence(text):
    with pytest.raises(ConfigError) as info:
        parse_date_ms(text, "--since")
    assert info.value.sentence() == (
        f"--since {text!r} is not a date; "
        "use an ISO date such as 2021-01-01 or 2021-01-01T12:00 (UTC)."
    )


# ----------------------------------------------------------------------- CLI
def test_cli_download_json_end_to_end(cli, emulator, btc, tmp_path):
    env = {"SIGMAX_EXCHANGE_API_URL": emulator.url}
    args = [
        "data",
        "download",
        "--exchange",
        "binance",
        "--symbols",
        "BTC/USDT,ETH/USDT",
        "--timeframe",
        "1h",
        "--since",
        "2021-01-01",
        "--until",
        "2021-02-01",
    ]
    result = cli(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    home = tmp_path / "home"
    assert [f["symbol"] for f in doc["files"]] == ["BTC/USDT", "ETH/USDT"]
    expected = btc.slice(parse_date_ms("2021-01-01"), parse_date_ms("2021-02-01"))
    for f in doc["files"]:
        assert f["path"] == str(
            home / "data" / "binance" / f"{f['symbol'].replace('/', '_')}-1h.json"
        )
        assert f["bars_total"] == f["bars_added"] == 744
        assert f["first"] == "2021-01-01 00:00 UTC" and f["last"] == "2021-01-31 23:00 UTC"
    assert len(expected) == 744
    assert _rows(doc["files"][0]["path"]) == [
        [int(t), o, h, lo, c, v]
        for t, o, h, lo, c, v in zip(
            expected.ts,
            expected.open,
            expected.high,
            expected.low,
            expected.close,
            expected.volume,
            strict=True,
        )
    ]

    markets_file = home / "data" / "binance" / "markets.json"
    assert doc["markets_file"] == str(markets_file)
    assert sorted(_strict_json(markets_file)) == ["BTC/USDT", "ETH/USDT"]

    again = cli(*args, env={**env, "COLUMNS": "300"})  # not a TTY: plain lines; the files are complete
    assert again.exit_code == 0, again.output
    assert "downloading BTC/USDT" in again.stdout
    assert "BTC/USDT 1h: +0 bars, 744 in BTC_USDT-1h.json" in again.stdout
    assert f"market rules (precision, limits) in {markets_file}" in again.stdout


def test_cli_out_dir_and_errors(cli, emulator, tmp_path):
    env = {"SIGMAX_EXCHANGE_API_URL": emulator.url}
    out = tmp_path / "candles"
    ok = cli(
        "data",
        "download",
        "--symbols",
        "ETH/USDT",
        "--since",
        "2021-03-01",
        "--until",
        "2021-03-02",
        "--out",
        str(out),
        "--json",
        env=env,
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["files"][0]["path"] == str(out / "ETH_USDT-1h.json")

    bad_date = cli("data", "download", "--since", "2021-13-01", "--json", env=env)
    assert bad_date.exit_code == 2 and bad_date.stdout == ""
    assert "error: --since '2021-13-01' is not a date; use an ISO date" in bad_date.stderr

    bad_symbol = cli(
        "data", "download", "--symbols", "NOPE/USDT", "--since", "2021-01-01", "--json", env=env
    )
    assert bad_symbol.exit_code == 2 and bad_symbol.stdout == ""
    assert "error: binance has no market NOPE/USDT; check --symbols" in bad_symbol.stderr

    bad_tf = cli("data", "download", "--timeframe", "7m", "--since", "2021-01-01", env=env)
    assert bad_tf.exit_code == 2
    assert "7m" in bad_tf.stderr


def test_terminal_progress_has_one_task_per_symbol(exchange, tmp_path, fast):
    import io

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from commands.data import _ProgressObserver

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with Progress(
        TextColumn("{task.description} {task.fields[bars]}"), console=console
    ) as progress:
        observer = _ProgressObserver(progress)
        batch = download_many(
            exchange,
            ["BTC/USDT", "ETH/USDT"],
            "1h",
            parse_date_ms("2021-01-01"),
            tmp_path,
            parse_date_ms("2021-03-01"),
            observer,
            retry=fast,
        )
        tasks = progress.tasks
    assert [t.description for t in tasks] == ["BTC/USDT", "ETH/USDT"]
    assert all(t.finished for t in tasks)
    assert (
        [t.fields["bars"] for t in tasks] == [r.bars_total for r in batch.results] == [1415, 1415]
    )  # 59 days, one bar lost in a real gap


# ------------------------------------------------------------- markets.json
JAN = (parse_date_ms("2021-01-01"), parse_date_ms("2021-01-08"))


def test_download_many_saves_the_downloaded_symbols_markets(exchange, emulator, tmp_path, fast):
    batch = download_many(exchange, ["BTC/USDT", "ETH/USDT"], "1h", JAN[0], tmp_path, JAN[1], retry=fast)
    assert batch.markets_file == tmp_path / "markets.json"
    assert batch.to_dict()["markets_file"] == str(tmp_path / "markets.json")
    assert [r.bars_total for r in batch.results] == [168, 168]
    doc = _strict_json(batch.markets_file)
    assert list(doc) == ["BTC/USDT", "ETH/USDT"]  # only what was downloaded, not all 7 markets
    # ccxt's unified structures, as loaded from the exchange's answer, plus the exchange's precision mode
    assert doc["BTC/USDT"] == {**json.loads(json.dumps(exchange.markets["BTC/USDT"])),
                               "precisionMode": exchange.precisionMode}
    assert doc["ETH/USDT"]["precisionMode"] == 4  # ccxt's TICK_SIZE for binance
    assert doc["BTC/USDT"]["precision"]["amount"] == 1e-05 and doc["BTC/USDT"]["limits"]["cost"]["min"] == 10
    assert doc["ETH/USDT"]["precision"]["amount"] == 0.0001 and doc["ETH/USDT"]["info"]["symbol"] == "ETHUSDT"
    rules = load_markets_file(batch.markets_file)
    assert (rules["BTC/USDT"].amount_step, rules["BTC/USDT"].min_notional) == (1e-05, 10.0)
    assert (rules["ETH/USDT"].amount_step, rules["ETH/USDT"].price_tick) == (0.0001, 0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "BTC_USDT-1h.json", "ETH_USDT-1h.json", "markets.json"]  # no temporary file left


@pytest.mark.parametrize("layout", ["object", "array"])
def test_markets_json_is_merged_keeping_other_symbols(exchange, data_dir, tmp_path, fast, layout):
    saved = json.loads((data_dir / "exchange_api" / "ccxt_static" / "binance_markets_spot_subset.json").read_text())
    stale_btc = {**saved["BTC/USDT"], "precision": {**saved["BTC/USDT"]["precision"], "amount": 3}}
    existing = {"XRP/USDT": saved["XRP/USDT"], "BTC/USDT": stale_btc}
    path = tmp_path / "markets.json"
    path.write_text(json.dumps(existing if layout == "object" else list(existing.values())))
    path.chmod(0o640)

    batch = download_many(exchange, ["BTC/USDT"], "1h", JAN[0], tmp_path, JAN[1], retry=fast)
    doc = _strict_json(path)
    assert list(doc) == ["BTC/USDT", "XRP/USDT"]
    assert doc["XRP/USDT"] == saved["XRP/USDT"]  # kept as it was
    assert doc["BTC/USDT"] == {**json.loads(json.dumps(exchange.markets["BTC/USDT"])),  # replaced
                               "precisionMode": exchange.precisionMode}
    assert batch.markets_file == path and path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("content", ['{"BTC/USDT": {"symbol": "BTC/US', "[1, 2, 3]", '"markets"', "",
                                     '{"BTC/USDT": "not a market"}'])
def test_a_corrupt_markets_json_stops_the_download_before_any_request(
    exchange, emulator, tmp_path, fast, content
):
    path = tmp_path / "markets.json"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        download_many(exchange, ["BTC/USDT", "ETH/USDT"], "1h", JAN[0], tmp_path, JAN[1], retry=fast)
    sentence = info.value.sentence()
    assert sentence.startswith(f"the existing markets file {path} ")
    assert "move it away or delete it, then download again" in sentence
    assert emulator.requests(KLINES) == []  # nothing fetched, nothing written
    assert path.read_text() == content
    assert [p.name for p in tmp_path.iterdir()] == ["markets.json"]


def test_cli_corrupt_markets_json_is_one_sentence_and_exit_65(cli, emulator, tmp_path):
    out = tmp_path / "candles"
    out.mkdir()
    (out / "markets.json").write_text("{oops")
    result = cli("data", "download", "--symbols", "BTC/USDT", "--since", "2021-01-01", "--until", "2021-01-02",
                 "--out", out, "--json", env={"SIGMAX_EXCHANGE_API_URL": emulator.url})
    assert result.exit_code == 65 and result.stdout == ""
    assert result.stderr.startswith(f"error: the existing markets file {out / 'markets.json'} is not readable JSON")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert [p.name for p in out.iterdir()] == ["markets.json"]


def test_nan_in_the_exchange_answer_is_saved_as_null(emulator, btc, tmp_path, fast):
    """ccxt passes an exchange's "NaN" / "Infinity" filter values through as floats; the
    file stays strict JSON (null, ccxt's "unknown") and loads with the default step."""
    sol = json.loads(json.dumps(next(s for s in emulator.exchange_info["symbols"] if s["symbol"] == "BTCUSDT")))
    sol.update(symbol="SOLUSDT", baseAsset="SOL")
    for f in sol["filters"]:
        if f["filterType"] == "LOT_SIZE":
            f.update(stepSize="NaN", maxQty="Infinity")
        if f["filterType"] == "MIN_NOTIONAL":
            f["minNotional"] = "nan"
    emulator.add_market(sol)
    emulator.add_candles(btc, symbol="SOL/USDT")
    ex = create_exchange(api_url=emulator.url)
    try:
        batch = download_many(ex, ["SOL/USDT"], "1h", JAN[0], tmp_path, JAN[1], retry=fast)
        assert math.isnan(ex.markets["SOL/USDT"]["precision"]["amount"])  # what ccxt made of it
    finally:
        ex.close()
    doc = _strict_json(batch.markets_file)["SOL/USDT"]
    assert doc["precision"]["amount"] is None and doc["limits"]["amount"]["max"] is None
    assert doc["limits"]["cost"]["min"] is None and doc["precision"]["price"] == 0.01
    rules = load_markets_file(batch.markets_file)["SOL/USDT"]
    assert (rules.amount_step, rules.min_notional, rules.price_tick) == (1e-8, 0.0, 0.01)
