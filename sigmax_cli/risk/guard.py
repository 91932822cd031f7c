"""The RiskGuard: trading state plus a set of rules, in front of every broker.

Every order passes :meth:`RiskGuard.check` inside :class:`GuardedBroker.submit`, the only
submit path the engine has. The state gate comes first (HALTED refuses everything,
REDUCING refuses exposure-adding orders), then every rule's pre-trade check.
:meth:`RiskGuard.evaluate` runs after each mark-to-market: rules may trip the state to
REDUCING or HALTED; the state only escalates until its resume condition is met (next UTC
day, end of a cooldown) or an operator calls :meth:`RiskGuard.release`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sigmax_cli.brokers.base import Broker
from sigmax_cli.errors import RiskBlocked
from sigmax_cli.model import Balance, Bar, BrokerUpdate, Denial, Order, OrderRequest
from sigmax_cli.risk.base import RiskView, Rule, TradingState, Trip, increases_exposure


@dataclass(frozen=True)
class Resumed:
    """Trading went back to ACTIVE: ``rule`` whose trip ended, and why."""

    rule: str
    reason: str


class RiskGuard:
    """Trading state and rules.

    Args:
        rules: rule plug-ins (see ``sigmax_cli.risk.rules``).
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.trips: dict[str, Trip] = {}  # active trips by rule; each resumes on its own terms
        self._by_name = {rule.name: rule for rule in self.rules}
        # rules say what they do (``pre_trade`` / ``trips`` class flags, default both), so the
        # per-bar loops skip what cannot fire: a replay evaluates hundreds of thousands of bars
        self._pre_trade = [r for r in self.rules if getattr(r, "pre_trade", True)]
        self._tripping = [r for r in self.rules if getattr(r, "trips", True)]

    @property
    def state(self) -> TradingState:
        """The strictest state any active trip demands (ACTIVE when none)."""
        if not self.trips:
            return TradingState.ACTIVE
        return max((t.state for t in self.trips.values()), key=lambda st: st.severity)

    @property
    def trip(self) -> Trip | None:
        """The active trip that sets the state (the strictest, then the oldest)."""
        if not self.trips:
            return None
        return max(self.trips.values(), key=lambda t: t.state.severity)

    @property
    def reason(self) -> str | None:
        trip = self.trip
        return trip.reason if trip else None

    def check(self, request: OrderRequest, view: RiskView) -> Denial | None:
        """The first reason to refuse ``request``, or ``None`` to let it through."""
        state = self.state
        if state is TradingState.HALTED:
            return Denial("trading_state", f"trading HALTED ({self.reason})")
        if state is TradingState.REDUCING and increases_exposure(request):
            return Denial("trading_state", f"trading REDUCING, only exits allowed ({self.reason})")
        for rule in self._pre_trade:
            denial = rule.check_order(request, view)
            if denial is not None:
                return denial
        return None

    def evaluate(self, view: RiskView) -> list[Trip | Resumed]:
        """End the trips whose resume time has come, then run every rule's trip check.

        A rule already tripped is not tripped again until it has resumed. Returns the
        changes in order (resumes first).
        """
        changes: list[Trip | Resumed] = []
        rules = self._by_name
        for name, trip in list(self.trips.items()):
            if trip.until_ms is not None and view.now_ms >= trip.until_ms:
                del self.trips[name]
                changes.append(Resumed(name, f"{trip.resume.replace('_', ' ')} reached"))
            elif trip.resume == "condition" and name in rules and rules[name].cleared(view):
                del self.trips[name]
                changes.append(Resumed(name, "condition cleared"))
        for rule in self._tripping:
            if rule.name in self.trips:
                continue
            trip = rule.on_mark(view)
            if trip is not None:
                self.trips[rule.name] = trip
                changes.append(trip)
        return changes

    def halt(self, rule: str, reason: str) -> Trip:
        """Halt trading now (kill switch, operator); only :meth:`release` resumes."""
        trip = Trip(rule, TradingState.HALTED, reason, 1.0, 1.0, "operator")
        self.trips[rule] = trip
        return trip

    def release(self, reason: str, rule: str | None = None) -> list[Resumed]:
        """Operator release of one rule's trip, or of every trip when ``rule`` is None."""
        names = [rule] if rule is not None else list(self.trips)
        return [Resumed(name, reason) for name in names if self.trips.pop(name, None) is not None]


