"""A gymnasium trading environment over real candles, with the paper broker's costs.

One symbol, spot, long-only. At each step the agent sees the closed bar ``t`` and picks
an action: ``0`` hold, ``1`` go long, ``2`` go flat (:data:`ACTIONS`). The environment then
plays the bar ``t + 1`` exactly as ``sigmax paper`` would with ``position_fraction = 1``:

* **Orders** are sized like :meth:`sigmax_cli.engine.Engine._act`: going long spends the
  free quote divided by ``(1 + slippage + MARKET_BUY_BUFFER) * (1 + fee)`` at the close of
  bar ``t`` (truncated to the amount step), going flat sells the whole position; orders
  worth less than ``DUST_NOTIONAL_FRACTION`` of the initial equity are not sent; "long"
  while long and "flat" while flat change nothing.
* **Fills** follow :meth:`sigmax_cli.brokers.paper.PaperBroker._match` for market orders:
  at the next bar's open moved against us by ``slippage_bps`` (buy ``open * (1 + s)``,
  sell ``open * (1 - s)``), taker fee ``price * amount * taker_fee`` charged in quote, at
  most ``participation * volume`` base units per bar (the rest fills on later bars; no
  new order while one is open, as in the engine), a buy never spending more than its
  reservation ``amount * close * (1 + s + buffer) * (1 + fee)``.
* **Reward** of a step is the change of log equity from the close of ``t`` to the close of
  ``t + 1``, ``ln(E[t+1] / E[t])`` with ``E = quote + base * close``, so fees and slippage
  are in it. The sum over an episode is ``ln(E_end / E_start)``.

``tests/test_rl_env.py`` checks the equity of a scripted action sequence against the real
:class:`~sigmax_cli.brokers.paper.PaperBroker` fed the same orders.

Observation (:mod:`sigmax_cli.rl.observation`), float32, shape ``(window * F + 3,)``: the
normalised features of the last ``window`` bars, then the account state: ``position``,
unrealised P&L ``ln(close / avg_cost)`` with the fee-inclusive average cost of
:class:`sigmax_cli.portfolio.Portfolio` (0 when flat), and time in position
``tanh(bars_held / window)`` with ``bars_held = (ts - opened_ms) / timeframe + 1``.

Episodes: with ``episode_bars`` set, each reset draws a start uniformly from the segment
with the environment's seeded generator (``reset(seed=...)``) and the episode is
truncated after ``episode_bars`` steps; with ``episode_bars=None`` an episode walks the
whole segment from its first bar (validation and test). Same seed, same episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sigmax_cli.brokers.base import MARKET_BUY_BUFFER_DEFAULT
from sigmax_cli.engine import DUST_NOTIONAL_FRACTION
from sigmax_cli.markets import DEFAULT_STEP, MarketRules
from sigmax_cli.rl.observation import account_state, observation_size, observation_space, window_matrix

ACTIONS = ("hold", "long", "flat")
HOLD, LONG, FLAT = 0, 1, 2
_EPS = 1e-9  # quote reservations: the float mirror of the paper broker's exact comparison


def _base(*terms: float) -> float:
    """A sum of base quantities, computed in decimal and returned as a float, so that whole
    market steps stay whole (234.45276870 - 0.0 + ... never becomes 234.45276869999...),
    as the paper broker keeps them (it books them as Decimal)."""
    total = Decimal(0)
    for term in terms:
        total += Decimal(repr(term))
    return float(total)


@dataclass(frozen=True)
class CostModel:
    """Fees and fill rules, the paper broker's (``settings.paper``).

    Attributes:
        taker_fee: fraction of notional charged on every market fill (0.001 = 0.1 %).
        slippage_bps: adverse move of market fills from the bar open, basis points.
        participation: fraction (0, 1] of a bar's volume fillable per bar.
        buy_buffer: extra fraction of quote reserved for a market buy
            (:data:`~sigmax_cli.brokers.base.MARKET_BUY_BUFFER_DEFAULT`).
        amount_step: amount precision, base units (1e-8 without market metadata).
    """

    taker_fee: float = 0.001
    slippage_bps: float = 5.0
    participation: float = 0.1
    buy_buffer: float = MARKET_BUY_BUFFER_DEFAULT
    amount_step: float = DEFAULT_STEP

    @classmethod
    def from_settings(cls, paper: Any) -> CostModel:
        """From a :class:`~sigmax_cli.settings.PaperSettings`."""
        return cls(taker_fee=paper.taker_fee, slippage_bps=paper.slippage_bps, participation=paper.participation)

    def to_dict(self) -> dict[str, float]:
        return {"taker_fee": self.taker_fee, "slippage_bps": self.slippage_bps, "participation": self.participation,
                "buy_buffer": self.buy_buffer, "amount_step": self.amount_step}


@dataclass(frozen=True)
class MarketSeries:
    """The bars the environment trades: open times (UTC ms), opens and closes (quote),
    volumes (base units), each shape ``(n,)``, and the bar length ``tf_ms``."""

    ts: np.ndarray
    open: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    tf_ms: int

    @classmethod
    def from_candles(cls, candles: Any) -> MarketSeries:
        return cls(candles.ts, candles.open, candles.close, candles.volume, candles.tf_ms)

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass
class EnvFill:
    """One fill in the environment: bar open time (UTC ms), side, price (quote), amount
    (base), fee (quote)."""

    ts_ms: int
    side: str
    price: float
    amount: float
    fee: float


@dataclass
class EnvOrder:
    """An order the environment sent: side, amount (base units, as the broker holds it),
    the close it was sized at (quote, the engine's ``reference_price``), its creation
    time (the close time of the decision bar, UTC ms), and ``requested``, the amount the
    engine would put in its ``OrderRequest``. ``reserved`` (quote for a buy, base for a
    sell) and ``filled`` (base units) change while it fills."""

    side: str
    amount: float
    reference_price: float
    created_ms: int
    reserved: float
    requested: float
    filled: float = 0.0

    @property
    def remaining(self) -> float:
        return max(_base(self.amount, -self.filled), 0.0)


class TradingEnv(gym.Env):
    """See the module docstring.

    Args:
        market: the bars (the whole series; features and prices share its index).
        features: normalised features, shape ``(n, F)`` float32, finite from
            ``segment[0] - window + 1`` on.
        window: bars per observation.
        segment: ``(lo, hi)`` bar indices: decisions on bars ``lo .. hi - 2``, the last
            step plays bar ``hi - 1``.
        costs: fee and fill model.
        initial_equity: starting quote balance.
        episode_bars: steps per random-start episode; ``None`` walks the whole segment.
        clip: bound of the normalised features (for the observation space).

    Raises:
        ValueError: the segment is too short, starts before a full window, or its
            windows hold non-finite features.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, market: MarketSeries, features: np.ndarray, window: int, segment: tuple[int, int],
                 costs: CostModel | None = None, initial_equity: float = 10_000.0, episode_bars: int | None = None,
                 clip: float = 10.0) -> None:
        super().__init__()
        lo, hi = segment
        n = len(market)
        if features.shape[0] != n:
            raise ValueError("features and market have different lengths")
        if not (window - 1 <= lo and lo < hi - 1 and hi <= n):
            raise ValueError(f"segment {segment} does not fit {n} bars with a {window}-bar window")
        if not np.isfinite(features[lo - window + 1: hi]).all():
            raise ValueError("the segment's observation windows hold non-finite features")
        self.market = market
        self.window = window
        self.lo, self.hi = lo, hi
        self.costs = costs or CostModel()
        self.initial_equity = float(initial_equity)
        self.clip = clip
        steps = hi - 1 - lo
        self.episode_bars = None if episode_bars is None else max(1, min(int(episode_bars), steps))
        self.observation_space = observation_space(window, features.shape[1], clip)
        self._obs_size = observation_size(window, features.shape[1])
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._windows = window_matrix(np.asarray(features, dtype=np.float32), window)
        self._ts = market.ts.tolist()
        self._open = market.open.tolist()
        self._close = market.close.tolist()
        self._volume = market.volume.tolist()
        self._tf = market.tf_ms
        self._rules = MarketRules("ENV/QUOTE", "ENV", "QUOTE", amount_step=self.costs.amount_step)
        c = self.costs
        self._slip = c.slippage_bps / 10_000.0
        self._fee = c.taker_fee
        self._buy_divisor = (1.0 + self._slip + c.buy_buffer) * (1.0 + self._fee)
        self._dust = DUST_NOTIONAL_FRACTION * self.initial_equity
        self._reset_account(lo, hi - 1)

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode (a random start when ``episode_bars`` is set): ``(obs, info)``
        with ``info = {"equity": quote, "ts_ms": open time of the first bar}``."""
        super().reset(seed=seed)
        if self.episode_bars is None:
            start, end = self.lo, self.hi - 1
        else:
            last_start = self.hi - 1 - self.episode_bars
            start = int(self.np_random.integers(self.lo, last_start + 1))
            end = start + self.episode_bars
        self._reset_account(start, end)
        return self._obs(), {"equity": self.equity, "ts_ms": self._ts[start]}

    def step(self, action):
        """Decide on bar ``t`` with ``action`` (:data:`ACTIONS`), play bar ``t + 1``:
        ``(obs, reward, terminated, truncated, info)``; reward in log equity, ``terminated``
        always False (long-only spot cannot go bust), ``truncated`` at the episode's end.

        Raises:
            ValueError: an action outside ``0..2``.
        """
        a = int(action)
        if not 0 <= a < len(ACTIONS):
            raise ValueError(f"action {action!r} is not one of {list(range(len(ACTIONS)))}")
        t = self.t
        if self._order is None and a != HOLD:
            self._decide(a, t)
        t += 1
        self.t = t
        if self._order is not None:
            self._fill(t)
        before = self.equity
        self.equity = self.quote_free + self.quote_used + (self.base_free + self.base_used) * self._close[t]
        reward = math.log(self.equity / before)
        truncated = t >= self._end
        return self._obs(), reward, False, truncated, {"equity": self.equity, "ts_ms": self._ts[t]}

    # -- account -----------------------------------------------------------------------------
    # The account mirrors the paper broker's books (free and reserved quote and base, in
    # the same order of float operations, so that amounts truncated to the step agree to
    # the last unit) and the engine's Portfolio (position quantity, fee-inclusive average
    # cost, opening time).
    def _reset_account(self, start: int, end: int) -> None:
        self.t = start
        self._start = start
        self._end = end
        self.quote_free = self.initial_equity   # quote not reserved
        self.quote_used = 0.0                   # quote reserved by an open buy
        self.base_free = 0.0                    # base units not reserved
        self.base_used = 0.0                    # base units reserved by an open sell
        self.qty = 0.0                          # Portfolio position, base units
        self.avg_cost = 0.0                     # quote per base unit, fees in
        self.opened_ms: int | None = None
        self.equity = self.initial_equity
        self._order: EnvOrder | None = None
        self.fills: list[EnvFill] = []
        self.orders: list[EnvOrder] = []

    @property
    def cash(self) -> float:
        """Quote balance, free plus reserved."""
        return self.quote_free + self.quote_used

    @property
    def base(self) -> float:
        """Base balance, free plus reserved (the broker's ``total``)."""
        return self.base_free + self.base_used

    @property
    def long(self) -> bool:
        """True while a position is held (the engine's ``opened_ms is not None``)."""
        return self.opened_ms is not None

    @property
    def start_index(self) -> int:
        """Bar index of the current episode's first observation."""
        return self._start

    def _decide(self, action: int, t: int) -> None:
        """Submit an order at the close of bar ``t`` as the engine would (module docstring)."""
        close = self._close[t]
        held = self.qty if self.long else 0.0
        if action == LONG and not self.long:
            spendable = self.quote_free / self._buy_divisor
            amount = self._rules.amount_to_precision(min(self.equity - held * close, spendable) / close)
            if amount <= 0 or amount * close < self._dust:
                return
            requested = amount
            amount = self._rules.amount_to_precision(amount)  # the broker truncates the request again
            need = min(amount * close * self._buy_divisor, self.quote_free)
            self.quote_free -= need
            self.quote_used += need
            order = EnvOrder("buy", amount, close, self._ts[t] + self._tf, need, requested)
        elif action == FLAT and self.long:
            amount = self._rules.amount_to_precision(min(held, self.base_free))
            if amount <= 0 or amount * close < self._dust:
                return
            requested = amount
            amount = self._rules.amount_to_precision(amount)
            self.base_free = _base(self.base_free, -amount)
            self.base_used = _base(self.base_used, amount)
            order = EnvOrder("sell", amount, close, self._ts[t] + self._tf, amount, requested)
        else:
            return
        self._clean()
        self._order = order
        self.orders.append(order)

    def _fill(self, u: int) -> None:
        """Match the open order against bar ``u`` (PaperBroker.on_bar/_match, market orders)."""
        order = self._order
        if order is None:
            return
        ts = self._ts[u]
        if order.created_ms > ts:
            return
        rules = self._rules
        fee_rate = self._fee
        # the volume cap in decimal, as the broker computes it (0.1 * volume in floats can sit a
        # hair below a whole step and truncate one step lower)
        capacity = Decimal(repr(self.costs.participation)) * Decimal(repr(float(self._volume[u])))
        remaining = Decimal(repr(order.remaining))
        qty = float(remaining if remaining <= capacity else rules.amount_to_decimal(max(capacity, Decimal(0))))
        if qty > 0:
            if order.side == "buy":
                px = self._open[u] * (1.0 + self._slip)
                if px * qty * (1.0 + fee_rate) > order.reserved + _EPS:
                    qty = rules.amount_to_precision(order.reserved / (px * (1.0 + fee_rate)))
            else:
                px = self._open[u] * (1.0 - self._slip)
                qty = min(qty, order.reserved)
        if qty > 0:
            notional = px * qty
            fee = notional * fee_rate
            if order.side == "buy":
                spend = min(notional + fee, order.reserved)
                order.reserved -= spend
                self.quote_used -= spend
                self.base_free = _base(self.base_free, qty)
                cost = self.avg_cost * self.qty + notional + fee
                if rules.is_flat(self.qty):  # Portfolio: flat when no whole step is held
                    self.opened_ms = ts
                self.qty = _base(self.qty, qty)
                self.avg_cost = cost / self.qty if self.qty > 0 else 0.0
            else:
                order.reserved = _base(order.reserved, -qty)
                self.base_used = _base(self.base_used, -qty)
                self.quote_free += notional - fee
                self.qty = _base(self.qty, -min(qty, self.qty))
                if rules.is_flat(self.qty):
                    self.opened_ms = None
                    if self.qty <= 0:
                        self.qty, self.avg_cost = 0.0, 0.0
            self._clean()
            order.filled = _base(order.filled, qty)
            self.fills.append(EnvFill(ts, order.side, px, qty, fee))
            if order.remaining <= 0:
                self._finish(order)
                return
        if order.side == "buy" and order.reserved <= _EPS:
            self._finish(order)  # a gap used up the reservation: the rest expires

    def _finish(self, order: EnvOrder) -> None:
        """Release what the order still reserves (PaperBroker._finish)."""
        left = order.reserved
        order.reserved = 0.0
        if left:
            if order.side == "buy":
                self.quote_used -= left
                self.quote_free += left
            else:
                self.base_used = _base(self.base_used, -left)
                self.base_free = _base(self.base_free, left)
        self._clean()
        self._order = None

    def _clean(self) -> None:
        """Float dust below zero becomes zero, as PaperBroker._check does."""
        if self.quote_free < 0.0:
            self.quote_free = 0.0
        if self.quote_used < 0.0:
            self.quote_used = 0.0
        if self.base_free < 0.0:
            self.base_free = 0.0
        if self.base_used < 0.0:
            self.base_used = 0.0

    def _obs(self) -> np.ndarray:
        t = self.t
        state = account_state(self.long, self._close[t], self.avg_cost,
                              (self._ts[t] - self.opened_ms) / self._tf + 1.0 if self.opened_ms is not None else 0.0,
                              self.window, self.clip)
        obs = np.empty(self._obs_size, dtype=np.float32)
        obs[:-3] = self._windows[t - self.window + 1]
        obs[-3:] = state
        return obs
