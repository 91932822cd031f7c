"""``sigmax health``: the health checks cron and monitoring systems rely on.

Layout (one small file per check, after pip-audit's plug-in shape)::

    base.py        Check (ABC: name, timeout_s, run(ctx)), CheckResult, Skipped, Status, Limits
    runner.py      run_checks(): every check at once, each within its time limit; HealthReport
    formats.py     monitoring-plugin line + perfdata, health+json, Prometheus textfile, rich table
    lock.py        the non-blocking lock that keeps cron runs from overlapping
    db.py          read-only ledger access through the DB-API drivers (fast start-up)
    ledger.py redis.py exchange.py system.py heartbeat.py killswitch.py data.py backup.py orders.py

Exit codes (the monitoring-plugin convention): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
Thresholds come from the ``[health]`` section of the profile (``HealthSettings``); each
check module's docstring says what it measures, in which unit, and why its defaults are
what they are.

Nothing heavy is imported here or at the top of a check module: psutil, redis, psycopg,
ccxt and prometheus_client are imported by the check or format that uses them.

Start-up is most of a cron run's cost (``benchmarks/health_latency.py``, 2-core VM, against
``python -c "import typer, rich"`` in the same run): the local checks take 3.0-3.2 times
that baseline on the default SQLite ledger, 4.3-4.7 with Redis, 6.0-6.5 with PostgreSQL and
Redis.
The checks themselves run in about 30 ms together; the rest is importing: Typer's option
parsing and the settings both need pydantic (~70 ms), redis-py imports its asyncio client
with the package (~60 ms), psycopg ~68 ms. Settings are merged without pydantic-settings and
only the invoked command's module is imported, for that reason.
"""
