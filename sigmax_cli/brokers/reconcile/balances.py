"""The run's book against the exchange account's balances, both ways: positions carried
over from earlier runs capped to what the account holds (:meth:`BalanceCheck.cap_to_balances`),
and periodically any change of the account the run's own fills do not explain
(:meth:`BalanceCheck._balances`). Quantities are compared within half a market step."""

from __future__ import annotations

from sigmax_cli.brokers.live import LiveBroker
from sigmax_cli.brokers.reconcile.report import BALANCE_UNIT, Emit, ReconcileReport
from sigmax_cli.logs import get_logger
from sigmax_cli.portfolio import Position

log = get_logger(__name__)


class BalanceCheck:
    """Book against balances (a mixin of :class:`~sigmax_cli.brokers.reconcile.Reconciler`,
    which sets the attributes)."""

    broker: LiveBroker
    symbols: list[str]
    emit: Emit
    _reported: set[str]
    _baseline: dict[str, float]

    def _trades(self, symbol: str, since_ms: int, report: ReconcileReport) -> int:
        raise NotImplementedError

    def cap_to_balances(self, positions: dict[str, Position]) -> list[str]:
        """Compare carried positions with what the exchange account holds, both ways (within
        half a step): a position larger than the balance is cut to it; a balance larger than
        the positions of the run's symbols on that base is reported, not adopted. Returns one
        sentence per difference."""
        notes: list[str] = []
        balances = self.broker.exchange_balances()
        if not balances:
            return notes
        by_base: dict[str, list[str]] = {}
        for symbol in self.symbols:
            if symbol in self.broker.markets:
                by_base.setdefault(self.broker.markets[symbol].base, []).append(symbol)
        for base, symbols in by_base.items():
            rules = self.broker.markets[symbols[0]]
            held = balances.get(base, (0.0, 0.0))[1]
            for symbol in symbols:
                pos = positions.get(symbol)
                if pos is not None and not rules.covers(held, pos.qty):
                    notes.append(f"the ledger's {symbol} position {pos.qty:.8g} {base} exceeds the exchange balance "
                                 f"{held:.8g}: trading on {held:.8g}")
                    pos.set_qty(held)
            owned = sum(positions[s].qty for s in symbols if s in positions)
            if not rules.covers(owned, held):
                notes.append(f"the exchange account holds {held:.8g} {base} but the ledger's positions only "
                             f"{owned:.8g}: {held - owned:.8g} {base} are not the ledger's (held outside sigmax, or "
                             "fills the ledger lacks); the run trades only the ledger's")
        return notes

    def set_baseline(self) -> None:
        """Remember ``exchange total - book`` of each base asset the run trades: what the
        account holds of it beside the run's book when the book was seeded. Later changes of
        it are differences the run's fills do not explain."""
        balances = self.broker.exchange_balances()
        if balances:
            self._baseline = {a: balances.get(a, (0.0, 0.0))[1] - self.broker.total(a) for a in self._bases()}

    def _bases(self) -> set[str]:
        """Base assets of the run's symbols: only this run moves them (the quote, and a
        commission asset such as BNB, are shared with other runs on the same account)."""
        return {self.broker.markets[s].base for s in self.symbols if s in self.broker.markets}

    def _apart(self, asset: str, a: float, b: float) -> bool:
        """True when amounts ``a`` and ``b`` of ``asset`` differ by half its smallest unit or
        more: a base's amount step; for a quote, one step's worth at one tick (the least a
        trade moves it); else half of :data:`BALANCE_UNIT`."""
        for symbol in self.symbols:
            rules = self.broker.markets.get(symbol)
            if rules is None:
                continue
            if rules.base == asset:
                return not rules.same_amount(a, b)
            if rules.quote == asset:
                unit = float(rules.amount_step_at(1)) * rules.price_tick
                return abs(a - b) >= unit / 2
        return abs(a - b) >= BALANCE_UNIT / 2

    def _balances(self, report: ReconcileReport, since_ms: int | None = None) -> None:
        broker = self.broker
        balances = broker.exchange_balances(fresh=True)
        if not balances:
            return
        if since_ms is not None:  # a trade taken in after the read would make the two disagree for a moment
            late = sum(self._trades(symbol, since_ms, report) for symbol in self.symbols)
            if late:
                log.info("balances not compared: %d trades arrived while they were read; next time", late)
                return
        if not self._baseline:
            self.set_baseline()
        bases = self._bases()
        for asset in sorted(set(broker.balances()) | bases):
            mine = broker.total(asset)
            held = balances.get(asset, (0.0, 0.0))[1]
            key = f"balance:{asset}"
            drift = base = 0.0
            if asset in bases:
                base = self._baseline.setdefault(asset, held - mine)
                drift = (held - mine) - base
            if mine > held and self._apart(asset, mine, held):
                message = (f"the run's book holds {mine:.8g} {asset} but the exchange account only {held:.8g} "
                           "(sold or withdrawn outside sigmax?)")
            elif asset in bases and self._apart(asset, held - mine, base):
                more = "more" if drift > 0 else "less"
                message = (f"the exchange account holds {abs(drift):.8g} {asset} {more} than the run's own fills "
                           f"explain (exchange {held:.8g}, book {mine:.8g}): a fill the ledger lacks, or a deposit "
                           "or withdrawal outside sigmax")
            else:
                self._reported.discard(key)
                continue
            report.discrepancies.append(message)
            if key not in self._reported:
                self._reported.add(key)
                self.emit("critical", "reconcile.discrepancy", message,
                          {"asset": asset, "book": mine, "exchange": held, "drift": drift})
