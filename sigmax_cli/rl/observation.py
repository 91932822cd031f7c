"""The observation of the RL policy, shared by the training environment
(:class:`~sigmax_cli.rl.env.TradingEnv`) and the trading strategy
(:class:`~sigmax_cli.rl.strategy.RLStrategy`), so both build it the same way.

Float32, shape ``(window * F + 3,)``: the normalised features of the last ``window`` bars
(oldest first, row-major ``(window, F)``; :mod:`sigmax_cli.rl.features`), then the account
state :data:`STATE_FEATURES`: ``position`` (1.0 long, 0.0 flat), unrealised P&L
``ln(close / avg_cost)`` with the fee-inclusive average cost, clipped like the features
(0 when flat), and time in position ``tanh(bars_held / window)``.
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces

STATE_FEATURES = ("position", "unrealized_pnl", "time_in_position")


def observation_size(window: int, n_features: int) -> int:
    """Length of the flat observation vector."""
    return window * n_features + len(STATE_FEATURES)


def observation_space(window: int, n_features: int, clip: float) -> spaces.Box:
    """The environment's (and the trivial benchmark environment's) observation space."""
    low = np.full(observation_size(window, n_features), -clip, dtype=np.float32)
    high = np.full_like(low, clip)
    low[-3], high[-3] = 0.0, 1.0     # position
    low[-1], high[-1] = 0.0, 1.0     # time in position
    return spaces.Box(low=low, high=high, dtype=np.float32)


def window_matrix(features: np.ndarray, window: int) -> np.ndarray:
    """Row ``t - window + 1`` holds bars ``t - window + 1 .. t`` flattened row-major.

    Args:
        features: normalised features, shape ``(n, F)``.
    Returns:
        shape ``(n - window + 1, window * F)`` float32 (empty when ``n < window``).
    """
    n, f = features.shape
    if n < window:
        return np.empty((0, window * f), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(features, (window, f))[:, 0]
    return np.ascontiguousarray(view.reshape(n - window + 1, window * f), dtype=np.float32)


def account_state(position: bool, close: float, avg_cost: float, bars_held: float, window: int,
                  clip: float) -> tuple[float, float, float]:
    """``(position, unrealised log P&L, time in position)`` as the observation holds them."""
    if not position or avg_cost <= 0.0:
        return 0.0, 0.0, 0.0
    upnl = max(-clip, min(clip, math.log(close / avg_cost)))
    return 1.0, upnl, math.tanh(bars_held / window)
