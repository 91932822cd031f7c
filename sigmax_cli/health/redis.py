"""Redis: it answers PING in time and has memory to spare.

Skipped when ``SIGMAX_REDIS_URL`` is not set (Redis is optional: the kill switch then
lives in the file alone).

Measurements:

``redis:latency`` (ms)
    One PING round trip on an open connection, graded by ``health.redis_latency_ms``.
    Connection refused, unknown host, no answer within the check's timeout, wrong or
    missing password: CRITICAL with the reason.
``redis:memory`` (% of ``maxmemory``, or bytes)
    ``used_memory / maxmemory`` from ``INFO memory``, graded by ``health.memory_used_pct``
    (at 100 % Redis evicts keys or refuses writes, depending on its policy). Without a
    ``maxmemory`` limit the used bytes are reported, OK.
"""

from __future__ import annotations

import time

from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status, short_error


class RedisCheck(Check):
    """PING latency and memory of the configured Redis (see the module docstring)."""

    name = "redis"
    primary = "latency"
    description = "Redis: PING latency, memory used against maxmemory"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        if ctx.settings.redis_url is None:
            return [self.skip("latency", "SIGMAX_REDIS_URL is not set")]
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from sigmax_cli.settings import redact_url

        url = ctx.settings.redis_url.get_secret_value()
        where = redact_url(url)
        try:
            wait_s = ctx.left_s()
            client = redis.Redis.from_url(url, socket_timeout=wait_s, socket_connect_timeout=wait_s,
                                          retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        except ValueError as exc:  # malformed URL
            return [self.result("latency", Status.UNKNOWN, f"SIGMAX_REDIS_URL {where} is malformed ({exc})", ctx)]
        try:
            client.ping()  # connects (and authenticates)
            started = time.perf_counter()
            client.ping()
            latency_ms = round((time.perf_counter() - started) * 1000, 2)
            info = client.info("memory")
        except (redis.AuthenticationError, redis.ResponseError) as exc:
            return [self.result("latency", Status.CRITICAL, _auth_reason(exc, url, where), ctx)]
        except redis.TimeoutError:
            return [self.result("latency", Status.CRITICAL, f"{where} did not answer within {wait_s:.1f} s", ctx)]
        except redis.ConnectionError as exc:
            return [self.result("latency", Status.CRITICAL, _connection_reason(exc, where), ctx)]
        finally:
            client.close()
        out: list[Outcome] = [self.graded("latency", latency_ms, "ms", Limits.of(ctx.health.redis_latency_ms),
                                          f"PING {latency_ms:g} ms", ctx)]
        used = int(info.get("used_memory", 0))
        limit = int(info.get("maxmemory", 0) or 0)
        if limit > 0:
            pct = round(used / limit * 100, 1)
            out.append(self.graded("memory", pct, "%", Limits.of(ctx.health.memory_used_pct),
                                   f"{_mib(used)} of maxmemory {_mib(limit)} used", ctx))
        else:
            out.append(self.result("memory", Status.OK, f"{_mib(used)} used, no maxmemory limit set", ctx,
                                   value=used, unit="B"))
        return out


def _auth_reason(exc: BaseException, url: str, where: str) -> str:
    """Wrong or missing password, told apart by whether the URL carries one (servers word it
    differently: NOAUTH, WRONGPASS, "HELLO must be called with the client already authenticated")."""
    from urllib.parse import urlsplit

    import redis

    text = short_error(exc)
    if isinstance(exc, redis.AuthenticationError) or any(
            word in text for word in ("NOAUTH", "WRONGPASS", "HELLO must be called", "uthenticat")):
        if urlsplit(url).password:
            return f"{where} refused the password in SIGMAX_REDIS_URL"
        return f"{where} needs a password; put it in SIGMAX_REDIS_URL (redis://:PASSWORD@host)"
    return f"{where} refused the connection ({text})"


def _connection_reason(exc: BaseException, where: str) -> str:
    text = short_error(exc)
    lowered = text.lower()
    if "refused" in lowered:
        return f"connection refused at {where}"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return f"unknown host in {where}"
    if "timed out" in lowered or "timeout" in lowered:
        return f"{where} did not answer in time"
    return f"cannot reach {where} ({text})"


def _mib(n: int) -> str:
    return f"{n / 1_048_576:.1f} MiB"
