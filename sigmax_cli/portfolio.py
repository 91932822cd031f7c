"""Position accounting from fills: quantity, average entry price, realised P&L.

Spot and long-only. The average price is the fee-inclusive cost basis per base unit
(buy notional + buy fee) / quantity, so that realised P&L = sell proceeds net of the sell
fee - cost basis of the units sold: net of both sides' fees. Quantities in base units,
money in quote currency, times UTC ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigmax_cli.brokers.base import Fill


@dataclass
class Position:
    """One symbol's position. ``qty`` base units; ``avg_price`` quote per unit, fees in."""

    symbol: str
    qty: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0      # quote, cumulative over the run, net of fees
    opened_ms: int | None = None   # time the current position opened (None when flat)
    last_trade_pnl: float | None = None  # net P&L of the last closed round trip (quote)
    _trade_pnl: float = 0.0

    def record(self, run_id: str, ts_ms: int) -> dict[str, object]:
        """The ledger row (``schema.positions``) after a change."""
        return {"run_id": run_id, "symbol": self.symbol, "ts_ms": ts_ms, "qty": self.qty,
                "avg_price": self.avg_price, "realized_pnl": self.realized_pnl}


class Portfolio:
    """Positions of every symbol, updated fill by fill.

    Args:
        dust: per-symbol quantities (base units) below which a position counts as flat,
            e.g. the market's amount step.
    """

    def __init__(self, dust: dict[str, float] | None = None) -> None:
        self.positions: dict[str, Position] = {}
        self.dust = dust or {}
        self.closed_trades = 0
        self.wins = 0
        self.losing_streak = 0
        self.last_loss_ms: dict[str, int] = {}  # symbol -> bar close time its last losing round trip was seen

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

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
        if fill.side == "buy":
            cost = pos.avg_price * pos.qty + fill.notional + fill.fee
            if pos.qty <= self.dust.get(fill.symbol, 0.0):
                pos.opened_ms = fill.ts_ms
                pos._trade_pnl = 0.0
            pos.qty += fill.amount
            pos.avg_price = cost / pos.qty if pos.qty > 0 else 0.0
        else:
            sold = min(fill.amount, pos.qty)
            pnl = fill.notional - fill.fee - pos.avg_price * sold
            pos.realized_pnl += pnl
            pos._trade_pnl += pnl
            pos.qty -= sold
            if pos.qty <= self.dust.get(fill.symbol, 0.0):
                pos.last_trade_pnl = pos._trade_pnl
                self.closed_trades += 1
                self.losing_streak = self.losing_streak + 1 if pos._trade_pnl < 0 else 0
                if pos._trade_pnl < 0:
                    self.last_loss_ms[fill.symbol] = fill.ts_ms if bar_ms is None else bar_ms
                else:
                    self.wins += 1
                pos.opened_ms = None
                if pos.qty <= 0:
                    pos.qty, pos.avg_price = 0.0, 0.0
        return pos

    def exposure(self, marks: dict[str, float]) -> dict[str, float]:
        """Quote notional per symbol at ``marks`` (last prices)."""
        return {s: p.qty * marks.get(s, p.avg_price) for s, p in self.positions.items() if p.qty > 0}
