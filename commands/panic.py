"""``sigmax panic``: engage the kill switch now, clear the exchange, write an incident report."""

import sys
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()


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

    Exit codes (engage): 0 engaged everywhere and the exchange verified clear (or none
    configured); 1 engaged everywhere but open orders may remain; 4 engaged in one store only
    (this host only: other hosts not told; or Redis only: the local file not written); 5 not
    engaged anywhere; 2 bad options or settings. --status: 0 released, 1 engaged, 3 unknown.
    --release: 0 released everywhere, 4 this host only (other hosts stay halted).
    """
    from sigmax_cli.errors import ConfigError

    state = obj(ctx)
    if status and release:
        raise ConfigError("--status and --release cannot be combined", "pass one of them")
    if (status or release) and flatten:
        raise ConfigError("--flatten goes with an engage, not with --status or --release", "drop --flatten")
    try:
        settings = state.settings()
    except ConfigError as exc:
        if status or release:
            raise
        from sigmax_cli.risk.panic import engage_without_settings

        raise engage_without_settings(state.home, exc, reason) from None
    if status:
        from sigmax_cli.risk.killswitch import KillSwitch
        from sigmax_cli.risk.panic import STATUS_EXIT

        current = KillSwitch.from_settings(settings).status()
        if as_json:
            print_json(current.to_dict())
        else:
            _print_status(state.console, current)
        raise typer.Exit(STATUS_EXIT[current.state])
    if release:
        from sigmax_cli.risk.panic import EXIT_PARTIAL, REACH_EVERYWHERE, reach_of
        from sigmax_cli.risk.panic import release as do_release

        if not reason:
            raise ConfigError("releasing the kill switch needs a reason",
                              "pass --reason 'what was checked and by whom'")
        after = do_release(settings, reason)
        reach = reach_of(after, settings.redis_url is not None)
        if as_json:
            print_json({**after.to_dict(), "reach": reach})
        else:
            _print_status(state.console, after)
        if reach != REACH_EVERYWHERE:
            sys.stderr.write("error: released on this host only: Redis was not told, so bots on other hosts stay "
                             "halted; release again once Redis answers.\n")
            raise typer.Exit(EXIT_PARTIAL)
        return
    from sigmax_cli.risk.panic import panic as do_panic

    report = do_panic(settings, reason or "operator panic (no reason given)", flatten=flatten)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(state.console, report)
    if report.exit_code:
        where = report.files[-1] if report.files else "the output above"
        sys.stderr.write(f"error: {_summary(report)}; see {where}.\n")
        raise typer.Exit(report.exit_code)


def _summary(report) -> str:
    """One sentence on how far the switch reached and whether the exchange is clear."""
    from sigmax_cli.risk.panic import REACH_NOTHING, REACH_REDIS_ONLY, REACH_THIS_HOST

    if report.reach == REACH_NOTHING:
        return "the kill switch is NOT engaged anywhere (" + "; ".join(report.degraded) + ")"
    if report.reach == REACH_THIS_HOST:
        return "the kill switch is engaged on this host only: Redis was not told, so bots on other hosts trade on"
    if report.reach == REACH_REDIS_ONLY:
        return ("the kill switch is engaged in Redis only: the local file could not be written, so bots on this "
                "host that do not read Redis trade on")
    return "the kill switch is engaged but the exchange could not be verified clear"


def _print_status(console, current) -> None:
    if current.engaged:
        console.print(f"[bold red]kill switch ENGAGED[/] ({current.source}) by {current.by}: {current.reason}")
    elif current.released:
        console.print("[green]kill switch released[/]: bots may trade")
    else:
        console.print(f"[bold red]kill switch state UNKNOWN[/] ({current.unknown_reason}): bots halt and no bot may "
                      "start until it can be read")
    for note in current.degraded:
        console.print(f"[yellow]degraded[/]: {note}")


def _print_report(console, report) -> None:
    colour = {"ok": "green", "degraded": "yellow", "failed": "red"}[report.outcome]
    console.print(f"[bold]panic {report.incident_id}[/]: [{colour}]{report.outcome}[/]  reach: {report.reach}  "
                  f"reason: {report.reason}")
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
