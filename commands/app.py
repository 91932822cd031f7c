"""The root ``sigmax`` Typer app: global options, command registration, one error boundary.

Every command module is imported here, so each must stay light: heavy libraries (ccxt,
pandas, torch, stable-baselines3) are imported inside the code path that needs them.
"""


import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from commands.context import AppContext
from sigmax_cli import __version__
from sigmax_cli.errors import SigmaxError

UNEXPECTED_EXIT = 70  # EX_SOFTWARE, sysexits.h


class SigmaxGroup(TyperGroup):
    """Click group whose ``invoke`` is the single place errors become exit codes.

    A :class:`SigmaxError` prints ``error: <cause>; <fix>.`` on stderr and exits with the
    error's code; any other exception prints one line and exits 70. With ``-v`` the
    traceback follows. Ctrl-C exits 130.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (Exit, Abort, TyperException):  # Typer's own (usage errors, --help, exit)
            raise
        except SigmaxError as exc:
            report_error(ctx, f"error: {exc.sentence()}")
            raise Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            report_error(ctx, "error: interrupted.")
            raise Exit(130) from None
        except Exception as exc:  # the boundary: nothing escapes as a bare traceback
            report_error(
                ctx,
                f"error: unexpected {type(exc).__name__}: {exc}; "
                "rerun with -v for the traceback and report it.",
            )
            raise Exit(UNEXPECTED_EXIT) from None


def report_error(ctx: typer.Context, line: str) -> None:
    state = ctx.obj if isinstance(ctx.obj, AppContext) else AppContext()
    if state.verbosity > 0:
        import traceback

        traceback.print_exc(file=sys.stderr)
    try:
        from sigmax_cli.logs import _MASK

        for secret in _MASK.secrets:
            line = line.replace(secret, "***")
    except ImportError:  # pragma: no cover
        pass
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


app = typer.Typer(
    cls=SigmaxGroup,
    name="sigmax",
    help="Operations toolkit for crypto trading bots: paper and testnet trading, research, "
    "health checks, backups and an emergency stop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain Click help: typer.rich_utils costs ~200 ms of imports (markdown, pygments)
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sigmax {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="SIGMAX_HOME", help="State directory (ledger, kill switch, models, backups).",
                     show_default=False),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", envvar="SIGMAX_PROFILE",
                     help="Profile name in profiles/ or a .toml path (default: conservative)."),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="dotenv file of SIGMAX_* settings (keys: keep it chmod 600)."),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output; -v shows tracebacks.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours (NO_COLOR is honoured too).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Global options, read once and passed to every command through ``ctx.obj``."""
    from sigmax_cli.logs import setup_logging

    state = AppContext(
        home=home, profile=profile, env_file=env_file,
        verbosity=-1 if quiet else verbose, no_color=no_color,
    )
    ctx.obj = state
    setup_logging(state.verbosity, no_color=no_color)


def _register() -> None:
    from commands import config, data, monitor, panic, paper, report

    for module in (config, paper, report, panic, monitor):
        app.add_typer(module.app)
    app.add_typer(data.app, name="data")
    from commands import research  # issue 7

    app.add_typer(research.app)
    from commands import security  # issue 10

    app.add_typer(security.app)
    from commands import backup, restore  # issue 9

    app.add_typer(backup.app, name="backup")
    app.add_typer(restore.app)
    from commands import health  # issue 8

    app.add_typer(health.app)
    from commands import train_rl  # issue 6

    app.add_typer(train_rl.app)
    from commands import run  # issue 4

    app.add_typer(run.app)


_register()


def main() -> None:
    """Console-script entry point (``sigmax``)."""
    app(prog_name="sigmax")


if __name__ == "__main__":  # pragma: no cover
    main()
