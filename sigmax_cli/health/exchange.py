"""Exchange: its public API answers in time, our clock agrees with it, and the API key is safe.

Talks to the exchange through :mod:`sigmax_cli.exchange.client` (ccxt, imported only when
this check runs), on its testnet when ``env`` is ``testnet``, at ``exchange_api_url`` when
set. No call is retried: a health check reports what it sees, within
``health.exchange_timeout_s`` for all its calls together.

Measurements:

``exchange:latency`` (ms)
    One call of the public time endpoint (``fetch_time``), graded by
    ``health.exchange_latency_ms``. Unreachable or timing out: CRITICAL; rate-limited:
    WARNING (it answers, but is pushing back); a bad exchange id or URL: UNKNOWN.
``exchange:clock_skew`` (ms, signed)
    ``server time - local time at the middle of the request`` (Cristian's algorithm,
    1989), positive when this host's clock is behind. Graded on its absolute value by
    ``health.clock_skew_ms``; defaults 500 / 1000 because Binance refuses a signed request
    stamped more than 1000 ms ahead of its clock (Binance Spot API docs, "Timing
    security"). Skipped when the exchange has no time endpoint.
``exchange:account`` (ms) - with API keys
    ``fetch_balance`` answers (the key is accepted), graded by ``exchange_latency_ms``;
    refused key: CRITICAL. Skipped without keys.
``exchange:withdrawals`` (1 allowed / 0 not) - with API keys, where the exchange tells
    The trading key must not be able to withdraw: CRITICAL when it can. Binance reports it
    (``GET /sapi/v1/account/apiRestrictions``, ``enableWithdrawals``) on its main API; its
    spot testnet has no such endpoint, and other exchanges are not asked: skipped.
"""

from __future__ import annotations

import time
from typing import Any

from sigmax_cli.errors import ConfigError, RateLimited, SigmaxError
from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status


def has_keys(settings: Any) -> bool:
    """Whether an API key and secret are configured."""
    return bool(settings.api_key and settings.api_key.get_secret_value()
                and settings.api_secret and settings.api_secret.get_secret_value())


def error_status(err: SigmaxError) -> Status:
    """CRITICAL for an exchange that fails us; WARNING when it rate-limits (it answers);
    UNKNOWN for a configuration that does not let us ask (bad exchange id or URL)."""
    if isinstance(err, RateLimited):
        return Status.WARNING
    if isinstance(err, ConfigError):
        return Status.UNKNOWN
    return Status.CRITICAL


