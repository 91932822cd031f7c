"""Strategies: the :class:`~sigmax_cli.strategies.base.Strategy` interface and its factory.

``--strategy`` values: ``rules`` (:class:`~sigmax_cli.strategies.rules.RuleStrategy`),
``rl:MODEL.zip`` (a policy trained with ``sigmax train-rl``), or a user strategy:
``PATH.py:ClassName``, ``package.module:ClassName`` or the name of an installed plugin
(entry-point group ``sigmax.strategies``), see :mod:`sigmax_cli.strategies.user`.

What a user strategy file imports lives here: ``from sigmax_cli.strategies import
BaseStrategy, Signal`` (also ``Bar``, ``Candles``, ``PositionView``, ``indicators``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sigmax_cli.data.candles import Candles
from sigmax_cli.errors import ConfigError
from sigmax_cli.model import Bar
from sigmax_cli.strategies import indicators
from sigmax_cli.strategies.base import PositionView, Signal, Strategy
from sigmax_cli.strategies.user import BaseStrategy

if TYPE_CHECKING:
    from sigmax_cli.settings import Settings, StrategySettings

__all__ = ["Bar", "BaseStrategy", "Candles", "PositionView", "Signal", "Strategy", "indicators", "load_strategy"]


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
            :class:`~sigmax_cli.strategies.rl.RLStrategy`).
    """
    text = spec.strip()
    if text.lower() == "rules":
        from sigmax_cli.strategies.rules import RuleStrategy

        section = getattr(settings, "strategy", settings)
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
        from sigmax_cli.rl import require_extra

        require_extra("rl strategies")
        from sigmax_cli.strategies.rl import RLStrategy  # torch / stable-baselines3 only on this path

        return RLStrategy(model, settings if hasattr(settings, "rl") else None)
    if not text:
        raise ConfigError("--strategy is empty", "use rules, rl:MODEL.zip or PATH.py:ClassName")
    from sigmax_cli.strategies.user import load_user_strategy

    section = getattr(settings, "strategy", settings)
    return load_user_strategy(text, getattr(section, "tables", None))
