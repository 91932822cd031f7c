"""Open orders: what the ledger believes is open matches what the exchange has open.

Applies to ``testnet`` and ``live`` (paper orders never reach an exchange) with API keys;
skipped otherwise - without keys the exchange's side cannot be read.

The ledger's side: orders with status ``new``, ``open`` or ``partially_filled`` whose run
has the configured ``env`` as its mode and the configured exchange. The exchange's side:
``fetch_open_orders(symbol)`` for every symbol of those orders and of ``symbols``. Orders
are matched by exchange order id, else by client order id.

``orders:mismatch`` (count)
    Orders open on one side only. An order open on the exchange but unknown to the ledger
    was placed by hand or lost by a bot; one open in the ledger but not on the exchange
    ended without the bot recording it. Either: WARNING, listing a few ids; none: OK
    (the message gives both counts). Exchange unreachable: CRITICAL; ledger unreadable:
    UNKNOWN.
"""

from __future__ import annotations

from typing import Any

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health.base import Check, CheckContext, Outcome, Status
from sigmax_cli.health.exchange import Deadline, error_status, has_keys, open_exchange
from sigmax_cli.ledger import reader as db

SHOWN = 3


class OrdersCheck(Check):
    """Open orders in the ledger against the exchange (see the module docstring)."""

    name = "orders"
    primary = "mismatch"
    description = "open orders: the ledger's against the exchange's (testnet/live, with keys)"

    def timeout_s(self, health: Any) -> float:
        return health.exchange_timeout_s

    def run(self, ctx: CheckContext) -> list[Outcome]:
        settings = ctx.settings
        if settings.env == "paper":
            return [self.skip("mismatch", "env is paper: paper orders never reach an exchange")]
        if not has_keys(settings):
            return [self.skip("mismatch", "no API keys configured: the exchange's open orders cannot be read")]
        try:
            ledger_orders = self._ledger_orders(ctx)
        except SigmaxError as exc:
            return [self.result("mismatch", Status.UNKNOWN, f"cannot read the ledger's orders: {exc.cause}", ctx)]
        symbols = list(dict.fromkeys([*settings.symbols, *(o["symbol"] for o in ledger_orders)]))
        try:
            exchange = open_exchange(ctx, with_keys=True)
            calls = Deadline(exchange, ctx)
            remote = [o for symbol in symbols for o in calls.call("fetch_open_orders", symbol)]
        except SigmaxError as exc:
            return [self.result("mismatch", error_status(exc), exc.cause, ctx)]
        return [self._compare(ledger_orders, remote, ctx)]

    def _ledger_orders(self, ctx: CheckContext) -> list[dict[str, Any]]:
        with db.Reader(ctx.settings.ledger_url, ctx.left_s()) as reader:
            rows = reader.open_orders(ctx.settings.env, ctx.settings.exchange) or []
        return [{"client_order_id": c, "exchange_order_id": e, "symbol": s} for c, e, s in rows]

    def _compare(self, ledger_orders: list[dict[str, Any]], remote: list[dict[str, Any]],
                 ctx: CheckContext) -> Outcome:
        remote_ids = {str(o.get("id")) for o in remote if o.get("id") is not None}
        remote_cids = {str(o.get("clientOrderId")) for o in remote if o.get("clientOrderId")}
        known_ids = {str(o["exchange_order_id"]) for o in ledger_orders if o["exchange_order_id"]}
        known_cids = {str(o["client_order_id"]) for o in ledger_orders}
        stale = [o["exchange_order_id"] or o["client_order_id"] for o in ledger_orders
                 if str(o["exchange_order_id"]) not in remote_ids and str(o["client_order_id"]) not in remote_cids]
        unknown = [f"{o.get('symbol')} {o.get('id')}" for o in remote
                   if str(o.get("id")) not in known_ids and str(o.get("clientOrderId")) not in known_cids]
        counts = f"{len(ledger_orders)} open in the ledger, {len(remote)} on the exchange"
        if not stale and not unknown:
            return self.result("mismatch", Status.OK, f"{counts}, all matched", ctx, value=0)
        parts = [counts]
        if unknown:
            parts.append(f"{len(unknown)} on the exchange unknown to the ledger ({_few(unknown)})")
        if stale:
            parts.append(f"{len(stale)} open in the ledger but not on the exchange ({_few(stale)})")
        return self.result("mismatch", Status.WARNING, "; ".join(parts), ctx, value=len(stale) + len(unknown))


def _few(items: list[str]) -> str:
    more = f", +{len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(str(i) for i in items[:SHOWN]) + more
