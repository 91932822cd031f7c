"""Immutable views of a running engine, for panels, progress lines and tests.

The engine builds an :class:`EngineSnapshot` when an observer asks for one; the UI turns
it into renderables with pure functions (``sigmax_cli.ui.panels``). Money in quote
currency, amounts in base units, times in UTC ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MarketRow:
    symbol: str
    last_price: float
    indicators: dict[str, float]  # e.g. {"rsi": 41.2, "macd_hist": -3.1, "ema_trend": 35210.0}


@dataclass(frozen=True)
class PositionRow:
    symbol: str
    qty: float
    avg_price: float
    last_price: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True)
class OrderRow:
    client_order_id: str
    symbol: str
    side: str
    type: str
    price: float | None
    amount: float
    filled: float
    status: str


@dataclass(frozen=True)
class FillRow:
    ts_ms: int
    symbol: str
    side: str
    price: float
    amount: float
    fee: float
    liquidity: str


@dataclass(frozen=True)
class RiskRow:
    equity: float
    peak_equity: float
    drawdown_pct: float          # percent below peak, >= 0
    daily_pnl: float             # quote, since the UTC day's first bar
    daily_loss_limit: float      # quote, positive number
    trading_state: str           # ACTIVE | REDUCING | HALTED
    state_reason: str | None
    killswitch: str | None = None  # ENGAGED | RELEASED | UNKNOWN (None: not watched)
    killswitch_detail: str = ""    # why UNKNOWN, or the engage's reason
    exits_blocked: tuple[str, ...] = ()  # symbols whose exits keep being rejected (risk rule exit_blocked)


@dataclass(frozen=True)
class EventRow:
    ts_ms: int
    level: str
    kind: str
    message: str


@dataclass(frozen=True)
class EngineSnapshot:
    """Everything the dashboard shows, at one bar."""

    mode: str                    # paper | testnet | live
    profile: str
    run_id: str
    strategy: str
    bar_ms: int | None           # open time of the newest bar processed
    bars_done: int
    bars_total: int | None       # None for a live feed
    speed: float                 # replay multiplier, 0 = as fast as possible
    bars_per_second: float
    market: list[MarketRow] = field(default_factory=list)
    positions: list[PositionRow] = field(default_factory=list)
    open_orders: list[OrderRow] = field(default_factory=list)
    fills: list[FillRow] = field(default_factory=list)        # newest last
    risk: RiskRow | None = None
    events: list[EventRow] = field(default_factory=list)      # newest last
    orders_total: int = 0        # orders submitted since the run started
    fills_total: int = 0         # fills since the run started (``fills`` holds the recent ones)
