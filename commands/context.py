"""What the root callback hands to every command through ``ctx.obj``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from sigmax_cli.settings import Settings


@dataclass
class AppContext:
    """Global options of one invocation, and the settings built from them on demand."""

    home: Path | None = None
    profile: str | None = None
    env_file: Path | None = None
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose
    no_color: bool = False
    _settings: Settings | None = field(default=None, repr=False)
    warned: list[str] = field(default_factory=list)  # warnings already printed in this invocation

    @property
    def console(self) -> Console:
        """Human output on stdout (rich; plain when not a terminal; honours NO_COLOR)."""
        from rich.console import Console

        return Console(no_color=self.no_color or None, highlight=False, soft_wrap=False)

    @property
    def err_console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, no_color=self.no_color or None, highlight=False)

    def settings(self, overrides: dict[str, Any] | None = None, env_file: Path | None = None,
                 home_must_be_dir: bool = False) -> Settings:
        """Load the settings once (command-line ``overrides`` take precedence).

        Also installs the log filter that masks every secret the settings hold, and prints
        the env file's warnings (a keys file others may read) once on stderr.

        Raises:
            ConfigError: as :func:`load_settings`; and, with ``home_must_be_dir`` (the
                commands that trade or read the ledger in it), a state directory that exists
                but is not a directory. ``health`` grades that CRITICAL instead, and ``panic``
                still tries Redis.
        """
        from sigmax_cli.logs import mask_secrets
        from sigmax_cli.settings import load_settings, secret_values

        warnings: list[str] = []
        self._settings = load_settings(
            profile=self.profile,
            home=self.home,
            env_file=env_file or self.env_file,
            overrides=overrides,
            warnings=warnings,
        )
        if home_must_be_dir:
            from sigmax_cli.files import check_state_dir

            check_state_dir(self._settings.home)
        for warning in warnings:  # every command that reads an env file says so, on stderr
            if warning not in self.warned:
                self.warned.append(warning)
                if self.verbosity >= 0:
                    self.err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
        mask_secrets(secret_values(self._settings))
        return self._settings


def obj(ctx: typer.Context) -> AppContext:
    """The :class:`AppContext` of ``ctx`` (a default one when a test invokes a sub-app)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj


def stdout_is_terminal() -> bool:
    """Whether human output goes to a terminal, as rich decides it (``TTY_COMPATIBLE`` and
    ``FORCE_TERMINAL`` override the isatty test), without importing rich."""
    import os

    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    if os.environ.get("FORCE_TERMINAL", "") != "":
        return True
    return sys.stdout.isatty()


def print_json(document: Any) -> None:
    """Write one JSON document on stdout and nothing else (for ``--json``)."""
    sys.stdout.write(json.dumps(document, default=_json_default, allow_nan=False) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
