"""A strategy named by its ``--strategy`` spec: build it (:func:`load_strategy`) and check it
(:func:`check_spec`, ``sigmax strategy check``).

``--strategy`` values: ``rules`` (:class:`~sigmax_cli.strategies.rules.RuleStrategy`),
``rl:MODEL.zip`` (a policy trained with ``sigmax train-rl``,
:class:`~sigmax_cli.rl.strategy.RLStrategy`), or a user strategy: ``PATH.py:ClassName``,
``package.module:ClassName`` or the name of an installed plugin (entry-point group
``sigmax.strategies``), see :mod:`sigmax_cli.strategies.user`.

This module sits above both :mod:`sigmax_cli.strategies` and :mod:`sigmax_cli.rl` (which
builds on the strategies' indicators and rule baseline), so neither package imports the
other back. torch and stable-baselines3 still load only on the ``rl:`` path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmax_cli.data.candles import discover, load_discovered
from sigmax_cli.errors import ConfigError, DataError
from sigmax_cli.rl import require_extra
from sigmax_cli.settings import Settings
from sigmax_cli.strategies.base import Strategy
from sigmax_cli.strategies.check import DEFAULT_TOLERANCE, CheckReport, _cut, check_strategy
from sigmax_cli.strategies.rules import RuleStrategy
from sigmax_cli.strategies.user import load_user_strategy

if TYPE_CHECKING:
    from sigmax_cli.settings import StrategySettings


def load_strategy(spec: str, settings: Settings | StrategySettings | None = None) -> Strategy:
    """Build the strategy named by ``spec``.

    Args:
        spec: ``"rules"``, ``"rl:PATH"`` (a model zip written by ``sigmax train-rl``), or a
            user strategy (``PATH.py:ClassName``, ``package.module:ClassName``, a plugin name).
        settings: the invocation's :class:`~sigmax_cli.settings.Settings` or just its
            ``strategy`` section; defaults when ``None``.

    Raises:
        ConfigError: unknown spec; a user strategy that cannot be loaded or whose parameters
            are unknown or ill-typed (:func:`~sigmax_cli.strategies.user.load_user_strategy`);
            missing RL model, or an RL model that is corrupt, foreign,
            without metadata, or needs a sentiment file that is missing (see
            :class:`~sigmax_cli.rl.strategy.RLStrategy`).
    """
    text = spec.strip()
    section = settings.strategy if isinstance(settings, Settings) else settings
    if text.lower() == "rules":
        return RuleStrategy(section)
    if text.lower().startswith("rl:"):
        raw = text[3:].strip()
        if not raw:
            raise ConfigError("the rl strategy needs a model path", "pass --strategy rl:MODEL.zip")
        model = Path(raw).expanduser()
        if not model.exists():
            raise ConfigError(
                f"the rl strategy needs a model trained with `sigmax train-rl`, and {model} "
                "does not exist",
                "train one first or pass --strategy rules",
            )
        require_extra("rl strategies")
        from sigmax_cli.rl.strategy import RLStrategy  # torch / stable-baselines3 only on this path

        return RLStrategy(model, settings if hasattr(settings, "rl") else None)
    if not text:
        raise ConfigError("--strategy is empty", "use rules, rl:MODEL.zip or PATH.py:ClassName")
    return load_user_strategy(text, getattr(section, "tables", None))


def check_spec(settings: Any, spec: str, data: Any, symbol: str | None = None, *, bars: int | None = 5000,
               tolerance: float = DEFAULT_TOLERANCE, checkpoints: int = 8) -> CheckReport:
    """Load the strategy ``spec`` with ``settings`` and the candles of one symbol from ``data``
    (a file, or a directory in freqtrade's layout at ``settings.timeframe``), and check it.

    Args:
        symbol: which symbol of a directory; ``None`` = the first file found.
        bars: check the last ``bars`` candles only (``None``: all); at least 50.
        tolerance, checkpoints: see :func:`~sigmax_cli.strategies.check.check_strategy`.

    Raises:
        ConfigError: bad spec, parameters, ``bars`` or ``tolerance``.
        DataError: missing or unreadable candles.
        StrategyCodeError: the strategy's ``features`` raised on the data.
    """
    if not (math.isfinite(tolerance) and 0 < tolerance < 1):
        raise ConfigError(f"--tolerance {tolerance:g} is not a fraction between 0 and 1", "pass e.g. 1e-6")
    if bars is not None and bars < 50:
        raise ConfigError(f"--bars {bars} is too few to measure a warm-up", "pass at least 50")
    strategy = load_strategy(spec, settings)
    path = Path(data)
    files = discover(path, [symbol] if symbol else None, settings.timeframe)
    candles = load_discovered(path, files[0], symbol, settings.timeframe)
    if bars is not None and len(candles) > bars:
        candles = _cut(candles, len(candles) - bars, len(candles))
    if len(candles) < 50:
        raise DataError(f"{files[0]} has {len(candles)} candles, too few to check a strategy",
                        "give at least 50 bars")
    return check_strategy(strategy, candles, tolerance=tolerance, checkpoints=checkpoints)
