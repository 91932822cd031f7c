"""``sigmax paper``: paper trading on real candles (files or live public data)."""


import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj, print_json
from commands.options import PAIRS_OPTIONS, PairsCommand, split_symbols

app = typer.Typer()


@app.command("paper", cls=PairsCommand)
def paper(
    ctx: typer.Context,
    data: Annotated[str | None, typer.Option("--data", "--datadir", help="Candle file or freqtrade-layout directory; "
                                             "'sample' replays the real sample bundled with sigmax; omit for live "
                                             "public data from the exchange.", show_default=False,
                                             metavar="PATH|sample")] = None,
    symbols: Annotated[str | None, typer.Option(*PAIRS_OPTIONS, help="e.g. BTC/USDT,ETH/USDT or 'BTC/USDT ETH/USDT'; "
                                                "default: every pair in --data, or the profile's symbols.")] = None,
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", "-i", help="Bar length, e.g. 1h (profile default).")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First bar, ISO date/time UTC.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Stop before this ISO date/time UTC.")] = None,
    timerange: Annotated[str | None, typer.Option("--timerange", help="freqtrade's START-END instead of --start/--end, "
                                                  "e.g. 20210101-20210301 or 20210101- (end excluded).")] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="rules, rl:MODEL.zip, PATH.py:Class, "
                                            "module:Class or a plugin (sigmax strategy list).")] = "rules",
    allow_other_symbol: Annotated[bool, typer.Option("--allow-other-symbol", help="Let an rl: model trained on "
                                                     "another symbol trade these (refused by default).")] = False,
    balance: Annotated[
        float | None, typer.Option("--balance", help="Starting quote balance (profile default).")
    ] = None,
    fee: Annotated[float | None, typer.Option("--fee", help="Maker and taker fee, fraction (0.001 = 0.1%).")] = None,
    slippage_bps: Annotated[float | None, typer.Option("--slippage-bps", help="Market-fill slippage, bps.")] = None,
    markets: Annotated[Path | None, typer.Option("--markets", help="ccxt markets JSON for precision and "
                                                 "minimums (default: SIGMAX_MARKETS_FILE, else the "
                                                 "markets.json beside --data).")] = None,
    speed: Annotated[float, typer.Option("--speed", help="Replay at N x real time; 0 = as fast as possible.")] = 0.0,
    max_bars: Annotated[int | None, typer.Option("--max-bars", help="Stop after N bars (all symbols).")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Ledger id of this run (generated).")] = None,
    tui: Annotated[bool | None, typer.Option("--tui/--no-tui", help="Live panels (default on a terminal).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON summary on stdout.")] = False,
) -> None:
    """Replay candles (or follow live prices) through strategy, risk guard, paper broker and ledger."""
    import math
    import threading

    from sigmax_cli.data.sample import SAMPLE_TIMEFRAME, is_sample, resolve_data
    from sigmax_cli.data.timerange import range_or_bounds
    from sigmax_cli.errors import ConfigError, Halted, Interrupted
    from sigmax_cli.paper import PaperOptions, prepare_paper, run_paper
    from sigmax_cli.signals import stop_on_signals

    state = obj(ctx)
    if balance is not None and not (math.isfinite(balance) and balance > 0):
        raise ConfigError(f"--balance {balance:g} is not a starting balance: it must be a finite number greater "
                          "than 0", "give the starting quote balance, e.g. --balance 10000")
    if not (math.isfinite(speed) and speed >= 0):
        raise ConfigError(f"--speed {speed:g} is not a replay speed: it must be a finite number, 0 or more",
                          "pass e.g. --speed 0 (as fast as possible) or --speed 60 (60 x real time)")
    if fee is not None and not 0 <= fee < 0.1:
        raise ConfigError(f"--fee {fee} is not a fraction between 0 and 0.1", "pass e.g. --fee 0.001 for 0.1%")
    start, end = range_or_bounds(timerange, start, end)
    if timerange is not None and end is not None and data is None:
        raise ConfigError(f"--timerange {timerange} has an end, and a live run (no --data) has none",
                          "replay candles with --data (e.g. --data sample), or leave the end open (20210101-)")
    data_path, data_note = resolve_data(data)
    if data_note and state.verbosity >= 0:
        state.err_console.print(f"note: {data_note}", markup=False, soft_wrap=True)
    if timeframe is None and is_sample(data_path):
        timeframe = SAMPLE_TIMEFRAME  # the sample's, whatever the profile's
    wanted = split_symbols(symbols)
    settings = state.settings(overrides={
        "timeframe": timeframe, "markets_file": markets, "symbols": wanted,
        "paper": {"balance": balance, "maker_fee": fee, "taker_fee": fee, "slippage_bps": slippage_bps},
        "rl": {"allow_other_symbol": True if allow_other_symbol else None},
    }, home_must_be_dir=True)
    plan = prepare_paper(settings, PaperOptions(data=data_path, symbols=wanted, start=start, end=end, strategy=strategy,
                                                speed=speed, max_bars=max_bars, run_id=run_id))
    observer = _observer(state, as_json, tui)
    stop = threading.Event()
    data_warnings = plan.feed.warnings() if hasattr(plan.feed, "warnings") else []  # repeated/unordered rows
    with stop_on_signals(stop), observer if hasattr(observer, "__enter__") else nullcontext():
        summary = run_paper(plan, stop, observer)
    if as_json:
        print_json({**summary.to_dict(), "data_warnings": data_warnings})
    else:
        _render(state.console, summary, [*data_warnings, *plan.warnings], _market_rules(plan), _data_label(plan))
    if summary.status == "halted":
        raise Halted(f"run {summary.run_id} ended HALTED by the kill switch after {summary.bars} bars and is marked "
                     "halted in the ledger", "see `sigmax panic --status`; release it with "
                     "`sigmax panic --release --reason ...` once it is safe")
    if summary.status == "interrupted":
        raise Interrupted(f"run {summary.run_id} was interrupted after {summary.bars} bars and is marked "
                          "interrupted in the ledger", f"see it with `sigmax report --run-id {summary.run_id}`")


