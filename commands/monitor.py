"""``sigmax monitor``: live panels of the bots that write to this ledger (read-only)."""

from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()


@app.command("monitor")
def monitor(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Print the state once and exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.", min=0.2)] = 2.0,
    stale_after: Annotated[float, typer.Option("--stale-after", help="Seconds without heartbeat = stale.")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout (implies --once).")] = False,
    all_bots: Annotated[bool, typer.Option(
        "--all", help="Every bot that ever wrote to the ledger, not only live ones and those of the last 24 h.",
    )] = False,
) -> None:
    """Heartbeat age, trading state, equity, P&L, open orders and events of live and recent bots."""
    import time

    from sigmax_cli.ledger import Ledger
    from sigmax_cli.monitor import collect, killswitch_status, render, to_dict

    state = obj(ctx)
    settings = state.settings(home_must_be_dir=True)
    with Ledger(settings.ledger_url, create=False) as ledger:

        def panel():
            return render(collect(ledger, stale_after_s=stale_after, all_bots=all_bots), killswitch_status(settings))

        if as_json or once:
            if as_json:
                print_json(to_dict(collect(ledger, stale_after_s=stale_after, all_bots=all_bots),
                                   killswitch_status(settings)))
            else:
                state.console.print(panel())
            return
        from rich.live import Live

        with Live(panel(), console=state.console, refresh_per_second=4, screen=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(panel())
            except KeyboardInterrupt:
                pass
