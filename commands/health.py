"""``sigmax health``: the health check cron and monitoring systems run (exit 0/1/2/3)."""


import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from commands.context import obj, print_json, stdout_is_terminal

app = typer.Typer()

UNKNOWN_EXIT = 3


class PluginCommand(TyperCommand):
    """A bad option (``--interval soon``, an unknown flag) exits 3 UNKNOWN, as a monitoring
    plugin must, instead of Click's usage-error 2 (which would read as CRITICAL)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        as_json = "--json" in args  # before parsing: Click consumes the list
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            if not isinstance(exc, _usage_errors()):
                raise
            _unknown(ctx, f"{exc.format_message()}; see sigmax health --help", as_json)  # type: ignore[attr-defined]
            raise  # unreachable: _unknown exits


def _usage_errors() -> tuple[type, ...]:
    """Click's ``UsageError``: vendored as ``typer._click`` by recent Typer, ``click`` before."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _unknown(ctx, sentence: str, as_json: bool) -> None:
    """Say why nothing could be checked (stdout for the monitor, stderr for a human); exit 3."""
    from commands.app import report_error
    from sigmax_cli import __version__
    from sigmax_cli.health import formats

    sentence = sentence.rstrip(". ") + "."
    if as_json:
        print_json(formats.unknown_json(sentence, __version__))
    elif not obj(ctx).console.is_terminal:
        sys.stdout.write(formats.unknown_line(sentence))
        sys.stdout.flush()
    report_error(ctx, f"error: {sentence}")
    raise typer.Exit(UNKNOWN_EXIT)


@app.command("health", cls=PluginCommand)
def health(
    ctx: typer.Context,
    check: Annotated[
        list[str] | None,
        typer.Option("--check", help="Checks to run, comma-separated (default: all): ledger, redis, exchange, "
                     "system, heartbeat, killswitch, data, backup, orders.", show_default=False,
                     metavar="NAME,..."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one health+json document.")] = False,
    prometheus: Annotated[
        Path | None,
        typer.Option("--prometheus", help="Also write node_exporter's textfile FILE (atomically).", dir_okay=False,
                     metavar="FILE"),
    ] = None,
    pushgateway: Annotated[
        str | None,
        typer.Option("--pushgateway", help="Also push the metrics to this Prometheus Pushgateway.", metavar="URL"),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Re-run every --interval seconds in a live panel.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=1.0, metavar="SEC", help="Seconds between --watch rounds.")
    ] = 10.0,
    count: Annotated[
        int | None,
        typer.Option("--count", min=1, metavar="N", help="Stop --watch after N rounds (default: until Ctrl-C)."),
    ] = None,
) -> None:
    """Check ledger, Redis, exchange, host, bot heartbeats, kill switch, data, backups, open orders.

    Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad input, or another run holding the lock).
    Plain monitoring-plugin text with perfdata when stdout is not a terminal.
    """
    from sigmax_cli import __version__
    from sigmax_cli.errors import ConfigError, SigmaxError
    from sigmax_cli.health import formats

    state = obj(ctx)
    names = [part for item in (check or []) for part in item.split(",")]
    try:
        if watch and as_json:
            raise ConfigError("--watch redraws a panel, --json prints one document", "drop one of them")
        if prometheus is not None:
            formats.check_prometheus_target(prometheus)
        if pushgateway is not None:
            formats.check_pushgateway(pushgateway)
        settings = state.settings()
        if watch:
            raise typer.Exit(_watch(state, settings, names, interval, count, prometheus, pushgateway))
        from sigmax_cli.health.runner import check_health

        report = check_health(settings, names)
        if prometheus is not None:
            formats.write_prometheus(report, prometheus)
        if pushgateway is not None:
            formats.push_prometheus(report, pushgateway)
    except SigmaxError as exc:  # bad input is UNKNOWN for a monitoring plugin, whatever the error
        _unknown(ctx, exc.sentence(), as_json)
    if as_json:
        print_json(formats.health_json(report, __version__))
    elif stdout_is_terminal():  # cron and NRPE get the plugin line without importing rich
        state.console.print(formats.table(report))
    else:
        sys.stdout.write(formats.plugin_output(report))
        sys.stdout.flush()
    raise typer.Exit(int(report.status))


def _watch(state, settings, names: list[str], interval: float, count: int | None, prometheus: Path | None,
           pushgateway: str | None = None) -> int:
    """Redraw the table every round on a terminal (plugin text otherwise); the last round's status."""
    import threading

    from sigmax_cli.health import formats
    from sigmax_cli.health.runner import watch

    console = state.console
    stop = threading.Event()
    last: list = []
    live = None

    def show(report) -> None:
        last[:] = [report]
        if prometheus is not None:
            formats.write_prometheus(report, prometheus)
        if pushgateway is not None:
            formats.push_prometheus(report, pushgateway)
        if live is not None:
            live.update(formats.table(report), refresh=True)
        else:
            sys.stdout.write(formats.plugin_output(report))
            sys.stdout.flush()

    try:
        if console.is_terminal:
            from rich.live import Live

            with Live(console=console, auto_refresh=False) as live:
                watch(settings, names, interval, stop, show, rounds=count)
        else:
            watch(settings, names, interval, stop, show, rounds=count)
    except KeyboardInterrupt:  # Ctrl-C ends a watch; the exit code is the last round's status
        stop.set()
    return int(last[0].status) if last else UNKNOWN_EXIT
