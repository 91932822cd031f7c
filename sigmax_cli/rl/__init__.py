"""Reinforcement-learning policies: environment, features, training, evaluation, model files.

Nothing heavy is imported here: gymnasium, torch and stable-baselines3 (the ``rl`` extra)
load with the submodules, which only ``sigmax train-rl`` and ``--strategy rl:MODEL.zip``
import. :func:`require_extra` turns their absence into one clear sentence.
"""

from __future__ import annotations

from sigmax_cli.errors import ConfigError

EXTRA_MODULES = ("gymnasium", "torch", "stable_baselines3")


def require_extra(what: str = "RL policies") -> None:
    """Import the ``rl`` extra's libraries, or explain how to install them.

    Raises:
        ConfigError: gymnasium, torch or stable-baselines3 is not installed.
    """
    import importlib

    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ConfigError(f"{what} need {name}, which is not installed (the rl extra)",
                              "install it with `pip install torch==2.13.0` then `pip install -e '.[rl]'`") from None