class Deadline:
    """Calls into ccxt, each one given only the time left before the check's deadline.

    Args:
        exchange: a ccxt exchange.
        ctx: the check's context (:meth:`CheckContext.left_s`).
    """

    def __init__(self, exchange: Any, ctx: CheckContext) -> None:
        self.exchange = exchange
        self.ctx = ctx

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``exchange.<method>(...)``: no retry, errors translated into the sigmax tree.

        Raises:
            TemporaryError: no time left, or the exchange did not answer in what was left.
            SigmaxError: any other translated ccxt error.
        """
        from sigmax_cli.errors import TemporaryError
        from sigmax_cli.exchange.errors import invoke

        left_ms = int(self.ctx.left_s() * 1000)
        if left_ms <= 50:
            raise TemporaryError(f"no time left to call {method} on {self.exchange.id}",
                                 "raise health.exchange_timeout_s")
        self.exchange.timeout = left_ms
        return invoke(self.exchange, method, *args, **kwargs)


def open_exchange(ctx: CheckContext, *, with_keys: bool) -> Any:
    """The ccxt exchange of ``ctx.settings`` (testnet when ``env`` is ``testnet``).

    Raises:
        ConfigError: unknown exchange id, no testnet, malformed ``exchange_api_url``.
    """
    from sigmax_cli.exchange.client import exchange_from_settings

    settings = ctx.settings
    return exchange_from_settings(settings, sandbox=settings.env == "testnet", with_keys=with_keys,
                                  timeout_ms=int(ctx.left_s() * 1000))


class ExchangeCheck(Check):
    """Public reachability, clock skew, account and key permissions (see the module docstring)."""

    name = "exchange"
    primary = "latency"
    description = "exchange: public API latency, clock skew; with keys: account, no withdrawal permission"

    def timeout_s(self, health: Any) -> float:
        return health.exchange_timeout_s

    def run(self, ctx: CheckContext) -> list[Outcome]:
        keys = has_keys(ctx.settings)
        try:
            exchange = open_exchange(ctx, with_keys=keys)
        except SigmaxError as exc:
            return [self.result("latency", error_status(exc), exc.sentence().rstrip("."), ctx)]
        calls = Deadline(exchange, ctx)
        out = self._public(exchange, calls, ctx)
        if not keys:
            reason = "no API keys configured (SIGMAX_API_KEY, SIGMAX_API_SECRET)"
            return [*out, self.skip("account", reason), self.skip("withdrawals", reason)]
        return [*out, *self._account(exchange, calls, ctx)]

    def _public(self, exchange: Any, calls: Deadline, ctx: CheckContext) -> list[Outcome]:
        limits = Limits.of(ctx.health.exchange_latency_ms)
        timed = bool((exchange.has or {}).get("fetchTime"))
        started_wall = time.time()
        started = time.perf_counter()
        try:
            server_ms = calls.call("fetch_time") if timed else None
            if not timed:
                calls.call("load_markets")
        except SigmaxError as exc:
            return [self.result("latency", error_status(exc), exc.cause, ctx)]
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        what = "time endpoint" if timed else "markets"
        out: list[Outcome] = [self.graded("latency", latency_ms, "ms", limits,
                                          f"{exchange.id} {what} answered in {latency_ms:g} ms", ctx)]
        if server_ms is None:
            out.append(self.skip("clock_skew", f"{exchange.id} has no server-time endpoint in ccxt"))
            return out
        skew_ms = round(int(server_ms) - (started_wall * 1000 + latency_ms / 2), 1)
        side = "behind" if skew_ms > 0 else "ahead of"
        out.append(self.graded("clock_skew", skew_ms, "ms", Limits.of(ctx.health.clock_skew_ms, symmetric=True),
                               f"this host's clock is {abs(skew_ms):g} ms {side} {exchange.id}'s", ctx))
        return out

    def _account(self, exchange: Any, calls: Deadline, ctx: CheckContext) -> list[Outcome]:
        started = time.perf_counter()
        try:
            calls.call("fetch_balance")
        except SigmaxError as exc:
            return [self.result("account", error_status(exc), exc.cause, ctx),
                    self.skip("withdrawals", "the account could not be read")]
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        account = self.graded("account", latency_ms, "ms", Limits.of(ctx.health.exchange_latency_ms),
                              f"{exchange.id} accepted the API key; balances read in {latency_ms:g} ms", ctx)
        return [account, self._withdrawals(exchange, calls, ctx)]

    def _withdrawals(self, exchange: Any, calls: Deadline, ctx: CheckContext) -> Outcome:
        if not exchange.id.startswith("binance"):
            return self.skip("withdrawals", f"{exchange.id}: sigmax does not know how to read a key's permissions")
        if ctx.settings.env == "testnet":
            return self.skip("withdrawals", "the Binance spot testnet does not report API key permissions")
        try:
            restrictions = calls.call("sapi_get_account_apirestrictions")
        except SigmaxError as exc:
            return self.result("withdrawals", Status.UNKNOWN, f"could not read the key's permissions ({exc.cause})",
                               ctx)
        allowed = (restrictions or {}).get("enableWithdrawals")
        if allowed is None:
            return self.result("withdrawals", Status.UNKNOWN, "the exchange did not say whether the key may withdraw",
                               ctx)
        if allowed:
            return self.result("withdrawals", Status.CRITICAL, "the API key may withdraw funds; remove that "
                               "permission on the exchange (a trading bot never needs it)", ctx, value=1)
        return self.result("withdrawals", Status.OK, "the API key cannot withdraw", ctx, value=0)
