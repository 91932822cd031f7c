"""Held-out test of a trained policy against buy-and-hold, staying flat and the rule strategy.

All four trade the test part of the split through the same
:class:`~sigmax_cli.rl.env.TradingEnv` (same starting balance, fee, slippage and fill
rules as the paper broker), one decision per bar from its first bar to its end:

* ``rl``: the policy's deterministic action;
* ``buy_and_hold``: go long on the first bar, then hold;
* ``flat``: never trade (return 0 by construction: the reference for "doing nothing");
* ``rules``: :class:`~sigmax_cli.strategies.rules.RuleStrategy` with the profile's
  settings, its features computed causally over the whole series, its ``Signal`` mapped
  onto the environment's actions (target 1.0 -> long, 0.0 -> flat, ``None`` -> hold).

Figures per strategy (:mod:`sigmax_cli.report.metrics`): ``return_pct`` (percent, over
the part), ``sharpe`` (annualised, per-bar simple returns, risk-free 0; Sharpe 1994;
``None`` for a flat curve), ``max_drawdown_pct`` (percent below the peak), ``trades``
(round trips opened in the part, closed or still open at its end) and ``final_equity``
(quote currency).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sigmax_cli.report.metrics import bar_returns, max_drawdown, round_trips, sharpe_ratio, total_return_pct
from sigmax_cli.rl.env import FLAT, HOLD, LONG, CostModel, TradingEnv
from sigmax_cli.timeframes import bars_per_year

ENVIRONMENT_BASIS = "environment: the whole balance in every position, no risk guard"
"""What the environment's table assumes (shown with it, and in ``--json``)."""
Decide = Callable[[TradingEnv, np.ndarray], int]
"""``(env, observation) -> action``, called once per bar before the step."""


@dataclass(frozen=True)
class StrategyResult:
    """One strategy on one part; see the module docstring for units."""

    name: str
    return_pct: float
    sharpe: float | None
    max_drawdown_pct: float
    trades: int
    final_equity: float


@dataclass(frozen=True)
class Evaluation:
    """The test part (first and last bar open time, UTC ms; bars) and each strategy's result."""

    start_ms: int
    end_ms: int
    bars: int
    results: list[StrategyResult]

    def result(self, name: str) -> StrategyResult:
        return next(r for r in self.results if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"basis": ENVIRONMENT_BASIS, "start_ms": self.start_ms, "end_ms": self.end_ms, "bars": self.bars,
                "strategies": {r.name: {k: v for k, v in asdict(r).items() if k != "name"} for r in self.results}}


@dataclass
class Rollout:
    """An episode played to its end: equity curve (``ts_ms`` UTC ms, ``equity`` quote,
    shape ``(steps + 1,)`` each, starting at the initial equity) and the fills."""

    ts_ms: np.ndarray
    equity: np.ndarray
    fills: list[Any]
    reward: float


def rollout(env: TradingEnv, decide: Decide, seed: int | None = None) -> Rollout:
    """Play one episode of ``env`` with ``decide`` choosing each action."""
    obs, info = env.reset(seed=seed)
    ts, eq = [info["ts_ms"]], [info["equity"]]
    total = 0.0
    while True:
        obs, reward, terminated, truncated, info = env.step(decide(env, obs))
        total += reward
        ts.append(info["ts_ms"])
        eq.append(info["equity"])
        if terminated or truncated:
            break
    return Rollout(np.asarray(ts, dtype=np.int64), np.asarray(eq, dtype=np.float64), list(env.fills), total)


def policy_decider(policy: Any) -> Decide:
    """A :data:`Decide` from a stable-baselines3 policy (deterministic actions)."""
    from sigmax_cli.rl.model import Predictor

    predictor = Predictor(policy)
    return lambda env, obs: predictor(obs)


def segment_return(env: TradingEnv, policy: Any) -> float:
    """Sum of rewards, i.e. ``ln(E_end / E_start)``, of ``policy`` over ``env``'s segment."""
    return rollout(env, policy_decider(policy)).reward


def rules_decider(candles: Any, strategy_settings: Any) -> Decide:
    """The rule strategy as a :data:`Decide` (module docstring), positions from the environment."""
    from sigmax_cli.model import Bar
    from sigmax_cli.strategies.base import PositionView
    from sigmax_cli.strategies.rules import RuleStrategy

    strategy = RuleStrategy(strategy_settings)
    features = strategy.features(candles)
    ts, o, h, low, c, v = (a.tolist() for a in (candles.ts, candles.open, candles.high, candles.low,
                                                   candles.close, candles.volume))
    symbol = candles.symbol

    def decide(env: TradingEnv, _obs: np.ndarray) -> int:
        i = env.t
        if i < strategy.warmup:
            return HOLD
        position = PositionView(env.qty if env.long else 0.0, env.avg_cost, env.opened_ms)
        signal = strategy.on_bar(Bar(symbol, ts[i], o[i], h[i], low[i], c[i], v[i], i, features), position)
        if signal is None:
            return HOLD
        return LONG if signal.target > 0 else FLAT

    return decide


def measure(name: str, run: Rollout, timeframe: str) -> StrategyResult:
    """The figures of one rollout (module docstring)."""
    values = run.equity
    fills = [{"symbol": "X", "side": f.side, "price": f.price, "amount": f.amount, "fee": f.fee, "ts_ms": f.ts_ms}
             for f in run.fills]
    book = round_trips(fills)
    trades = len(book.closed) + sum(1 for q in book.open_qty.values() if q > 0)
    sharpe = sharpe_ratio(bar_returns(values), bars_per_year(timeframe))
    return StrategyResult(name=name, return_pct=total_return_pct(values), sharpe=sharpe,
                          max_drawdown_pct=max_drawdown(run.ts_ms, values).max_drawdown_pct, trades=trades,
                          final_equity=float(values[-1]))


def evaluate_test(dataset: Any, policy: Any, costs: CostModel, initial_equity: float,
                  strategy_settings: Any) -> Evaluation:
    """Play the test part with the policy and the three references (module docstring).

    Args:
        dataset: a :class:`~sigmax_cli.rl.dataset.Dataset`.
        policy: a stable-baselines3 policy (``model.policy``).
        costs, initial_equity: the paper account (quote currency).
        strategy_settings: :class:`~sigmax_cli.settings.StrategySettings` of the rule strategy.
    """
    lo, hi = dataset.segments["test"]

    def env() -> TradingEnv:
        return TradingEnv(dataset.market, dataset.features, dataset.window, (lo, hi), costs, initial_equity,
                          episode_bars=None, clip=dataset.normalizer.clip)

    def buy_and_hold(e: TradingEnv, _obs: np.ndarray) -> int:
        if e.t == e.start_index:
            return LONG
        return HOLD

    deciders: list[tuple[str, Decide]] = [
        ("rl", policy_decider(policy)),
        ("buy_and_hold", buy_and_hold),
        ("flat", lambda e, _obs: HOLD),
        ("rules", rules_decider(dataset.candles, strategy_settings)),
    ]
    timeframe = dataset.candles.timeframe
    results = [measure(name, rollout(env(), decide), timeframe) for name, decide in deciders]
    ts = dataset.candles.ts
    return Evaluation(int(ts[lo]), int(ts[hi - 1]), hi - lo, results)


def log_to_pct(log_return: float) -> float:
    """``ln(E1/E0)`` -> percent return ``(E1/E0 - 1) * 100``."""
    return math.expm1(log_return) * 100.0
