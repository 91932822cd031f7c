"""What a reconciliation found and did, and the limits it works within."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

Emit = Callable[[str, str, str, dict[str, Any]], None]
"""``emit(level, kind, message, data)``: record an event (ledger, dashboard)."""
TRADE_LOOKBACK_MS = 60_000  # periodic trade checks overlap the previous one by this much
RECOVER_WINDOW_MS = 86_400_000  # orders of the last 24 h are listed at start (Binance's allOrders window)
TRADE_PAGE = 1000  # trades asked per fetch_my_trades page (Binance's maximum)
TRADE_PAGES = 20   # pages read at most per symbol and comparison
BALANCE_UNIT = 1e-8
"""Smallest balance increment of an asset no market of the run trades (a commission asset
such as BNB): Binance reports balances to 8 decimals; half of it is the tolerance."""


@dataclass
class ReconcileReport:
    """What one reconciliation found and did. Client order ids; times UTC ms."""

    ts_ms: int
    kind: str                                   # start | periodic
    adopted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)   # earlier-run order -> status found
    recovered_fills: int = 0
    discrepancies: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
