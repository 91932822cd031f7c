"""``sigmax runs``: the runs of this ledger, and acknowledging the ones that were lost.

A run is ``lost`` when its bot died without a word (``kill -9``, a crash, a closed terminal
before SIGHUP was handled, a power cut); ``health`` reports each lost run once, as a WARNING,
until ``sigmax runs ack RUN_ID`` (or ``--all``) acknowledges it.
"""


from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer(help="Runs of this ledger: list them, acknowledge lost ones.")


@app.command("list")
def list_runs(
    ctx: typer.Context,
    lost: Annotated[bool, typer.Option("--lost", help="Only lost runs not yet acknowledged.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Newest runs with status, host and pid; runs whose bot is gone are marked lost first."""
    from sigmax_cli.ledger import Ledger

    state = obj(ctx)
    with Ledger(state.settings(home_must_be_dir=True).ledger_url, create=False) as ledger:
        unacked = {run.run_id: run for run in ledger.mark_lost_runs()}
        runs = [r for r in ledger.list_runs(limit) if not lost or r.run_id in unacked]
        if lost:  # every unacknowledged lost run, however old
            shown = {r.run_id for r in runs}
            runs += [ledger.get_run(run_id) for run_id in unacked if run_id not in shown]
    rows = [{"run_id": r.run_id, "mode": r.mode, "status": r.status, "host": r.host, "pid": r.pid,
             "started_ms": r.started_ms, "ended_ms": r.ended_ms, "lost_ms": r.lost_ms,
             "acknowledged_ms": r.lost_acked_ms,
             "lost": unacked[r.run_id].sentence() if r.run_id in unacked else None} for r in runs]
    if as_json:
        print_json({"runs": rows, "lost_unacknowledged": len(unacked)})
        return
    from datetime import UTC, datetime

    from rich.table import Table

    def when(ms):
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"

    table = Table(title="sigmax runs", show_lines=False)
    for col in ("run id", "mode", "status", "host", "pid", "started (UTC)", "ended (UTC)"):
        table.add_column(col)
    for row in rows:
        status = row["status"] + (" (acknowledged)" if row["status"] == "lost" and row["acknowledged_ms"] else "")
        table.add_row(row["run_id"], row["mode"], status, row["host"], str(row["pid"]), when(row["started_ms"]),
                      when(row["ended_ms"]))
    if not rows:
        table.caption = "no lost run to acknowledge" if lost else "the ledger holds no runs yet"
    state.console.print(table)
    for row in rows:
        if row["lost"]:
            state.console.print(row["lost"], soft_wrap=True)


@app.command("ack")
def ack(
    ctx: typer.Context,
    run_ids: Annotated[list[str] | None, typer.Argument(help="Lost runs to acknowledge.", show_default=False,
                                                        metavar="RUN_ID...")] = None,
    all_lost: Annotated[bool, typer.Option("--all", help="Acknowledge every lost run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Acknowledge lost runs, so that `sigmax health` stops reporting them."""
    from sigmax_cli.errors import ConfigError
    from sigmax_cli.ledger import Ledger

    if bool(run_ids) == all_lost:
        raise ConfigError("name the lost runs to acknowledge, or give --all", "e.g. `sigmax runs ack RUN_ID`; "
                          "`sigmax runs list --lost` lists them")
    state = obj(ctx)
    with Ledger(state.settings(home_must_be_dir=True).ledger_url, create=False) as ledger:
        ledger.mark_lost_runs()
        done = ledger.acknowledge_lost(None if all_lost else list(dict.fromkeys(run_ids or [])))
    if as_json:
        print_json({"acknowledged": done})
    elif not done:
        state.console.print("no lost run was waiting for an acknowledgement")
    else:
        state.console.print(f"acknowledged {len(done)} lost run{'s' if len(done) != 1 else ''}: {', '.join(done)}")
