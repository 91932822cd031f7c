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
) -> None:
    """Heartbeat age, trading state, equity, P&L, open orders and events of every bot."""
    import time

    from sigmax_cli.ledger import Ledger
    from sigmax_cli.monitor import collect, killswitch_status, render, to_dict

    state = obj(ctx)
    settings = state.settings(home_must_be_dir=True)
    with Ledger(settings.ledger_url, create=False) as ledger:
        if as_json or once:
            rows = collect(ledger, stale_after_s=stale_after)
            if as_json:
                print_json(to_dict(rows, killswitch_status(settings)))
            else:
                state.console.print(render(rows, killswitch_status(settings)))
            return
        from rich.live import Live

        with Live(render(collect(ledger, stale_after_s=stale_after), killswitch_status(settings)),
                  console=state.console, refresh_per_second=4, screen=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(render(collect(ledger, stale_after_s=stale_after), killswitch_status(settings)))
            except KeyboardInterrupt:
                pass
