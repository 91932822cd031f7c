"""``sigmax panic``'s exchange step: cancel every open order of the given symbols, all
symbols at once, verify none remain in bounded rounds with back-off, and optionally
flatten spot positions. Every failure is recorded in the
:class:`~sigmax_cli.risk.panic.IncidentReport`, never raised."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sigmax_cli.errors import SigmaxError

if TYPE_CHECKING:
    from sigmax_cli.risk.panic import IncidentReport

VERIFY_ROUNDS = 6          # fetch/cancel rounds before giving up on a symbol
ROUND_BACKOFF_S = 0.25     # wait before the 3rd round; doubles each round after (0.25, 0.5, 1, 2 s)
PER_ORDER_WORKERS = 8      # parallel per-order cancels when the exchange has no cancel-all
SYMBOL_WORKERS = 8         # symbols cleared at once (a few requests each: far inside Binance's weight limits)

# How far an engage (or a release) reached, and the exit code of `sigmax panic` for it.


class CountingExchange:
    """Counts the REST round trips a ccxt exchange makes (``fetch`` calls)."""

    def __init__(self, exchange: Any) -> None:
        self.calls = 0
        original = exchange.fetch

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        exchange.fetch = counted


def clear_exchange(report: IncidentReport, exchange: Any, flatten: bool, retry: Any, sleep,
                    more_symbols: Any = None) -> None:
    """Load markets, then every symbol at once (and the balances before, beside them), then
    the balances after. ``more_symbols`` (a future of a symbol list: the ledger's) adds
    symbols as soon as it is done, cleared beside the others. ccxt's client-side request
    spacing is off for this burst: a dozen requests, under 100 of Binance's 6,000 weight a
    minute, and a 429 is still retried with back-off; with it on, the parallel symbols would
    queue one behind another."""
    from sigmax_cli.exchange.errors import RetryPolicy

    retry = retry or RetryPolicy(attempts=4, base_delay=0.25, max_delay=4.0)
    counter = CountingExchange(exchange)
    report.exchange = getattr(exchange, "id", "exchange")
    throttled = getattr(exchange, "enableRateLimit", False)
    exchange.enableRateLimit = False
    try:
        try:
            retry.call(exchange, "load_markets")
            report.step("exchange: markets loaded")
        except SigmaxError as exc:
            report.failures.append(f"exchange: {exc.sentence()}")
            report.step("exchange: unreachable")
            return
        has_cancel_all = bool(exchange.has.get("cancelAllOrders"))
        with ThreadPoolExecutor(SYMBOL_WORKERS + 1) as pool:
            before = pool.submit(_balances, retry, exchange)  # cancels move no total balance: read it beside them
            jobs = [pool.submit(_clear_symbol, report, exchange, symbol, retry, has_cancel_all, sleep)
                    for symbol in report.symbols]
            if more_symbols is not None:
                extra = [s for s in more_symbols.result() if s not in report.symbols]
                report.symbols.extend(extra)
                jobs += [pool.submit(_clear_symbol, report, exchange, symbol, retry, has_cancel_all, sleep)
                         for symbol in extra]
            for job in jobs:
                job.result()
            try:
                report.balances_before = before.result()
            except SigmaxError as exc:
                report.degraded.append(f"balances before: {exc.sentence()}")
        order = {symbol: n for n, symbol in enumerate(report.symbols)}  # the report lists symbols in order
        report.cancelled.sort(key=lambda c: order.get(c["symbol"], len(order)))
        report.remaining_open_orders = {s: report.remaining_open_orders[s] for s in report.symbols
                                        if s in report.remaining_open_orders}
        if flatten:
            _flatten(report, exchange, retry)
        try:
            report.balances_after = _balances(retry, exchange)
        except SigmaxError as exc:
            report.degraded.append(f"balances after: {exc.sentence()}")
    finally:
        exchange.enableRateLimit = throttled
        report.round_trips = counter.calls


def _clear_symbol(report: IncidentReport, exchange: Any, symbol: str, retry: Any, has_cancel_all: bool,
                  sleep) -> None:
    """Cancel and verify one symbol. With cancel-all (Binance ``DELETE openOrders``): one
    request cancels and lists what it cancelled, one ``fetch_open_orders`` verifies: two round
    trips when the first round clears it. Without: list, cancel each in parallel, verify."""
    from sigmax_cli.errors import OrderRejected

    seen: set[Any] = set()  # exchange order ids (None for an order listed without one)

    def record(orders: list[dict[str, Any]]) -> None:
        for order in orders:
            if order.get("id") not in seen:
                seen.add(order.get("id"))
                report.cancelled.append({"symbol": symbol, "id": order.get("id"),
                                         "client_order_id": order.get("clientOrderId"), "side": order.get("side"),
                                         "amount": order.get("amount"), "price": order.get("price")})

    open_orders: list[dict[str, Any]] | None = None  # as last listed; None: not listed yet
    for round_no in range(VERIFY_ROUNDS):
        if round_no >= 2:  # the first cancel is verified at once; later rounds back off
            sleep(ROUND_BACKOFF_S * 2 ** (round_no - 2))
        if has_cancel_all:
            try:
                answer = retry.call(exchange, "cancel_all_orders", symbol)
                cancelled = [o for o in answer if isinstance(o, dict)] if isinstance(answer, list) else []
                record(cancelled)
                report.step(f"{symbol}: cancel-all cancelled {len(cancelled)} orders")
            except OrderRejected:
                report.step(f"{symbol}: cancel-all found no open order")  # Binance -2011 on an empty book
            except SigmaxError as exc:
                report.step(f"{symbol}: cancel-all failed ({exc.cause}); verifying")
        elif open_orders:
            with ThreadPoolExecutor(PER_ORDER_WORKERS) as pool:
                list(pool.map(lambda o: _cancel_one(retry, exchange, o["id"], symbol), open_orders))
            record(open_orders)
            report.step(f"{symbol}: {len(open_orders)} cancels sent")
        try:
            open_orders = retry.call(exchange, "fetch_open_orders", symbol)
        except SigmaxError as exc:
            report.step(f"{symbol}: fetching open orders failed ({exc.cause})")
            open_orders = None
            continue
        if not open_orders:
            report.remaining_open_orders[symbol] = 0
            report.step(f"{symbol}: verified zero open orders")
            return
    if open_orders is None:
        report.failures.append(f"{symbol}: could not verify open orders")
        report.remaining_open_orders[symbol] = -1
        return
    report.remaining_open_orders[symbol] = len(open_orders)
    report.failures.append(f"{symbol}: {len(open_orders)} open orders remain after {VERIFY_ROUNDS} rounds")


def _cancel_one(retry: Any, exchange: Any, order_id: str, symbol: str) -> None:
    from sigmax_cli.errors import OrderRejected

    try:
        retry.call(exchange, "cancel_order", order_id, symbol)
    except OrderRejected:
        pass  # already gone (filled or cancelled): the verification round decides


def _balances(retry: Any, exchange: Any) -> dict[str, float]:
    balance = retry.call(exchange, "fetch_balance")
    return {asset: float(total) for asset, total in (balance.get("total") or {}).items() if total}


def _flatten(report: IncidentReport, exchange: Any, retry: Any) -> None:
    from sigmax_cli.markets import from_ccxt

    free = {}
    try:
        free = {k: float(v) for k, v in (retry.call(exchange, "fetch_balance").get("free") or {}).items() if v}
    except SigmaxError as exc:
        report.failures.append(f"flatten: balances unavailable ({exc.cause})")
        return
    for symbol in report.symbols:
        market = exchange.markets.get(symbol)
        if not market:
            continue
        rules = from_ccxt(market, precision_mode=exchange.precisionMode)
        amount = rules.amount_to_precision(free.get(rules.base, 0.0))
        try:
            ticker = retry.call(exchange, "fetch_ticker", symbol)
            price = float(ticker.get("bid") or ticker.get("last") or 0.0)
        except SigmaxError as exc:
            report.failures.append(f"flatten {symbol}: no price ({exc.cause})")
            continue
        if amount <= 0 or amount < rules.min_amount or amount * price < rules.min_notional:
            report.step(f"flatten {symbol}: {free.get(rules.base, 0.0):g} {rules.base} is dust, left as is")
            continue
        try:
            order = retry.call(exchange, "create_order", symbol, "market", "sell", amount)
            report.flattened.append({"symbol": symbol, "amount": amount, "id": order.get("id"),
                                     "status": order.get("status")})
            report.step(f"flatten {symbol}: sold {amount:g} {rules.base}")
        except SigmaxError as exc:
            report.failures.append(f"flatten {symbol}: {exc.cause}")
