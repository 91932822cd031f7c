"""``sigmax panic``: engage the kill switch now, clear the exchange, write an incident report."""

import sys
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()

EXIT_NOT_VERIFIED = 1  # the switch is engaged but open orders may remain on the exchange


@app.command("panic")
def panic(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the ledger and the report).")] = None,
    flatten: Annotated[bool, typer.Option("--flatten", help="Also sell spot positions to the quote currency.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Show the kill switch; change nothing.")] = False,
    release: Annotated[bool, typer.Option("--release", help="Release the kill switch (needs --reason).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Emergency stop: kill switch first, then cancel every open order (verified), optional flatten.

    Exit codes: 0 engaged and verified (or nothing to verify); 1 engaged but open orders may
    remain (see the incident report); 2 bad options.
    """
    from sigmax_cli.errors import ConfigError

    state = obj(ctx)
    if status and release:
        raise ConfigError("--status and --release cannot be combined", "pass one of them")
    if (status or release) and flatten:
        raise ConfigError("--flatten goes with an engage, not with --status or --release", "drop --flatten")
    settings = state.settings()
    if status:
        from sigmax_cli.risk.killswitch import KillSwitch

        current = KillSwitch.from_settings(settings).status()
        if as_json:
            print_json(current.to_dict())
        else:
            _print_status(state.console, current)
        return
    if release:
        from sigmax_cli.risk.panic import release as do_release

        if not reason:
            raise ConfigError("releasing the kill switch needs a reason",
                              "pass --reason 'what was checked and by whom'")
        after = do_release(settings, reason)
        if as_json:
            print_json(after.to_dict())
        else:
            _print_status(state.console, after)
        return
    from sigmax_cli.risk.panic import panic as do_panic

    report = do_panic(settings, reason or "operator panic (no reason given)", flatten=flatten)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(state.console, report)
    if report.outcome == "failed":
        sys.stderr.write("error: the kill switch is engaged but the exchange could not be verified clear; "
                         f"see {report.files[-1] if report.files else 'the incident report'}.\n")
        raise typer.Exit(EXIT_NOT_VERIFIED)


def _print_status(console, current) -> None:
    if current.engaged:
        console.print(f"[bold red]kill switch ENGAGED[/] ({current.source}) by {current.by}: {current.reason}")
    else:
        console.print("[green]kill switch released[/]: bots may trade")
    for note in current.degraded:
        console.print(f"[yellow]degraded[/]: {note}")


def _print_report(console, report) -> None:
    colour = {"ok": "green", "degraded": "yellow", "failed": "red"}[report.outcome]
    console.print(f"[bold]panic {report.incident_id}[/]: [{colour}]{report.outcome}[/]  reason: {report.reason}")
    for entry in report.timeline:
        console.print(f"  {entry['step']}")
    if report.cancelled:
        console.print(f"cancelled {len(report.cancelled)} orders on {report.exchange} "
                      f"in {report.round_trips} round trips")
    for item in report.failures:
        console.print(f"[red]failure[/]: {item}")
    for item in report.degraded:
        console.print(f"[yellow]degraded[/]: {item}")
    for item in report.notes:
        console.print(f"note: {item}")
    for path in report.files:
        console.print(f"incident report: {path}")
