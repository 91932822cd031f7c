"""``sigmax data``: check candle files (and download them, see ``download``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer(help="Candle data: check files, download OHLCV from an exchange.", no_args_is_help=True)


@app.command("check")
def check(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A candle file or a directory of them.")],
    timeframe: Annotated[str | None, typer.Option("--timeframe", help="Timeframe of a directory's files.")] = None,
    symbols: Annotated[str | None, typer.Option("--symbols", help="Comma-separated, e.g. BTC/USDT,ETH/USDT.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Load and validate candle files: bars, range, gaps (never filled in), sha256."""
    from sigmax_cli.data.candles import _iso, discover, load_candles

    state = obj(ctx)
    wanted = [s.strip().upper() for s in symbols.split(",")] if symbols else None
    files = discover(path, wanted, timeframe)
    reports = []
    for file in files:
        c = load_candles(file, timeframe=timeframe if path.is_file() else None)
        reports.append({
            "file": str(file), "symbol": c.symbol, "timeframe": c.timeframe, "bars": len(c),
            "first": _iso(int(c.ts[0])) if len(c) else None, "last": _iso(int(c.ts[-1])) if len(c) else None,
            "gaps": [{"after": _iso(g.after_ms), "before": _iso(g.before_ms), "missing_bars": g.missing} for g in c.gaps],
            "missing_bars": c.missing_bars, "dropped_duplicates": c.dropped_duplicates, "sha256": c.sha256,
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
