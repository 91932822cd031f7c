"""The root ``sigmax`` Typer app: global options, the command table, one error boundary.

Commands load lazily: ``sigmax health`` imports ``commands.health`` and no other command
module (``COMMANDS`` names each command's module); ``sigmax --help`` imports them all for
their one-line help. Command modules still stay light: heavy libraries (ccxt, pandas, torch,
stable-baselines3) are imported inside the code path that needs them.
"""


import importlib
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from commands.context import AppContext
from sigmax_cli import __version__
from sigmax_cli.errors import SigmaxError

UNEXPECTED_EXIT = 70  # EX_SOFTWARE, sysexits.h

COMMANDS: dict[str, str] = {
    "config": "config",
    "paper": "paper",
    "report": "report",
    "runs": "runs",
    "panic": "panic",
    "monitor": "monitor",
    "data": "data",
    "research": "research",
    "security-scan": "security",
    "backup": "backup",
    "restore": "restore",
    "health": "health",
    "observability": "observability",
    "signals": "signals",
    "train-rl": "train_rl",
    "strategy": "strategy",
    "run": "run",
}
"""Every ``sigmax`` command, in ``--help`` order, and its module under ``commands/``. A module
holds a Typer ``app``: one command of that name, or (``data``, ``backup``) a group."""


class LazyCommands(MutableMapping):
    """The root group's commands by name, each built from its module on first access.

    Click and Typer read a group's commands through ``group.commands`` (lookup, ``--help``
    listing, "did you mean" suggestions), so a mapping that imports on ``__getitem__`` makes
    the whole CLI lazy without overriding them.
    """

    def __init__(self, table: dict[str, str]) -> None:
        self._table = dict(table)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in self._table:
                raise KeyError(name)
            self._built[name] = _build_command(name, self._table[name])
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command
        self._table.setdefault(name, "")

    def __delitem__(self, name: str) -> None:
        del self._table[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


def _build_command(name: str, module_name: str) -> Any:
    """The Click command ``name`` from ``commands.<module_name>``, built as ``add_typer`` on
    the root app would build it (plain Click help: ``rich_markup_mode=None``)."""
    module = importlib.import_module(f"commands.{module_name}")
    holder = typer.Typer(rich_markup_mode=None, add_completion=False, pretty_exceptions_enable=False)
    is_group = module.app.registered_callback is not None or len(module.app.registered_commands) > 1
    holder.add_typer(module.app, name=name if is_group else None)
    return typer.main.get_group(holder).commands[name]


class SigmaxGroup(TyperGroup):
    """Click group whose ``invoke`` is the single place errors become exit codes.

    A :class:`SigmaxError` prints ``error: <cause>; <fix>.`` on stderr and exits with the
    error's code; any other exception prints one line and exits 70. With ``-v`` the
    traceback follows. Ctrl-C exits 130. Its commands are :data:`COMMANDS`, loaded lazily.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lazy = LazyCommands(COMMANDS)
        for name, command in self.commands.items():  # any command registered on the root app itself
            lazy[name] = command
        self.commands = lazy

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (Exit, Abort, TyperException):  # Typer's own (usage errors, --help, exit)
            raise
        except SigmaxError as exc:
            if exc.details:  # e.g. a user strategy's own traceback: it is their code, so it is shown
                sys.stderr.write(exc.details.rstrip("\n") + "\n")
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
    add_completion=True,  # --install-completion / --show-completion: Click's lazy completion, nothing imported up front
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


def main() -> None:
    """Console-script entry point (``sigmax``)."""
    app(prog_name="sigmax")


if __name__ == "__main__":  # pragma: no cover
    main()
