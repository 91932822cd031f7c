"""Wall time of `sigmax health` with all local checks against a bare `import typer, rich`.

A temporary state directory gets a real ledger as a healthy installation has it (a live bot
beating with a fresh candle, a verified backup, a research item). Then each command runs
several times in fresh interpreters, in interleaved rounds after one warm-up round, with
sigmax's modules byte-compiled as an install has them (see benchmarks/_startup.py), and the
medians are compared with the baseline measured in the same run. Target ratio: <= 4.

    baseline      python -c "import typer, rich"
    floor         import commands.app; load_settings() - what every command that reads its
                  settings pays (pydantic), so that the health checks' own share shows
    sqlite        sigmax health --check ledger,redis,system,heartbeat,killswitch,data,backup
                  (SQLite ledger, no Redis: the default installation; redis is skipped)
    sqlite+redis  the same with SIGMAX_REDIS_URL (when Redis answers at $SIGMAX_BENCH_REDIS,
                  default redis://127.0.0.1:6379/0)
    pg+redis      the same on a PostgreSQL ledger (a database created on $SIGMAX_BENCH_PG,
                  default postgresql://postgres@127.0.0.1:5432/postgres, dropped afterwards)

Then, in one process with everything imported: each local check alone and all of them
together, to show that a run takes about as long as its slowest check, not their sum.

    python benchmarks/health_latency.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _startup import compile_sigmax, interleaved_medians

LOCAL = "ledger,redis,system,heartbeat,killswitch,data,backup"
HOUR = 3_600_000
TARGET = 4.0
FLOOR = "import commands.app\nfrom sigmax_cli.settings import load_settings\nload_settings()"


def healthy_ledger(url: str, home: Path) -> None:
    """Write what a healthy installation has, through the real Ledger."""
    from sigmax_cli.ledger import Ledger
    from sigmax_cli.ledger import schema as s

    now = int(time.time() * 1000)
    with Ledger(url) as ledger:
        ledger.start_run(run_id="bench-live", mode="paper", profile="conservative", exchange="binance",
                         strategy="rules", params={}, symbols=["BTC/USDT"], timeframe="1h",
                         data_files=[{"symbol": "BTC/USDT", "path": None, "sha256": None}], initial_equity=10_000.0)
        ledger.heartbeat("paper:bench:bench-live", "bench-live", "paper", "running",
                         {"bar_ms": now // HOUR * HOUR - HOUR})
        archive = home / "backups" / "sigmax-backup-bench.tar.zst"
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(b"bench")
        with ledger.engine.begin() as conn:
            conn.execute(s.backups.insert().values(path=str(archive), tag="bench", created_ms=now - HOUR,
                                                   sha256="0" * 64, size_bytes=5, verified_ms=now - HOUR + 1))
            conn.execute(s.research_items.insert().values(source="bench", guid="1", title="bench",
                                                          first_seen_ms=now - 60_000))


def redis_url() -> str | None:
    url = os.environ.get("SIGMAX_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url
    except Exception:  # noqa: BLE001 - no Redis: that row is left out
        return None


def pg_database() -> tuple[str, str] | None:
    admin = os.environ.get("SIGMAX_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"sigmax_bench_{uuid.uuid4().hex[:8]}"
    try:
        import psycopg

        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:  # noqa: BLE001 - no PostgreSQL: that row is left out
        return None
    return admin, name


def drop_pg(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def in_process(env: dict[str, str]) -> None:
    """Each local check alone, then all together, in one warm process."""
    os.environ.update(env)
    from sigmax_cli.health.runner import run_checks
    from sigmax_cli.settings import load_settings

    settings = load_settings()
    names = LOCAL.split(",")
    run_checks(settings, names)  # warm-up: imports, connections
    alone = {}
    for name in names:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            run_checks(settings, [name])
            times.append(time.perf_counter() - t0)
        alone[name] = statistics.median(times)
    together = []
    for _ in range(5):
        t0 = time.perf_counter()
        run_checks(settings, names)
        together.append(time.perf_counter() - t0)
    slowest = max(alone, key=alone.get)
    print("\nin one process (medians of 5):")
    for name, seconds in alone.items():
        print(f"  {name:<11} alone        {seconds * 1000:7.1f} ms")
    total = statistics.median(together)
    print(f"  sum of the checks alone   {sum(alone.values()) * 1000:7.1f} ms")
    print(f"  all together              {total * 1000:7.1f} ms  "
          f"({total / alone[slowest]:.2f} x the slowest, {slowest}; {total / sum(alone.values()):.2f} x the sum)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = shutil.which("sigmax")
    health = [script] if script else [sys.executable, "-m", "commands.app"]
    health += ["health", "--check", LOCAL]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SIGMAX_")}
    with tempfile.TemporaryDirectory(prefix="sigmax-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        sqlite = f"sqlite:///{home / 'ledger.db'}"
        healthy_ledger(sqlite, home)
        configs = [("sqlite", {"SIGMAX_HOME": str(home)})]
        redis = redis_url()
        if redis:
            configs.append(("sqlite+redis", {"SIGMAX_HOME": str(home), "SIGMAX_REDIS_URL": redis,
                                             "SIGMAX_REDIS_PREFIX": f"sigmax-bench-{uuid.uuid4().hex[:6]}:"}))
        pg = pg_database()
        if pg and redis:
            pg_url = pg[0].rsplit("/", 1)[0] + f"/{pg[1]}"
            healthy_ledger(pg_url, home)
            configs.append(("pg+redis", {**configs[-1][1], "SIGMAX_DATABASE_URL": pg_url}))
        try:
            print(compile_sigmax())
            env_of = {label: {**base_env, **extra} for label, extra in configs}
            checked = {label: subprocess.run(health, capture_output=True, text=True, env=env)
                       for label, env in env_of.items()}
            commands = {"base": ([sys.executable, "-c", "import typer, rich"], base_env),
                        "floor": ([sys.executable, "-c", FLOOR], env_of["sqlite"]),
                        **{label: (health, env) for label, env in env_of.items()}}
            medians = interleaved_medians(commands, args.runs)
            base = medians["base"]
            print(f"python -c 'import typer, rich'    median {base * 1000:7.1f} ms  ({args.runs} runs)")
            print(f"app + settings (every command)   median {medians['floor'] * 1000:7.1f} ms  "
                  f"ratio {medians['floor'] / base:.2f}  (the floor under any command that reads its settings)")
            for label, check in checked.items():
                seconds = medians[label]
                ratio = seconds / base
                verdict = "met" if ratio <= TARGET else "NOT met"
                status = check.stdout.split(" - ", 1)[0] or check.stderr.strip()
                print(f"sigmax health ({label:<12})    median {seconds * 1000:7.1f} ms  ratio {ratio:.2f}  "
                      f"(target <= {TARGET:g}: {verdict}; {status}, exit {check.returncode})")
            in_process({**configs[-1][1]})
        finally:
            if pg:
                drop_pg(*pg)


if __name__ == "__main__":
    main()
