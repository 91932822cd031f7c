"""Strategies: the :class:`~sigmax_cli.strategies.base.Strategy` interface and its factory.

``--strategy`` values: ``rules`` (:class:`~sigmax_cli.strategies.rules.RuleStrategy`) or
``rl:MODEL.zip`` (a policy trained with ``sigmax train-rl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sigmax_cli.errors import ConfigError

if TYPE_CHECKING:
    from sigmax_cli.settings import Settings, StrategySettings
    from sigmax_cli.strategies.base import Strategy


def load_strategy(spec: str, settings: Settings | StrategySettings | None = None) -> Strategy:
    """Build the strategy named by ``spec``.

    Args:
        spec: ``"rules"`` or ``"rl:PATH"`` (a model zip written by ``sigmax train-rl``).
        settings: the invocation's :class:`~sigmax_cli.settings.Settings` or just its
            ``strategy`` section; defaults when ``None``.

    Raises:
        ConfigError: unknown spec, missing RL model, or an RL model that is corrupt, foreign,
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
    raise ConfigError(f"unknown strategy {spec!r}", "use rules or rl:MODEL.zip")
