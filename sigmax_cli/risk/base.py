"""Risk vocabulary: trading state, the account view rules read, denials and trips.

Trading states after nautilus_trader's risk engine: ``ACTIVE`` lets every order through
the rules; ``REDUCING`` lets only exposure-reducing orders through (spot: sells);
``HALTED`` lets nothing through. Money in quote currency, times UTC ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, Decimal
from enum import StrEnum
from typing import Protocol

from sigmax_cli.model import Denial, OrderRequest


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"

    @property
    def severity(self) -> int:
        return {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}[self.value]


@dataclass(frozen=True)
class RiskView:
    """The account as the rules see it at one moment.

    Attributes:
        equity: mark-to-market equity, quote.
        peak_equity: highest equity of the run so far, quote.
        day_start_equity: equity at the start of the current UTC day, quote.
        now_ms: time of the decision (bar close time in a replay), UTC ms.
        position_notional: quote notional per symbol at last prices.
        open_orders: active orders across symbols.
        week_start_equity: equity at the start of the ISO week (Monday 00:00 UTC), quote;
            0 when unknown.
        losing_streak: losing round trips in a row (net of fees), across symbols.
        last_loss_ms: per symbol, when its last losing round trip closed (UTC ms).
        orders_last_minute: orders submitted in the 60 s before ``now_ms``.
        api_errors_last_minute: exchange errors the broker saw in the 60 s before ``now_ms``.
        last_slippage_bps: adverse slippage of the newest fill against the price the order
            was decided on, basis points (positive = worse), ``None`` before any fill.
        data_age_ms: how overdue the market data is (0 when fresh), UTC ms.
        sentiment: overall news sentiment in [-1, 1] from research signals, ``None`` when
            no signal is available.
        exits_blocked: symbols whose exit orders were rejected
            ``risk.max_consecutive_rejections`` times in a row -> the rejection's sentence.
    """

    equity: float
    peak_equity: float
    day_start_equity: float
    now_ms: int
    position_notional: dict[str, float] = field(default_factory=dict)
    open_orders: int = 0
    week_start_equity: float = 0.0
    losing_streak: int = 0
    last_loss_ms: dict[str, int] = field(default_factory=dict)
    orders_last_minute: int = 0
    api_errors_last_minute: int = 0
    last_slippage_bps: float | None = None
    data_age_ms: int = 0
    sentiment: float | None = None
    exits_blocked: dict[str, str] = field(default_factory=dict)

    @property
    def total_notional(self) -> float:
        return sum(self.position_notional.values())


EXACT = Context(prec=80)
"""Decimal context wide enough that sums and products of a few float reprs (17 significant
digits each) are exact (the default context keeps 28 digits and would round them)."""


def exact(value: float) -> Decimal:
    """``value`` as the decimal number its shortest repr names (``0.07`` -> ``Decimal("0.07")``,
    not the binary float's ``0.07000000000000000666...``): the number a user wrote in a
    profile, or an amount/price put on the market's decimal step/tick."""
    return Decimal(repr(float(value)))


def order_notional(request: OrderRequest) -> Decimal:
    """The request's value in quote, exact: amount times its limit price (else its reference
    price), each as :func:`exact`.

    Why not ``request.notional``: the float product rounds, and rounds up as often as down
    (``0.07 * 100000`` is ``7000.000000000001``), so an order sized exactly at a limit would
    read as above it; an absolute epsilon to hide that is too wide for small quote amounts and
    narrower than one float step above ~1e7. In decimal the product of an amount on its step
    and a price on its tick is exact: at the limit it equals it, one amount step above it
    exceeds it, at any magnitude."""
    price = request.price if request.price is not None else request.reference_price
    return EXACT.multiply(exact(request.amount), exact(price))


def increases_exposure(request: OrderRequest) -> bool:
    """Spot, long-only: a buy that is not reduce-only adds exposure."""
    return request.side == "buy" and not request.reduce_only


@dataclass(frozen=True)
class Trip:
    """A rule moved trading to a stricter state.

    Attributes:
        state: REDUCING or HALTED.
        resume: how trading resumes: ``"next_utc_day"``, ``"cooldown"`` or ``"operator"``.
        until_ms: when it resumes by itself (``None`` for operator).
    """

    rule: str
    state: TradingState
    reason: str
    value: float
    limit: float
    resume: str
    until_ms: int | None = None


class Rule(Protocol):
    """A risk rule: a pre-trade check, a state trip on each mark, or both.

    Optional class flags: ``pre_trade = False`` (``check_order`` never denies) and
    ``trips = False`` (``on_mark`` never trips) let the guard skip the call.
    """

    name: str

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        """Refuse ``request`` (return a Denial) or let it pass (``None``)."""
        ...

    def on_mark(self, view: RiskView) -> Trip | None:
        """After equity is marked: trip trading into a stricter state, or ``None``."""
        ...


class OrderRule:
    """Base of a pre-trade rule: it may deny orders, it never trips the trading state."""

    name: str
    trips = False  # the guard skips ``on_mark``

    def on_mark(self, view: RiskView) -> Trip | None:
        return None


class TripRule:
    """Base of a rule that trips the trading state after a mark and never denies an order
    itself (the state gate does that)."""

    name: str
    pre_trade = False  # the guard skips ``check_order``

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        return None


def pct_below(reference: float, value: float) -> float | None:
    """How far ``value`` is below ``reference``, in percent of ``reference`` (negative when
    above); ``None`` when there is no positive reference. Equity loss from a day's or week's
    start, or drawdown from the peak (Magdon-Ismail & Atiya 2004) with the peak as reference."""
    if reference <= 0:
        return None
    return (reference - value) / reference * 100.0


class ConditionRule(Rule, Protocol):
    """A rule whose trip (``resume == "condition"``) ends when the condition clears."""

    def cleared(self, view: RiskView) -> bool:
        """True when trading may resume (e.g. the data is fresh again)."""
        ...
