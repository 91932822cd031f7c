"""Ledger invariants, checked at the end of every paper and testnet run.

What the ledger says a run did must add up to what its broker holds:

1. per base asset: the holding at the start plus the run's fills (a buy adds ``amount``, a
   sell removes it; a commission charged in the base asset removes ``fee`` more) equals
   the broker's final holding, within half an amount step;
2. the quote: the start balance plus the fills' cash flows (sells ``+ price * amount``,
   buys ``-``, quote commissions ``-``) equals the broker's final quote balance;
3. equity: the ledger's last equity snapshot equals the quote balance plus every holding
   at its last close, within one step at the close and one tick on the holding per symbol;
4. no free or reserved balance is negative.

Tolerances beyond those steps and ticks are the resolution of the ledger's columns: they
store IEEE doubles (15-16 significant digits), so a sum of ``n`` stored values is known to
``n`` half-ulps (``math.ulp``), and money sums to a relative 1e-9 of the cash moved. A
violation is a sentence naming the asset, the two sides and the difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sigmax_cli.markets import MarketRules, to_decimal
from sigmax_cli.model import split_fee

MONEY_REL_TOL = 1e-9
"""Relative tolerance of quote sums read back from double-precision ledger columns."""


def holdings(broker: Any, assets: Iterable[str]) -> dict[str, Decimal]:
    """The broker's total of each asset, exactly when it can say (``total_exact``)."""
    exact = getattr(broker, "total_exact", None)
    return {a: exact(a) if exact is not None else to_decimal(broker.total(a)) for a in assets}


def check_run(*, fills: Iterable[Mapping[str, Any]], rules: Mapping[str, MarketRules], quote: str,
              start: Mapping[str, Decimal], end: Mapping[str, Decimal], balances: Mapping[str, Any],
              last_equity: float | None, closes: Mapping[str, float]) -> list[str]:
    """Check one run's ledger against its broker; returns the violations (empty: all hold).

    Args:
        fills: the run's ledger ``fills`` rows (``symbol``, ``side``, ``price``, ``amount``,
            ``fee``, ``fee_currency``).
        rules: market rules of the run's symbols (base asset, step, tick).
        quote: the quote currency (money in it).
        start, end: holdings per asset (the quote and every base) before the first bar and
            after the last, base units / quote.
        balances: the broker's final ``balances()`` (``free``/``used`` per asset).
        last_equity: the ledger's newest equity snapshot (quote), ``None`` when there is none.
        closes: the last close of each symbol (quote per base unit).
    """
    flows: dict[str, Decimal] = {}
    slack: dict[str, float] = {}
    moved = 0.0
    for f in fills:
        r = rules[f["symbol"]]
        amount, price, fee = float(f["amount"]), float(f["price"]), float(f["fee"] or 0.0)
        sign = 1 if f["side"] == "buy" else -1
        base_fee_f, quote_fee = split_fee(fee, f["fee_currency"], r.base, quote)
        base_fee = to_decimal(base_fee_f)
        flows[r.base] = flows.get(r.base, Decimal(0)) + sign * to_decimal(amount) - base_fee
        slack[r.base] = slack.get(r.base, 0.0) + math.ulp(amount) / 2 + (math.ulp(fee) / 2 if base_fee else 0.0)
        cash = -sign * price * amount - quote_fee
        flows[quote] = flows.get(quote, Decimal(0)) + to_decimal(cash)
        moved += abs(price * amount) + quote_fee
    problems: list[str] = []
    by_base = {r.base: r for r in rules.values()}
    for base, r in by_base.items():
        expected = start.get(base, Decimal(0)) + flows.get(base, Decimal(0))
        actual = end.get(base, Decimal(0))
        diff = abs(expected - actual)
        if not r.same_amount(expected, actual) and float(diff) > slack.get(base, 0.0):
            problems.append(f"{base}: start {start.get(base, 0):f} + fills {flows.get(base, 0):f} = {expected:f}, "
                            f"but the broker holds {actual:f} (off by {diff:f}, more than half a step "
                            f"{r.amount_step_at(actual) / 2:f})")
    expected_q = start.get(quote, Decimal(0)) + flows.get(quote, Decimal(0))
    actual_q = end.get(quote, Decimal(0))
    if float(abs(expected_q - actual_q)) > MONEY_REL_TOL * (float(abs(start.get(quote, Decimal(0)))) + moved):
        problems.append(f"{quote}: start {start.get(quote, 0):f} + fills {flows.get(quote, 0):f} = {expected_q:f}, "
                        f"but the broker holds {actual_q:f}")
    if last_equity is not None:
        marked = float(actual_q)
        tolerance = MONEY_REL_TOL * (abs(last_equity) + moved)
        for symbol, r in rules.items():
            qty, close = float(end.get(r.base, Decimal(0))), closes.get(symbol)
            if close is None or not qty:
                continue
            marked += qty * close
            tolerance += float(r.amount_step_at(qty)) * close + r.price_tick * abs(qty)
        if abs(marked - last_equity) > tolerance:
            problems.append(f"equity: the ledger's last snapshot is {last_equity:.8f} {quote}, but the quote balance "
                            f"plus holdings at the last close is {marked:.8f} (tolerance {tolerance:.8g})")
    for asset, balance in balances.items():
        if balance.free < 0 or balance.used < 0:
            problems.append(f"{asset}: balance negative (free {balance.free!r}, reserved {balance.used!r})")
    return problems
