"""``sigmax backup``: make, list, verify and prune verified archives of the ledger, Redis, models, config.

Exit codes: 0 ok, 2 bad option, 10 archive not found, 11 lock held, 12 checksum mismatch
(damaged or edited archive), 69 archive from a newer sigmax (see ``sigmax_cli.errors``).
"""


from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer(
    help="Verified backups: with no subcommand, write one archive of the ledger, Redis keys, models and "
    "config (never secrets).",
    invoke_without_command=True,
)


def _pushed(failed: str | None) -> None:
    """Print a failed push as a warning on stderr (the backup's exit code stays its own)."""
    if failed is not None:
        import sys

        from sigmax_cli.observability.push import push_warning

        sys.stderr.write(push_warning("backup", failed))
        sys.stderr.flush()


def _json(ctx: typer.Context, as_json: bool) -> bool:
    return as_json or bool(ctx.meta.get("backup_json"))


@app.callback()
def backup(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option("--tag", help="Label in the file name and manifest.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Archive directory (default <home>/backups).")] = None,
    include: Annotated[str | None, typer.Option("--include", help="Members: ledger,redis,models,config "
                                                "(default: all there are).")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip re-reading the archive after writing.")
                         ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    pushgateway: Annotated[str | None, typer.Option(
        "--pushgateway", metavar="URL", help="Also push the backup's metrics (last success time, duration, archive "
        "bytes, exit code) to this Prometheus Pushgateway (job sigmax_backup, instance = host name); a failed push "
        "is a warning on stderr and never changes the exit code.")] = None,
) -> None:
    """Write one compressed, checksummed archive (temporary name, fsync, rename, manifest last)."""
    from sigmax_cli.errors import ConfigError

    ctx.meta["backup_json"] = as_json
    if ctx.invoked_subcommand is not None:
        if tag or out or include or no_verify or pushgateway:
            raise ConfigError(f"--tag, --out, --include, --no-verify and --pushgateway make a backup, not `backup "
                              f"{ctx.invoked_subcommand}`", "put them without a subcommand")
        return
    from sigmax_cli.backup import render
    from sigmax_cli.backup.create import create_backup
    from sigmax_cli.backup.members import parse_kinds

    state = obj(ctx)
    metrics = None
    if pushgateway is not None:
        from sigmax_cli.observability.push import JobMetrics, check_url

        check_url(pushgateway)
        metrics = JobMetrics("backup")
    try:
        kinds = parse_kinds(include, "--include")
        settings = state.settings(home_must_be_dir=True)
        with render.progress(state.err_console, not as_json and state.verbosity >= 0) as observer:
            result = create_backup(settings, tag=tag, out_dir=out, include=kinds, verify=not no_verify,
                                   observer=observer)
    except (Exception, KeyboardInterrupt) as exc:
        if metrics is not None and pushgateway is not None:
            from sigmax_cli.observability.push import exit_code_of

            _pushed(metrics.push(pushgateway, exit_code_of(exc)))
        raise
    if metrics is not None and pushgateway is not None:
        metrics.metric("sigmax_backup_size_bytes").set(result.size_bytes)
        _pushed(metrics.push(pushgateway, 0))
    if as_json:
        print_json(result.to_dict())
    else:
        render.backup(state.console, result)


@app.command("list")
def list_(
    ctx: typer.Context,
    directory: Annotated[Path | None, typer.Option("--dir", help="Archive directory (default <home>/backups).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Archives newest first: tag, age, size, verified, members; damaged files marked INVALID."""
    from sigmax_cli.backup import render
    from sigmax_cli.backup.catalog import backups_dir, list_backups

    state = obj(ctx)
    settings = state.settings(home_must_be_dir=True)
    where = directory or backups_dir(settings)
    items = list_backups(settings, where)
    if _json(ctx, as_json):
        print_json({"directory": str(where), "backups": [i.to_dict() for i in items]})
    else:
        render.listing(state.console, items, where)


@app.command("verify")
def verify(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="The archive file.", show_default=False)],
    restore_test: Annotated[bool, typer.Option("--restore-test", help="Also restore into a scratch database, "
                                               "scratch Redis keys and a SQLite copy, and recount.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Check every checksum, pg_restore --list / integrity_check / key counts; mark it verified."""
    from sigmax_cli.backup import render
    from sigmax_cli.backup.verify import verify_archive

    state = obj(ctx)
    as_json = _json(ctx, as_json)
    settings = state.settings(home_must_be_dir=True)
    with render.progress(state.err_console, not as_json and state.verbosity >= 0) as observer:
        report = verify_archive(settings, archive, restore_test=restore_test, observer=observer)
    if as_json:
        print_json(report.to_dict())
    else:
        render.verified(state.console, report)


@app.command("prune")
def prune(
    ctx: typer.Context,
    keep_daily: Annotated[int | None, typer.Option("--keep-daily", help="Newest backup of each of the last N "
                                                   "days that have one (required).", show_default=False)] = None,
    keep_weekly: Annotated[int | None, typer.Option("--keep-weekly", help="... of the last N ISO weeks "
                                                    "(required).", show_default=False)] = None,
    keep_monthly: Annotated[int, typer.Option("--keep-monthly", help="... of the last N months.")] = 0,
    directory: Annotated[Path | None, typer.Option("--dir", help="Archive directory (default <home>/backups).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Delete old archives (restic's keep policy, UTC buckets); never the newest verified one."""
    from sigmax_cli.backup import render
    from sigmax_cli.backup.prune import prune as run_prune
    from sigmax_cli.errors import ConfigError

    if keep_daily is None or keep_weekly is None:
        raise ConfigError("prune needs both --keep-daily and --keep-weekly", "e.g. --keep-daily 7 --keep-weekly 4")
    state = obj(ctx)
    result = run_prune(state.settings(home_must_be_dir=True), keep_daily=keep_daily, keep_weekly=keep_weekly,
                       keep_monthly=keep_monthly, directory=directory, dry_run=dry_run)
    if _json(ctx, as_json):
        print_json(result.to_dict())
    else:
        render.pruned(state.console, result)