class GuardedBroker:
    """A broker reachable only through the RiskGuard.

    Args:
        broker: the paper or live broker.
        guard: the RiskGuard.
        view: callable building the current :class:`RiskView` (called per submit).
    """

    def __init__(self, broker: Broker, guard: RiskGuard, view: Callable[[int], RiskView]) -> None:
        self._broker = broker
        self.guard = guard
        self._view = view

    def submit(self, request: OrderRequest, now_ms: int) -> Order:
        """Check ``request`` against the guard, then place it.

        Raises:
            RiskBlocked: the guard refused it (``.denial`` holds rule, value and limit).
            OrderRejected, InsufficientFunds: the broker refused it.
        """
        denial = self.guard.check(request, self._view(now_ms))
        if denial is not None:
            err = RiskBlocked(f"{request.symbol} {request.side} refused by {denial.rule}: {denial.reason}")
            err.denial = denial  # type: ignore[attr-defined]
            raise err
        return self._broker.submit(request, now_ms)

    def cancel(self, client_order_id: str, now_ms: int) -> Order:
        """Cancels always pass: they never add risk."""
        return self._broker.cancel(client_order_id, now_ms)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._broker.open_orders(symbol)

    def balances(self) -> dict[str, Balance]:
        return self._broker.balances()

    def on_bar(self, bar: Bar) -> BrokerUpdate:
        return self._broker.on_bar(bar)


def build_guard(risk_settings, tf_ms: int = 3_600_000) -> RiskGuard:
    """The default rule set from ``settings.risk`` (a :class:`RiskSettings`); ``tf_ms`` is
    the bar length, for the stale-data rule (``stale_data_bars`` bars)."""
    from sigmax_cli.risk.rules.api_errors import ApiErrorBurst
    from sigmax_cli.risk.rules.consecutive_losses import ConsecutiveLosses
    from sigmax_cli.risk.rules.daily_loss import DailyLossLimit
    from sigmax_cli.risk.rules.drawdown import MaxDrawdown
    from sigmax_cli.risk.rules.exit_blocked import ExitBlocked
    from sigmax_cli.risk.rules.open_orders import MaxOpenOrders
    from sigmax_cli.risk.rules.order_notional import MaxOrderNotional
    from sigmax_cli.risk.rules.order_rate import MaxOrderRate
    from sigmax_cli.risk.rules.position_notional import MaxPositionNotional
    from sigmax_cli.risk.rules.sentiment import ExtremeSentiment
    from sigmax_cli.risk.rules.slippage import SlippageTolerance
    from sigmax_cli.risk.rules.stale_data import StaleData
    from sigmax_cli.risk.rules.stop_out_cooldown import StopOutCooldown
    from sigmax_cli.risk.rules.weekly_loss import WeeklyLossLimit

    r = risk_settings
    return RiskGuard([
        MaxOrderNotional(r.max_order_notional),
        MaxPositionNotional(r.max_position_notional, r.max_total_notional),
        MaxOpenOrders(r.max_open_orders),
        MaxOrderRate(r.max_orders_per_minute),
        StopOutCooldown(r.cooldown_minutes),
        ExitBlocked(),
        DailyLossLimit(r.daily_loss_limit_pct),
        WeeklyLossLimit(r.weekly_loss_limit_pct),
        MaxDrawdown(r.max_drawdown_pct),
        ConsecutiveLosses(r.max_consecutive_losses, r.cooldown_minutes),
        SlippageTolerance(r.max_slippage_bps, r.cooldown_minutes),
        ApiErrorBurst(r.max_api_errors_per_minute, r.cooldown_minutes),
        StaleData(r.stale_data_bars * tf_ms),
        ExtremeSentiment(r.min_sentiment),
    ])
