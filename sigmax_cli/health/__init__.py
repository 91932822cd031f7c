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
"""
