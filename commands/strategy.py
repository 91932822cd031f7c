"""``sigmax strategy``: list the strategies, write a new one, check one for look-ahead and warm-up."""


from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer(help="Strategies: list them, write a new one from a template, check one is causal.")


@app.command("list")
def list_strategies(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Built-in strategies and installed plugins (entry-point group sigmax.strategies), with their source."""
    from sigmax_cli.strategies.catalog import catalog

    rows = catalog()
    if as_json:
        print_json({"strategies": rows})
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="sigmax strategies")
    for col in ("--strategy", "kind", "from", "parameters"):
        table.add_column(col)
    for row in rows:
        params = row["error"] or ", ".join(f"{k}={v}" for k, v in (row["params"] or {}).items()) or "-"
        table.add_row(escape(row["spec"]), row["kind"], escape(row["source"]), escape(params))
    state = obj(ctx)
    state.console.print(table)
    state.console.print("Also: --strategy PATH.py:ClassName or package.module:ClassName (`sigmax strategy new NAME` "
                        "writes a template).")


@app.command("new")
def new(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Strategy name, e.g. sma_cross (file NAME.py, class SmaCross).")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write NAME.py.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Write NAME.py: a documented SMA-crossover strategy that runs as it is; never overwrites."""
    from sigmax_cli.strategies.scaffold import class_name, write_template

    path = write_template(name, directory)
    spec = f"{path}:{class_name(name)}"
    if as_json:
        print_json({"path": str(path), "spec": spec})
        return
    obj(ctx).console.print(f"wrote {path}\nrun it:   sigmax paper --data DIR --timeframe 1h --strategy {spec}\n"
                           f"check it: sigmax strategy check {spec} --data DIR")


@app.command("check")
def check(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="rules, PATH.py:ClassName, package.module:ClassName or a plugin.")],
    data: Annotated[Path, typer.Option("--data", help="Candle file or freqtrade-layout directory.")],
    symbol: Annotated[str | None, typer.Option("--symbol", help="Symbol of a directory (default: the first).")]
    = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", help="Bar length (profile default).")] = None,
    bars: Annotated[int, typer.Option("--bars", help="Check the last N candles.")] = 5000,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Relative tolerance of 'settled' (to the "
                                             "feature's median magnitude).")] = 1e-6,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Prove the features causal (prefixes, altered future bars) and measure the history each needs.

    Exit 0 causal and warm enough, 1 look-ahead found, 3 causal but warm-up shorter than needed.
    """
    from sigmax_cli.strategy_spec import check_spec

    state = obj(ctx)
    settings = state.settings(overrides={"timeframe": timeframe})
    report = check_spec(settings, spec, data, symbol.strip().upper() if symbol else None, bars=bars,
                        tolerance=tolerance)
    if as_json:
        print_json(report.to_dict())
    else:
        _render(state.console, report)
    raise typer.Exit(report.exit_code)


def _render(console, report) -> None:
    from rich.table import Table

    table = Table(title=f"strategy {report.strategy}: {report.symbol} {report.timeframe}, {report.bars} bars, "
                        f"tolerance {report.tolerance:g}")
    for col in ("feature", "look-ahead", "history needed (bars)"):
        table.add_column(col)
    for f in report.features:
        change = f"changed by {f.max_change:.6g}" if f.max_change != float("inf") else "appeared or vanished"
        ahead = f"YES: bar {f.first_changed_bar} {change}" if f.lookahead else "no"
        need = "-" if f.lookahead else "does not settle" if f.history_bars is None else str(f.history_bars)
        table.add_row(f.name, ahead, need)
    console.print(table)
    if report.lookahead:
        console.print(f"LOOK-AHEAD: {', '.join(report.lookahead)} change when later bars are cut off or altered; "
                      "a value at bar i may use bars 0..i only.")
    if report.underwarmed:
        need = report.needed_warmup
        console.print(f"UNDER-WARMED: warmup is {report.warmup} bars, {', '.join(report.underwarmed)} need "
                      + ("more history than the data holds" if need is None else f"{need}") + ".")
    need = report.needed_warmup
    if need is not None and need > report.history:
        console.print(f"history: replays from --start load {report.history} bars before it; set `history = {need}` "
                      "on the class to load what the features need.")
    if report.exit_code == 0:
        console.print(f"ok: causal, and warmup {report.warmup} covers the {report.needed_warmup} bars needed.")
