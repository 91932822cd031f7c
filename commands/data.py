"""``sigmax data``: check candle files, download OHLCV from an exchange."""


from pathlib import Path
from typing import Annotated, Any

import typer

from commands.context import obj, print_json
from commands.options import PAIRS_OPTIONS, PairsCommand, split_symbols

app = typer.Typer(help="Candle data: check files, download OHLCV from an exchange.", no_args_is_help=True)


@app.command("check")
def check(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A candle file or a directory of them; 'sample' is the "
                                        "sample bundled with sigmax.", show_default=False)],
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", "-i", help="Timeframe of a directory's files.")
    ] = None,
    symbols: Annotated[str | None, typer.Option(*PAIRS_OPTIONS, help="e.g. BTC/USDT,ETH/USDT or "
                                                "'BTC/USDT ETH/USDT'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Load and validate candle files: bars, range, gaps (never filled in), sha256."""
    from sigmax_cli.data.candles import _iso, discover, load_candles
    from sigmax_cli.data.sample import resolve_data

    state = obj(ctx)
    data_path, note = resolve_data(path)
    assert data_path is not None  # only a missing value resolves to None, and PATH is required
    if note and state.verbosity >= 0:
        state.err_console.print(f"note: {note}", markup=False, soft_wrap=True)
    wanted = split_symbols(symbols)
    files = discover(data_path, wanted, timeframe)
    reports: list[dict[str, Any]] = []
    for file in files:
        c = load_candles(file, timeframe=timeframe if data_path.is_file() else None)
        reports.append({
            "file": str(file), "symbol": c.symbol, "timeframe": c.timeframe, "bars": len(c),
            "first": _iso(int(c.ts[0])) if len(c) else None, "last": _iso(int(c.ts[-1])) if len(c) else None,
            "gaps": [{"after": _iso(g.after_ms), "before": _iso(g.before_ms), "missing_bars": g.missing}
                     for g in c.gaps],
            "missing_bars": c.missing_bars, "dropped_duplicates": c.dropped_duplicates,
            "duplicates": c.duplicates.to_dict() if c.duplicates else None,
            "out_of_order": c.out_of_order.to_dict() if c.out_of_order else None,
            "warnings": c.warnings(), "sha256": c.sha256,
        })
    if as_json:
        print_json({"files": reports})
        return
    from rich.table import Table

    table = Table(title="candle files")
    for col in ("symbol", "tf", "bars", "first", "last", "gaps", "missing bars"):
        table.add_column(col, justify="right" if col in ("bars", "gaps", "missing bars") else "left")
    for r in reports:
        table.add_row(r["symbol"], r["timeframe"], str(r["bars"]), r["first"] or "-", r["last"] or "-",
                      str(len(r["gaps"])), str(r["missing_bars"]))
    state.console.print(table)
    for r in reports:
        for g in r["gaps"]:
            state.console.print(f"gap {r['symbol']}: {g['missing_bars']} bar(s) missing after {g['after']}")
        for warning in r["warnings"]:
            state.console.print(f"warning: {warning}", soft_wrap=True)


@app.command("download", cls=PairsCommand)
def download(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option("--since", help="First bar: ISO date or date-time, UTC (or --timerange).")
    ] = None,
    exchange: Annotated[
        str | None, typer.Option("--exchange", help="ccxt exchange id (default: setting).")
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(*PAIRS_OPTIONS, help="e.g. BTC/USDT,ETH/USDT or 'BTC/USDT ETH/USDT'.")
    ] = None,
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", "-i", help="Bar length, e.g. 1m, 5m, 1h, 1d.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only bars opening before this date (UTC).")
    ] = None,
    timerange: Annotated[
        str | None, typer.Option("--timerange", help="freqtrade's START-END instead of --since/--until, "
                                 "e.g. 20240101-20240301 or 20240101- (end excluded).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "--datadir", help="Directory (default: <home>/data/<exchange>).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Download closed OHLCV bars into freqtrade JSON files; a rerun resumes each file.

    Also merges the symbols' ccxt markets (precision, limits) into markets.json there."""
    from sigmax_cli.data.download import download_many, parse_date_ms
    from sigmax_cli.data.timerange import range_or_bounds
    from sigmax_cli.errors import ConfigError
    from sigmax_cli.exchange.client import exchange_from_settings

    state = obj(ctx)
    since, until = range_or_bounds(timerange, since, until, "--since", "--until")
    if since is None:
        raise ConfigError("a download needs its first bar", "give --since 2024-01-01 or --timerange 20240101-")
    since_ms = parse_date_ms(since, "--since")
    until_ms = parse_date_ms(until, "--until") if until is not None else None
    settings = state.settings({"exchange": exchange, "symbols": split_symbols(symbols), "timeframe": timeframe})
    out_dir = out or settings.home / "data" / settings.exchange
    client = exchange_from_settings(settings, with_keys=False)
    console = state.console

    def run(observer=None):
        return download_many(client, settings.symbols, settings.timeframe, since_ms, out_dir,
                             until_ms, observer)

    if as_json:
        print_json(run().to_dict())
        return
    if console.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.fields[bars]} bars"), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            batch = run(_ProgressObserver(progress))
    else:
        batch = run(_LineObserver(console))
    for r in batch.results:
        doc = r.to_dict()
        where = r.path.name if r.path else "no file (no closed bar in the range)"
        span = f" ({doc['first']} .. {doc['last']})" if r.first_ms is not None else ""
        console.print(f"{r.symbol} {r.timeframe}: +{r.bars_added} bars, {r.bars_total} in "
                      f"{where}{span}, {len(r.gaps)} gap(s), {r.missing_bars} missing bar(s)")
    if batch.markets_file is not None:
        console.print(f"market rules (precision, limits) in {batch.markets_file}")
    console.print(f"files in {out_dir}")


class _ProgressObserver:
    """One rich progress task per symbol; progress is the share of the time range covered."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.tasks: dict[str, dict[str, int]] = {}

    def on_start(self, symbol: str, start_ms: int, end_ms: int) -> None:
        total = max(1, end_ms - start_ms)
        task = self.progress.add_task(symbol, total=total, bars=0)
        self.tasks[symbol] = {"id": task, "start": start_ms, "total": total, "bars": 0}

    def on_page(self, symbol: str, fetched_bars: int, last_ms: int) -> None:
        t = self.tasks[symbol]
        t["bars"] += fetched_bars
        self.progress.update(t["id"], completed=max(0, last_ms - t["start"]), bars=t["bars"])

    def on_done(self, result) -> None:
        t = self.tasks[result.symbol]
        self.progress.update(t["id"], completed=t["total"], bars=result.bars_total)


class _LineObserver:
    """Plain lines for cron and pipes: one when a symbol starts, none per page."""

    def __init__(self, console) -> None:
        self.console = console

    def on_start(self, symbol: str, start_ms: int, end_ms: int) -> None:
        self.console.print(f"downloading {symbol}")

    def on_page(self, symbol: str, fetched_bars: int, last_ms: int) -> None:
        pass

    def on_done(self, result) -> None:
        pass
