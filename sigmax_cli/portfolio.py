"""Position accounting from fills: quantity, average entry price, realised P&L.

Spot and long-only. The average price is the fee-inclusive cost basis per base unit
(buy notional + buy fee) / quantity, so that realised P&L = sell proceeds net of the sell
fee - cost basis of the units sold: net of both sides' fees. Quantities in base units,
money in quote currency, times UTC ms.

Quantities are summed exactly (:class:`~decimal.Decimal` of each fill's amount), so a
position built from whole market steps stays on the step grid, and "flat" means less than
half a step (:meth:`~sigmax_cli.markets.MarketRules.is_flat`), never an absolute epsilon.

Fees are booked in the currency the exchange charged (``Fill.fee_currency``), once:

* quote: a buy's fee adds to the cost basis, a sell's is deducted from the proceeds;
* base: a buy receives ``amount - fee`` units for the notional; a sell gives up
  ``amount + fee`` units for the notional (the fee's units leave at their cost basis);
* any other asset (BNB): quantities and quote are untouched; the fee is kept per
  currency in :attr:`Portfolio.other_fees` and not in the quote P&L, since its quote value
  is not known here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sigmax_cli.markets import MarketRules, default_rules, to_decimal
from sigmax_cli.model import Fill, split_fee

_ZERO = Decimal(0)


@dataclass
class Position:
    """One symbol's position. ``qty`` base units (float view of :attr:`exact`);
    ``avg_price`` quote per unit, fees in."""

    symbol: str
    qty: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0      # quote, cumulative over the run, net of fees
    opened_ms: int | None = None   # time the current position opened (None when flat)
    last_trade_pnl: float | None = None  # net P&L of the last closed round trip (quote)
    _trade_pnl: float = 0.0
    exact: Decimal = field(default=_ZERO)  # base units, exactly

    def set_qty(self, qty: float | Decimal) -> None:
        """Set the quantity (base units), e.g. cut to what an exchange account holds."""
        self.exact = to_decimal(qty)
        self.qty = float(self.exact)

    def record(self, run_id: str, ts_ms: int) -> dict[str, object]:
        """The ledger row (``schema.positions``) after a change."""
        return {"run_id": run_id, "symbol": self.symbol, "ts_ms": ts_ms, "qty": self.qty,
                "avg_price": self.avg_price, "realized_pnl": self.realized_pnl}


class Portfolio:
    """Positions of every symbol, updated fill by fill.

    Args:
        rules: market rules per symbol (base/quote assets, the amount step that defines
            "flat"); symbols without rules get :func:`~sigmax_cli.markets.default_rules`.
    """

    def __init__(self, rules: dict[str, MarketRules] | None = None) -> None:
        self.positions: dict[str, Position] = {}
        self.rules = dict(rules or {})
        self.closed_trades = 0
        self.wins = 0
        self.losing_streak = 0
        self.last_loss_ms: dict[str, int] = {}  # symbol -> bar close time its last losing round trip was seen
        self.other_fees: dict[str, float] = {}  # fees charged in neither base nor quote, per currency

    def _rules(self, symbol: str) -> MarketRules:
        rules = self.rules.get(symbol)
        if rules is None:
            rules = self.rules[symbol] = default_rules(symbol)
        return rules

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

    def is_flat(self, symbol: str, qty: float | Decimal | None = None) -> bool:
        """True when ``symbol``'s position (or ``qty``) is less than half a step from zero."""
        return self._rules(symbol).is_flat(self.position(symbol).exact if qty is None else qty)

    def apply(self, fill: Fill, bar_ms: int | None = None) -> Position:
        """Update the fill's symbol position; returns it. A sell closing the position ends a
        round trip (``last_trade_pnl`` set, ``losing_streak`` updated).

        Args:
            fill: the execution.
            bar_ms: the close time (UTC ms) of the bar at which the engine applies the fill.
                A losing round trip is dated by it in ``last_loss_ms``, so that the
                stop-out cooldown compares bar time with bar time: a live fill carries the
                exchange's wall clock, which runs ahead of the bars a restarted bot is still
                catching up on. ``None``: the fill's own time.
        """
        pos = self.position(fill.symbol)
        rules = self._rules(fill.symbol)
        amount = to_decimal(fill.amount)
        base_fee, fee_quote = split_fee(fill.fee, fill.fee_currency, rules.base, rules.quote)
        fee_base = to_decimal(base_fee)
        if fill.fee and fill.fee_currency not in (rules.base, rules.quote):
            self.other_fees[fill.fee_currency] = self.other_fees.get(fill.fee_currency, 0.0) + fill.fee
        if fill.side == "buy":
            cost = pos.avg_price * pos.qty + fill.notional + fee_quote
            if rules.is_flat(pos.exact):
                pos.opened_ms = fill.ts_ms
                pos._trade_pnl = 0.0
            pos.set_qty(pos.exact + amount - fee_base)
            pos.avg_price = cost / pos.qty if pos.qty > 0 else 0.0
        else:
            gone = min(amount + fee_base, pos.exact) if pos.exact > 0 else _ZERO
            pnl = fill.notional - fee_quote - pos.avg_price * float(gone)
            pos.realized_pnl += pnl
            pos._trade_pnl += pnl
            pos.set_qty(pos.exact - gone)
            if rules.is_flat(pos.exact):
                pos.last_trade_pnl = pos._trade_pnl
                self.closed_trades += 1
                self.losing_streak = self.losing_streak + 1 if pos._trade_pnl < 0 else 0
                if pos._trade_pnl < 0:
                    self.last_loss_ms[fill.symbol] = fill.ts_ms if bar_ms is None else bar_ms
                else:
                    self.wins += 1
                pos.opened_ms = None
                if pos.exact <= 0:
                    pos.set_qty(_ZERO)
                    pos.avg_price = 0.0
        return pos

    def exposure(self, marks: dict[str, float]) -> dict[str, float]:
        """Quote notional per symbol at ``marks`` (last prices)."""
        return {s: p.qty * marks.get(s, p.avg_price) for s, p in self.positions.items() if p.qty > 0}
