"""``sigmax security-scan``: dependency, code, secret and configuration audit for CI."""


import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj

app = typer.Typer()


class ScanFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"


@app.command("security-scan")
def security_scan(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Project directory or file to scan.", show_default=False)] = Path("."),
    fmt: Annotated[ScanFormat, typer.Option("--format", help="Output format.")] = ScanFormat.table,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the report to FILE (atomically).", dir_okay=False)
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option("--fail-on", help="low|medium|high|critical: exit 1 at or above it [default: high].",
                     show_default=False),
    ] = None,
    skip: Annotated[
        str | None, typer.Option("--skip", help="Scanners to leave out: pip-audit,bandit,secrets,config.")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="TOML of accepted findings, each with reason and expires.", dir_okay=False),
    ] = None,
    osv_url: Annotated[
        str | None, typer.Option("--osv-url", help="OSV-compatible /v1/query URL for the dependency audit.")
    ] = None,
) -> None:
    """Audit dependencies (pip-audit), code (bandit), secrets and configuration.

    Exit 0 clean, 1 findings at or above --fail-on, 2 a scanner failed or is missing.
    """
    from sigmax_cli.errors import ConfigError
    from sigmax_cli.security.formats import StatusObserver, get_formatter, verdict
    from sigmax_cli.security.scan import run_scan

    if as_json and fmt not in (ScanFormat.table, ScanFormat.json):
        raise ConfigError(f"--json and --format {fmt.value} ask for two formats", "give only one of them")
    name = "json" if as_json else fmt.value
    state = obj(ctx)
    console = state.console
    observer = StatusObserver(state.err_console) if state.err_console.is_terminal and state.verbosity >= 0 else None
    try:
        report = run_scan(path, state.settings(), skip=skip, fail_on=fail_on, baseline=baseline,
                          osv_url=osv_url, observer=observer)
    finally:
        if observer is not None:
            observer.close()
    formatter = get_formatter(name, terminal=console.is_terminal and output is None)
    rendered = formatter.render(report)
    if output is not None:
        from sigmax_cli.report.formats import to_text, write_files

        write_files({output: to_text(rendered)})
        if state.verbosity >= 0:
            state.err_console.print(f"wrote {output}")
            state.err_console.print(verdict(report))
    elif isinstance(rendered, str):
        sys.stdout.write(rendered)
        sys.stdout.flush()
    else:
        console.print(rendered)
    raise typer.Exit(report.exit_code)