def _observer(state, as_json: bool, tui: bool | None):
    from sigmax_cli.ui.dashboard import Dashboard, PlainProgress
    from sigmax_cli.ui.observer import NullObserver

    terminal = sys.stdout.isatty()
    if as_json:
        return NullObserver() if not sys.stderr.isatty() or state.verbosity < 0 else PlainProgress(sys.stderr)
    if tui if tui is not None else terminal:
        return Dashboard(console=state.console)
    if state.verbosity < 0:
        return NullObserver()
    return PlainProgress(sys.stdout)


def _market_rules(plan) -> str:
    """Where the run's precision and minimums came from, for the summary table."""
    if plan.markets_file is not None:
        return f"{plan.markets_file}" + (" (beside --data)" if plan.markets_beside_data else "")
    return "exchange" if plan.options.data is None else "defaults (step 1e-8, no minimum)"


def _data_label(plan) -> str:
    """What the run replayed, for the summary table."""
    from sigmax_cli.data.sample import SAMPLE_SPAN, is_sample

    data = plan.options.data
    if data is None:
        return "live public candles"
    return f"bundled sample ({SAMPLE_SPAN})" if is_sample(data) else str(data)


def _render(console, summary, warnings: list[str], market_rules: str, data: str) -> None:
    from rich.table import Table

    for warning in warnings:
        console.print(f"warning: {warning}")
    table = Table(title=f"paper run {summary.run_id} ({summary.status})", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("data", data), ("symbols", ", ".join(summary.symbols)), ("timeframe", summary.timeframe),
        ("market rules", market_rules),
        ("bars", f"{summary.bars:,}"),
        ("orders / fills", f"{summary.orders} / {summary.fills}"),
        ("rejected / risk denials", f"{summary.rejected} / {summary.risk_denials}"),
        ("fees", f"{summary.fees:,.2f}"), ("initial equity", f"{summary.initial_equity:,.2f}"),
        ("final equity", f"{summary.final_equity:,.2f}"), ("return", f"{summary.return_pct:+.2f}%"),
        ("max drawdown", f"{summary.max_drawdown_pct:.2f}%"),
        ("buy & hold", f"{summary.benchmark_return_pct:+.2f}%"), ("trading state", summary.trading_state),
        ("speed", f"{summary.bars_per_s:,.0f} bars/s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"run id: {summary.run_id}  (report: sigmax report --run-id {summary.run_id})")
