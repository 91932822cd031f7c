"""The two-way comparison of a venue's orders and trades: the ledger (and the broker)
against the exchange, for one symbol since a time (:meth:`TwoWayComparison.compare`)."""

from __future__ import annotations

from typing import Any

from sigmax_cli.brokers.live import CLIENT_ID_PREFIX, LiveBroker
from sigmax_cli.brokers.reconcile.report import TRADE_LOOKBACK_MS, TRADE_PAGE, TRADE_PAGES, Emit, ReconcileReport


class TwoWayComparison:
    """Orders by client order id and trades by trade id, both ways (a mixin of
    :class:`~sigmax_cli.brokers.reconcile.Reconciler`, which sets the attributes)."""

    broker: LiveBroker
    emit: Emit
    _reported: set[str]
    _order_cids: dict[str, str]

    def _ledger_orders(self, symbol: str) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def _ledger_fills(self, symbol: str, since_ms: int) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def compare(self, symbol: str, since_ms: int, report: ReconcileReport) -> None:
        """Compare the ledger (and the broker) with the exchange for ``symbol`` since
        ``since_ms`` (UTC ms), both directions; every difference is reported in
        ``report.discrepancies`` and as a critical ``reconcile.discrepancy`` event (once).

        Orders (when the exchange lists them): a sigmax order on the exchange under a client
        order id the ledger holds with another exchange order id (a duplicate), one the
        ledger holds as never placed, an executed quantity that differs from the ledger's
        by half a step or more, and a ledger order with an exchange id that the exchange
        does not list. Trades: an exchange trade of a sigmax order that neither the ledger
        nor the broker has, and a ledger fill (with a trade id) the exchange does not have.

        Raises:
            ExchangeError: the exchange could not be asked (the caller reports it).
        """
        broker, rules = self.broker, self.broker.rules(symbol)
        ledger_orders = self._ledger_orders(symbol)
        by_eid = {row["exchange_order_id"]: row for row in ledger_orders.values() if row["exchange_order_id"]}
        listed: dict[str, dict[str, Any]] | None = None
        if (getattr(broker.exchange, "has", None) or {}).get("fetchOrders"):
            listed = {str(raw["id"]): raw for raw in broker.fetch_orders(symbol, since_ms)}
            for eid, raw in listed.items():
                cid = raw.get("clientOrderId") or ""
                self._order_cids[eid] = cid
                if eid in by_eid:
                    row = by_eid[eid]
                    tracked = broker.get_order(row["client_order_id"])
                    if tracked is not None and tracked.is_active:
                        continue  # the broker polls it: the ledger follows at the next bar
                    # the run's own state when it tracks the order, else the ledger's
                    filled = tracked.filled if tracked is not None else (row["filled"] or 0.0)
                    if not rules.same_amount(float(raw.get("filled") or 0.0), filled):
                        self._discrepancy(report, f"order:{eid}:filled", f"{symbol} order {cid} (exchange id {eid}) "
                                          f"executed {raw.get('filled')} on the exchange but {filled} in the "
                                          "ledger", {"client_order_id": cid, "exchange_order_id": eid})
                    continue
                mine = broker.get_order(cid)
                if mine is not None and mine.exchange_order_id in (None, eid):
                    continue  # this run's order the ledger is being told about
                held = ledger_orders.get(cid)
                if held is None and mine is None:
                    continue  # not a sigmax order (foreign orders are the open-order check's business)
                known = (mine.exchange_order_id if mine is not None else None) or (held or {}).get("exchange_order_id")
                if known and known != eid:
                    self._discrepancy(report, f"order:{eid}:duplicate", f"the exchange holds a second {symbol} order "
                                      f"with client order id {cid} (exchange id {eid}, {raw.get('status')}, executed "
                                      f"{raw.get('filled')}) beside the ledger's {known}: a duplicate the ledger lacks",
                                      {"client_order_id": cid, "exchange_order_id": eid, "ledger_order_id": known})
                elif held is not None and held["status"] == "rejected":
                    self._discrepancy(report, f"order:{eid}:rejected", f"{symbol} order {cid} is {raw.get('status')} "
                                      f"on the exchange (id {eid}, executed {raw.get('filled')}) but the ledger holds "
                                      "it as never placed", {"client_order_id": cid, "exchange_order_id": eid})
            for eid, row in by_eid.items():
                if eid not in listed and row["created_ms"] >= since_ms + TRADE_LOOKBACK_MS:
                    self._discrepancy(report, f"order:{eid}:missing", f"the ledger's {symbol} order "
                                      f"{row['client_order_id']} (exchange id {eid}, {row['status']}) is not among the "
                                      "exchange's orders", {"client_order_id": row["client_order_id"],
                                                            "exchange_order_id": eid})
        trades = self._exchange_trades(symbol, since_ms)
        ledger_fills = self._ledger_fills(symbol, since_ms)
        seen = broker.seen_trades
        for trade in trades:
            tid, eid = str(trade.get("id")), str(trade.get("order"))
            if tid in ledger_fills or tid in seen:
                continue
            if broker.ingest_trade(trade):  # one of this run's orders traded since it was polled: a fill now
                report.recovered_fills += 1
                continue
            cid = self._cid_of(symbol, eid, by_eid, listed)
            if cid is None or not (cid.startswith(CLIENT_ID_PREFIX) or cid in ledger_orders):
                continue  # a trade of an order sigmax did not place
            self._discrepancy(report, f"trade:{tid}", f"the exchange has a {symbol} {trade.get('side')} trade {tid} of "
                              f"{trade.get('amount')} at {trade.get('price')} (order {cid}, exchange id {eid}) that "
                              "the ledger lacks", {"trade_id": tid, "client_order_id": cid, "exchange_order_id": eid})
        on_exchange = {str(t.get("id")) for t in trades}
        complete = len(trades) < TRADE_PAGE * TRADE_PAGES
        for tid, row in ledger_fills.items():
            if complete and tid not in on_exchange:
                cid = row["client_order_id"]
                self._discrepancy(report, f"fill:{tid}", f"the ledger has a {symbol} {row['side']} fill {tid} of "
                                  f"{row['amount']:.8g} at {row['price']:.8g} (order {cid}) that the exchange does "
                                  "not have", {"trade_id": tid, "client_order_id": cid})

    def _cid_of(self, symbol: str, eid: str, by_eid: dict[str, dict[str, Any]],
                listed: dict[str, dict[str, Any]] | None) -> str | None:
        """The client order id of exchange order ``eid`` (ledger, broker, the listing, else
        one lookup, remembered); ``None`` when the exchange cannot say."""
        if eid in by_eid:
            return by_eid[eid]["client_order_id"]
        if self.broker.owns_exchange_id(eid):
            return self.broker.client_id_of(eid)
        if eid not in self._order_cids:
            raw = self.broker.call("fetch_order", eid, symbol)
            self._order_cids[eid] = (raw or {}).get("clientOrderId") or ""
        return self._order_cids[eid]

    def _exchange_trades(self, symbol: str, since_ms: int) -> list[dict[str, Any]]:
        """The account's trades of ``symbol`` since ``since_ms``, page by page (each once)."""
        out: dict[str, dict[str, Any]] = {}
        since = since_ms
        for _ in range(TRADE_PAGES):
            page = self.broker.call("fetch_my_trades", symbol, since, TRADE_PAGE)
            for trade in page:
                out.setdefault(str(trade.get("id")), trade)
            if len(page) < TRADE_PAGE:
                break
            since = max(int(t.get("timestamp") or since) for t in page)
        return list(out.values())

    def _discrepancy(self, report: ReconcileReport, key: str, message: str, data: dict[str, Any]) -> None:
        report.discrepancies.append(message)
        if key not in self._reported:
            self._reported.add(key)
            self.emit("critical", "reconcile.discrepancy", message, data)
