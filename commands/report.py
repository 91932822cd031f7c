"""``sigmax report``: performance report of a run from the ledger (table, JSON, Markdown, HTML; its trades as CSV)."""


import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj

app = typer.Typer()


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"
    csv = "csv"


@app.command("report")
def report(
    ctx: typer.Context,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="The run to report (see --list).")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="The most recent run (the default).")
    ] = False,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="Output format; csv: the run's trades, one row each.")
    ] = ReportFormat.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", help="Write to FILE (atomically) instead of stdout.", dir_okay=False
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also draw equity, buy and hold and drawdown "
            "to FILE.png (embedded in --format html).",
            dir_okay=False,
        ),
    ] = None,
    show_list: Annotated[
        bool,
        typer.Option(
            "--list", help="List recent runs instead: id, mode, status, start, bars, return."
        ),
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Runs shown by --list.")] = 20,
) -> None:
    """Report a run: return, Sharpe, Sortino, Calmar, drawdown, trades, P&L vs buy and hold."""
    from sigmax_cli.errors import ConfigError
    from sigmax_cli.ledger import Ledger
    from sigmax_cli.report.build import build_report, list_runs
    from sigmax_cli.report.formats import get_formatter, to_text, write_files

    if run_id and latest:
        raise ConfigError(
            "--run-id and --latest ask for two different runs", "give only one of them"
        )
    if show_list and (run_id or latest or plot):
        raise ConfigError(
            "--list shows all recent runs", "drop --run-id, --latest and --plot, or drop --list"
        )
    state = obj(ctx)
    with Ledger(state.settings(home_must_be_dir=True).ledger_url, create=False) as ledger:
        result = (
            list_runs(ledger, limit)
            if show_list
            else build_report(ledger, run_id=run_id, latest=latest)
        )
    files: dict[Path, str | bytes] = {}
    png = None
    if plot is not None:
        from sigmax_cli.report.plot import render_png

        png = files[plot] = render_png(result)
    formatter = get_formatter(fmt.value, png=png)
    rendered = formatter.render_runs(result) if show_list else formatter.render(result)
    if output is not None:
        files[output] = to_text(rendered)
    write_files(files)
    if output is None:
        if isinstance(rendered, str):
            sys.stdout.write(rendered)
            sys.stdout.flush()
        else:
            state.console.print(rendered)
    if state.verbosity >= 0:
        for path in files:
            state.err_console.print(f"wrote {path}")
