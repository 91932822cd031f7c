"""`sigmax report` end to end: a ledger written through the real Ledger API on SQLite and
PostgreSQL, read back by the CLI in every format."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from sigmax_cli.ledger import Ledger

HOUR = 3_600_000
T0 = 1_609_675_200_000  # 2021-01-03 12:00 UTC, a Sunday (ISO week 2020-W53)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRATEGY = "rules<rsi&macd>"  # markup characters: must come out escaped in HTML


def _equity(i: int) -> float:
    """48 hourly bars: +10/bar to 10190 (bar 19), -30/bar to 9890 (bar 29), +20/bar to 10250."""
    if i <= 19:
        return 10_000.0 + 10 * i
    if i <= 29:
        return 10_190.0 - 30 * (i - 19)
    return 9_890.0 + 20 * (i - 29)


# (order id, symbol, side, price, amount, fee, bar)
FILLS = [
    ("o1", "BTC/USDT", "buy", 30_000.0, 0.1, 3.0, 5),
    ("o2", "BTC/USDT", "sell", 31_000.0, 0.05, 1.55, 10),
    ("o3", "BTC/USDT", "sell", 32_000.0, 0.05, 1.6, 14),
    ("o4", "ETH/USDT", "buy", 1_000.0, 2.0, 2.0, 30),
    ("o5", "ETH/USDT", "sell", 990.0, 2.0, 1.98, 40),
    ("o6", "ETH/USDT", "buy", 1_000.0, 1.0, 1.0, 42),
]


def _start(ledger: Ledger, run_id: str, strategy: str = STRATEGY) -> None:
    ledger.start_run(
        run_id=run_id,
        mode="paper",
        profile="conservative",
        exchange="binance",
        strategy=strategy,
        params={"rsi_period": 14},
        symbols=["BTC/USDT", "ETH/USDT"],
        timeframe="1h",
        data_files=[],
        initial_equity=10_000.0,
    )


def write_runs(url: str) -> None:
    """Run ``run-a`` failed before its first bar; run ``run-b`` (the latest) traded 48 bars."""
    with Ledger(url) as ledger:
        _start(ledger, "run-a", "rules")
        ledger.finish_run("run-a", "failed")
        _start(ledger, "run-b")
        qty = {"BTC/USDT": 0.0, "ETH/USDT": 0.0}
        realized = {"BTC/USDT": 0.0, "ETH/USDT": 0.0}
        for oid, symbol, side, price, amount, fee, bar in FILLS:
            ts = T0 + bar * HOUR
            ledger.record_order(
                {
                    "client_order_id": oid,
                    "run_id": "run-b",
                    "exchange_order_id": None,
                    "symbol": symbol,
                    "side": side,
                    "type": "market",
                    "time_in_force": "IOC",
                    "reduce_only": side == "sell",
                    "price": None,
                    "amount": amount,
                    "filled": amount,
                    "average": price,
                    "fee": fee,
                    "status": "filled",
                    "reason": "test",
                    "created_ms": ts,
                    "updated_ms": ts,
                }
            )
            ledger.record_fill(
                {
                    "run_id": "run-b",
                    "client_order_id": oid,
                    "trade_id": f"t-{oid}",
                    "symbol": symbol,
                    "side": side,
                    "price": price,
                    "amount": amount,
                    "fee": fee,
                    "fee_currency": "USDT",
                    "liquidity": "taker",
                    "ts_ms": ts,
                }
            )
            qty[symbol] += amount if side == "buy" else -amount
            realized[symbol] -= fee
            ledger.record_position(
                {
                    "run_id": "run-b",
                    "symbol": symbol,
                    "ts_ms": ts,
                    "qty": qty[symbol],
                    "avg_price": price,
                    "realized_pnl": realized[symbol],
                }
            )
        for i in range(48):
            in_position = 5 <= i <= 14 or i >= 30
            ledger.record_equity(
                "run-b",
                T0 + i * HOUR,
                _equity(i),
                5_000.0,
                1_000.0 if in_position else 0.0,
                10_000.0 + 5 * (i + 1),
            )
        ledger.finish_run("run-b", "completed", {"run_id": "run-b"}, T0, T0 + 47 * HOUR)


@pytest.fixture
def filled(ledger_url):
    write_runs(ledger_url)
    return {"SIGMAX_DATABASE_URL": ledger_url}


def test_json_report_known_answers(cli, filled):
    result = cli("report", "--format", "json", env=filled)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # the paper summary's names, same meaning
    assert (
        doc["run_id"] == "run-b" and doc["bars"] == 48 and doc["orders"] == 6 and doc["fills"] == 6
    )
    assert doc["final_equity"] == pytest.approx(10_250.0)
    assert doc["return_pct"] == pytest.approx(2.5)  # 10250 / 10000 - 1
    # peak 10190 at bar 19, trough 9890 at bar 29: 300 / 10190
    assert doc["max_drawdown_pct"] == pytest.approx(300 / 10_190 * 100)
    dd = doc["performance"]["drawdown"]
    # back at >= 10190 first at bar 44 (9890 + 15 * 20): 25 bars, 25 hours after the peak
    assert (dd["peak_ms"], dd["trough_ms"], dd["recovery_ms"]) == (
        T0 + 19 * HOUR,
        T0 + 29 * HOUR,
        T0 + 44 * HOUR,
    )
    assert dd["duration_bars"] == 25 and dd["duration_ms"] == 25 * HOUR and dd["recovered"] is True
    assert isinstance(doc["performance"]["sharpe"], float)
    # benchmark 10000 -> 10000 + 5 * 48 = 10240, never falls
    bench = doc["benchmark"]
    assert (
        bench["return_pct"] == pytest.approx(2.4) and bench["drawdown"]["max_drawdown_pct"] == 0.0
    )
    assert bench["sortino"] is None  # no bar below 0: undefined, written as null
    assert doc["excess_return_pct"] == pytest.approx(0.1)
    t = doc["trading"]
    # BTC: 0.05 * 1000 + 0.05 * 2000 - (3 + 1.55 + 1.6) = 143.85; ETH: -20 - (2 + 1.98) = -23.98
    assert (t["trades"], t["wins"], t["losses"], t["open_positions"]) == (2, 1, 1, 1)
    assert t["win_rate_pct"] == 50.0
    assert t["profit_factor"] == pytest.approx(143.85 / 23.98)
    assert t["expectancy"] == pytest.approx((143.85 - 23.98) / 2)
    assert t["total_fees"] == pytest.approx(11.13)
    assert t["avg_holding_ms"] == round((9 + 10) * HOUR / 2)
    assert t["exposure_pct"] == pytest.approx(28 / 48 * 100)  # bars 5-14 and 30-47
    symbols = {s["symbol"]: s for s in doc["symbols"]}
    assert symbols["BTC/USDT"]["net_pnl"] == pytest.approx(143.85)
    assert symbols["ETH/USDT"]["fees"] == pytest.approx(4.98)
    # daily: 01-03 ends bar 11 (10110, +110); 01-04 ends bar 35 (10010, -100);
    # 01-05 ends at 10250 (+240)
    assert [(d["period"], round(d["pnl"], 6)) for d in doc["daily"]] == [
        ("2021-01-03", 110.0),
        ("2021-01-04", -100.0),
        ("2021-01-05", 240.0),
    ]
    assert [(w["period"], round(w["pnl"], 6)) for w in doc["weekly"]] == [
        ("2020-W53", 110.0),
        ("2021-W01", 140.0),
    ]
    assert doc["run"]["quote"] == "USDT" and doc["run"]["status"] == "completed"
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout


def test_table_markdown_html_and_plot(cli, filled, tmp_path):
    table = cli("--no-color", "report", "--latest", env=filled)
    assert table.exit_code == 0, table.output
    for text in (
        "run-b",
        "Sharpe",
        "max drawdown",
        "BTC/USDT",
        "143.85 USDT",
        "2021-W01",
        "+2.50 %",
    ):
        assert text in table.stdout, text

    md_path = tmp_path / "out" / "report.md"
    md_path.parent.mkdir()
    md = cli("report", "--run-id", "run-b", "--format", "markdown", "--output", md_path, env=filled)
    assert md.exit_code == 0, md.output
    assert md.stdout == ""  # the report went to the file
    text = md_path.read_text()
    assert text.startswith("# sigmax report: run run-b\n")
    assert "| BTC/USDT | 1 | 100.00 % | 143.85 USDT | 6.15 USDT |" in text
    assert "| 2021-01-04 | -100.00 USDT |" in text

    html_path, png_path = tmp_path / "report.html", tmp_path / "chart.png"
    res = cli("report", "--format", "html", "--output", html_path, "--plot", png_path, env=filled)
    assert res.exit_code == 0, res.output
    png = png_path.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == png
    assert "rules&lt;rsi&amp;macd&gt;" in page and STRATEGY not in page
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind

    as_json = cli("report", "--format", "json", "--output", tmp_path / "r.json", env=filled)
    assert as_json.exit_code == 0 and as_json.stdout == ""
    assert json.loads((tmp_path / "r.json").read_text())["run_id"] == "run-b"


def test_list_runs(cli, filled):
    table = cli("report", "--list", env=filled)
    assert table.exit_code == 0, table.output
    assert "run-a" in table.stdout and "run-b" in table.stdout and "failed" in table.stdout
    res = cli("report", "--list", "--format", "json", env=filled)
    runs = {r["run_id"]: r for r in json.loads(res.stdout)["runs"]}
    assert runs["run-b"]["bars"] == 48 and runs["run-b"]["return_pct"] == pytest.approx(2.5)
    assert runs["run-a"]["bars"] == 0 and runs["run-a"]["return_pct"] is None


def test_unknown_run_id_writes_nothing(cli, filled, tmp_path):
    out, png = tmp_path / "r.html", tmp_path / "r.png"
    res = cli(
        "report", "--run-id", "nope", "--format", "html", "--output", out, "--plot", png, env=filled
    )
    assert res.exit_code == 66
    assert (
        res.stderr == "error: no run 'nope' in the ledger; list runs with `sigmax report --list`.\n"
    )
    assert res.stdout == ""
    assert not out.exists() and not png.exists()


def test_run_without_equity_is_a_data_error(cli, filled):
    res = cli("report", "--run-id", "run-a", env=filled)
    assert res.exit_code == 65
    assert res.stderr.startswith(
        "error: run run-a has no equity snapshots; it may have failed before its first bar"
    )
    assert res.stderr.count("\n") == 1


def test_empty_ledger(cli, ledger_url):
    from sigmax_cli.ledger import Ledger

    Ledger(ledger_url).close()  # an empty ledger, with its schema
    res = cli("report", env={"SIGMAX_DATABASE_URL": ledger_url})
    assert res.exit_code == 66
    assert res.stderr == "error: the ledger holds no runs yet; start one with `sigmax paper`.\n"


def test_no_ledger_yet_is_not_created_by_report(cli, tmp_path):
    res = cli("report")
    assert res.exit_code == 66
    assert res.stderr.startswith("error: there is no ledger at ") and "run `sigmax paper` first" in res.stderr
    assert not (tmp_path / "home").exists()


def test_option_conflicts_and_bad_format(cli, filled):
    res = cli("report", "--run-id", "run-b", "--latest", env=filled)
    assert res.exit_code == 2
    assert (
        res.stderr
        == "error: --run-id and --latest ask for two different runs; give only one of them.\n"
    )
    res = cli("report", "--format", "xml", env=filled)
    assert res.exit_code == 2 and "Invalid value for '--format'" in res.output


def test_unwritable_plot_leaves_output_unwritten(cli, filled, tmp_path):
    out = tmp_path / "r.md"
    missing = tmp_path / "no-such-dir" / "chart.png"
    res = cli("report", "--format", "markdown", "--output", out, "--plot", missing, env=filled)
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: cannot write {missing}")
    assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_plot_report_api_writes_png(filled, tmp_path):
    from sigmax_cli.report.build import build_report
    from sigmax_cli.report.plot import plot_report

    with Ledger(filled["SIGMAX_DATABASE_URL"]) as ledger:
        report = build_report(ledger, run_id="run-b")
    path = plot_report(report, tmp_path / "chart.png")
    assert Path(path).read_bytes()[:8] == PNG_SIGNATURE
    assert report.series.ts_ms[0] == T0 - HOUR and report.series.equity[0] == 10_000.0


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"JSON holds {constant}")

    return json.loads(text, parse_constant=refuse)


def _run_info(run_id: str, symbols: list[str], timeframe: str, initial: float):
    from sigmax_cli.ledger import RunInfo

    return RunInfo(
        run_id=run_id,
        mode="paper",
        profile="conservative",
        exchange="binance",
        strategy="hold",
        params={},
        symbols=symbols,
        timeframe=timeframe,
        data_files=[],
        initial_equity=initial,
        started_ms=0,
        ended_ms=None,
        first_bar_ms=None,
        last_bar_ms=None,
        status="completed",
        summary=None,
        host="h",
        pid=1,
    )


def test_buy_and_hold_run_on_real_candles_matches_its_benchmark(data_dir):
    """A run that buys BTC and ETH (half each) at the first close and holds them is its own
    benchmark: every curve metric must agree, and P&L must add up across views."""
    from sigmax_cli.data.candles import load_candles
    from sigmax_cli.report.build import assemble_report
    from sigmax_cli.report.formats import get_formatter, to_text

    folder = data_dir / "ohlcv" / "binance_spot_daily_2017-2025"
    btc = load_candles(folder / "BTC_USDT-1d.csv", "BTC/USDT", "1d")
    eth = load_candles(folder / "ETH_USDT-1d.csv", "ETH/USDT", "1d")
    n = 60
    assert (btc.ts[:n] == eth.ts[:n]).all()
    qty_btc, qty_eth = 5_000.0 / btc.close[0], 5_000.0 / eth.close[0]
    value = qty_btc * btc.close[:n] + qty_eth * eth.close[:n]
    rows = [
        {
            "ts_ms": int(btc.ts[i]),
            "equity": float(value[i]),
            "exposure": float(value[i]),
            "benchmark": float(value[i]),
        }
        for i in range(n)
    ]
    last = int(btc.ts[n - 1])
    fills = [
        {
            "symbol": "BTC/USDT",
            "side": "buy",
            "price": btc.close[0],
            "amount": qty_btc,
            "fee": 0.0,
            "ts_ms": int(btc.ts[0]),
        },
        {
            "symbol": "ETH/USDT",
            "side": "buy",
            "price": eth.close[0],
            "amount": qty_eth,
            "fee": 0.0,
            "ts_ms": int(eth.ts[0]),
        },
        {
            "symbol": "BTC/USDT",
            "side": "sell",
            "price": btc.close[n - 1],
            "amount": qty_btc,
            "fee": 0.0,
            "ts_ms": last,
        },
        {
            "symbol": "ETH/USDT",
            "side": "sell",
            "price": eth.close[n - 1],
            "amount": qty_eth,
            "fee": 0.0,
            "ts_ms": last,
        },
    ]
    report = assemble_report(
        _run_info("hold", ["BTC/USDT", "ETH/USDT"], "1d", 10_000.0), rows, fills, orders=4
    )
    assert report.performance == report.benchmark
    net = value[-1] - 10_000.0
    assert report.performance.return_pct == pytest.approx(net / 100.0)
    assert report.exposure_pct == 100.0
    assert sum(t.pnl for t in report.round_trips) == pytest.approx(net)
    assert sum(d.pnl for d in report.daily) == pytest.approx(net)
    assert sum(w.pnl for w in report.weekly) == pytest.approx(net)
    assert len(report.daily) == n and report.trading.trades == 2

    doc = _strict_json(get_formatter("json").render(report))
    assert doc["excess_return_pct"] == pytest.approx(0.0, abs=1e-9)
    assert doc["performance"]["sharpe"] == doc["benchmark"]["sharpe"] is not None
    table = to_text(get_formatter("table").render(report))
    assert f"last 14 of {n} days" in table
    markdown = get_formatter("markdown").render(report)
    assert sum(1 for line in markdown.splitlines() if re.match(r"\| \d{4}-\d\d-\d\d \|", line)) == n


def test_one_flat_bar_without_trades_has_nulls_not_nan():
    from sigmax_cli.report.build import assemble_report
    from sigmax_cli.report.formats import get_formatter, to_text

    run = _run_info("flat", ["BTC/USDT"], "1h", 1_000.0)
    rows = [{"ts_ms": T0, "equity": 1_000.0, "exposure": 0.0, "benchmark": 1_000.0}]
    report = assemble_report(run, rows, [], orders=0)
    doc = _strict_json(get_formatter("json").render(report))
    assert doc["bars"] == 1 and doc["return_pct"] == 0.0 and doc["max_drawdown_pct"] == 0.0
    assert doc["performance"]["sharpe"] is None and doc["performance"]["sortino"] is None
    assert doc["trading"]["trades"] == 0 and doc["trading"]["profit_factor"] is None
    assert doc["round_trips"] == [] and doc["trading"]["exposure_pct"] == 0.0
    for fmt in ("table", "markdown", "html"):
        text = to_text(get_formatter(fmt).render(report))
        assert "n/a" in text and not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE)
