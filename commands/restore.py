"""``sigmax restore``: verify an archive, show what would change, then restore it safely.

Exit codes: 0 ok, 2 bad option, 10 archive not found, 11 lock held, 12 checksum mismatch,
13 target busy (a bot runs or the kill switch is released; --force overrides), 69 archive
from a newer sigmax (see ``sigmax_cli.errors``).
"""


from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()


@app.command("restore")
def restore(
    ctx: typer.Context,
    archive: Annotated[Path | None, typer.Argument(help="The archive file (or --latest).", show_default=False)
                       ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest valid archive (safety backups "
                                         "of earlier restores excluded).")] = False,
    directory: Annotated[Path | None, typer.Option("--dir", help="Where --latest looks (default "
                                                   "<home>/backups).")] = None,
    only: Annotated[str | None, typer.Option("--only", help="Members to restore: ledger,redis,models,config "
                                             "(default: all the archive holds).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Verify and show what would change; change nothing.")
                       ] = False,
    force: Annotated[bool, typer.Option("--force", help="Restore even while a bot's heartbeat is fresh or the "
                                        "kill switch is not engaged.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Verify first, take a safety backup, restore the ledger (one transaction / atomic swap), Redis, files."""
    from sigmax_cli.backup import render
    from sigmax_cli.backup.members import parse_kinds
    from sigmax_cli.backup.restore import restore as run_restore

    state = obj(ctx)
    kinds = parse_kinds(only, "--only")
    settings = state.settings(home_must_be_dir=True)
    with render.progress(state.err_console, not as_json and state.verbosity >= 0) as observer:
        result = run_restore(settings, archive, latest=latest, directory=directory, only=kinds, dry_run=dry_run,
                             force=force, observer=observer)
    if as_json:
        print_json(result.to_dict())
    else:
        render.restored(state.console, result)
