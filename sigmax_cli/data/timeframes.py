"""Candle timeframes as ccxt spells them (``1m``, ``5m``, ``1h``, ``4h``, ``1d``, ``1w``)."""

from __future__ import annotations

import re

from sigmax_cli.errors import ConfigError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RE = re.compile(r"^(\d+)([smhdw])$")
MS_PER_YEAR = 365 * 86_400_000  # crypto trades every day of the year


class UnknownTimeframe(ConfigError, ValueError):
    """A timeframe string sigmax cannot interpret."""


def timeframe_to_ms(timeframe: str) -> int:
    """Length of one bar in milliseconds, e.g. ``"1h"`` -> ``3_600_000``.

    Raises:
        UnknownTimeframe: not ``<count><s|m|h|d|w>`` (months are not supported).
    """
    match = _RE.match(timeframe.strip()) if isinstance(timeframe, str) else None
    if not match or int(match.group(1)) == 0:
        raise UnknownTimeframe(
            f"unknown timeframe {timeframe!r}", "use a count and a unit such as 1m, 5m, 1h, 4h or 1d"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def bars_per_year(timeframe: str) -> float:
    """Bars in a 365-day year, the annualisation factor for per-bar returns."""
    return MS_PER_YEAR / timeframe_to_ms(timeframe)
