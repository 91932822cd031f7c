"""Option spellings shared by several commands, freqtrade's among them.

freqtrade users type ``-p BTC/USDT ETH/USDT`` (argparse ``nargs='+'``), ``-i 1h``,
``--datadir DIR`` and ``--timerange 20210101-20210301``. The commands that take symbols accept
``--symbols``, ``-p`` and ``--pairs`` as one option whose value may list symbols separated by
commas, spaces or both; :class:`PairsCommand` lets the list run over several arguments, as
freqtrade's does, in commands without positional arguments.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperCommand

PAIRS_OPTIONS = ("--symbols", "-p", "--pairs")
"""Every spelling of the symbols option."""
_SPLIT = re.compile(r"[\s,]+")


def split_symbols(text: str | None) -> list[str] | None:
    """``"BTC/USDT, eth/usdt XRP/USDT"`` -> ``["BTC/USDT", "ETH/USDT", "XRP/USDT"]``.

    Commas, spaces or both separate symbols; they are upper-cased and repeats dropped (first
    kept). ``None`` (the option not given) gives ``None``: the command's default.

    Raises:
        ConfigError: the value names no symbol at all (``""``, ``","``).
    """
    if text is None:
        return None
    out: list[str] = []
    for part in _SPLIT.split(text.strip()):
        symbol = part.strip().upper()
        if symbol and symbol not in out:
            out.append(symbol)
    if not out:
        from sigmax_cli.errors import ConfigError

        raise ConfigError(f"--symbols {text!r} names no symbol",
                          "give e.g. --symbols BTC/USDT,ETH/USDT (or -p BTC/USDT ETH/USDT), or leave the option out")
    return out


def join_pair_lists(args: list[str]) -> list[str]:
    """Command-line arguments with every ``-p A B C`` (any spelling of the symbols option)
    rewritten as ``-p A,B,C``: the arguments after the option's value, up to the next one that
    starts with ``-``, are more symbols. ``--`` ends the rewriting."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        out.append(arg)
        i += 1
        if arg == "--":
            out.extend(args[i:])
            break
        if arg in PAIRS_OPTIONS:
            if i >= len(args) or args[i].startswith("-"):
                continue  # no value: Click reports it as it would
            out.append(args[i])  # the option's own value
            i += 1
        elif not (arg.startswith(tuple(f"{o}=" for o in PAIRS_OPTIONS if o.startswith("--")))
                  or (arg.startswith("-p") and not arg.startswith("--") and len(arg) > 2)):
            continue
        while i < len(args) and not args[i].startswith("-"):
            out[-1] = f"{out[-1]},{args[i]}"
            i += 1
    return out


class PairsCommand(TyperCommand):
    """A Typer command whose symbols option takes freqtrade's space-separated list
    (``-p BTC/USDT ETH/USDT``). Only for commands without positional arguments: there, any
    bare word after the list would be an error anyway."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_pair_lists(list(args)))
