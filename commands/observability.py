"""``sigmax observability export``: Prometheus rules, prometheus.yml and Grafana dashboards."""

from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj

app = typer.Typer(help="Monitoring files generated from the metrics sigmax publishes.", no_args_is_help=True)


@app.callback()
def observability() -> None:
    """Monitoring files generated from the metrics sigmax publishes."""


@app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory to write (created when missing).")],
    force: Annotated[bool, typer.Option("--force", help="Write into a directory that holds other files.")] = False,
) -> None:
    """Write Prometheus alert and recording rules, an example prometheus.yml (scraping `sigmax
    run --metrics-port` and node_exporter's textfile collector for `sigmax health
    --prometheus`), and Grafana dashboards with provisioning files, all from the one metric
    catalogue. Exit codes: 0 written; 2 bad --out (a file, or a non-empty directory without
    --force) or it cannot be written.
    """
    from sigmax_cli.observability.export import export as do_export

    written = do_export(out, force)
    console = obj(ctx).console
    for path in written:
        console.print(str(path), highlight=False, soft_wrap=True)
