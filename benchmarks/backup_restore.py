"""Backup and restore wall time of a PostgreSQL ledger against plain pg_dump -Fc / pg_restore.

Builds a ledger of at least one million fills in a scratch PostgreSQL database (prices
cycle through the real Binance BTC/USDT and ETH/USDT 1h closes of
../shared/data/ohlcv/binance_spot_freqtrade_2020-12_2021-07), then, in the same run and
alternating per repeat:

* baseline backup: ``pg_dump -Fc -f FILE``;
* sigmax backup: ``create_backup(include=["ledger"])`` as ``sigmax backup --include ledger``
  does it: snapshot row counts, pg_dump -Fc, tar member, sha256, fsync, rename, verify
  (re-hash + pg_restore --list), ledger record;
* baseline restore: ``pg_restore -d NEW_EMPTY_DB FILE``;
* sigmax restore into a new empty database (the lost-server case): verify, plan, safety
  backup of the (empty) target, ``pg_restore --clean --if-exists --single-transaction``.

Prints the median of each and the ratios sigmax / baseline (target <= 1.3). With
``--over-existing`` it also times one restore over the populated database, whose safety
backup is a full pg_dump of its own (reported, no target).

    python benchmarks/backup_restore.py [--fills 1000000] [--repeat 3] [--over-existing]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data")) / "ohlcv" / \
    "binance_spot_freqtrade_2020-12_2021-07"
ADMIN = os.environ.get("SIGMAX_BENCH_PG", os.environ.get("SIGMAX_TEST_PG",
                                                          "postgresql://postgres@127.0.0.1:5432/postgres"))


def db_url(name: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + f"/{name}"


def admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def populate(url: str, fills: int) -> None:
    """Ledger schema (sigmax's migrations), 20 runs, ``fills`` fills, one equity row per 10 fills."""
    import psycopg

    from sigmax_cli.ledger import Ledger

    Ledger(url).close()
    closes = {sym: [row[4] for row in json.loads((DATA / f"{sym.replace('/', '_')}-1h.json").read_text())]
              for sym in ("BTC/USDT", "ETH/USDT")}
    t0 = 1_606_780_800_000
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        runs = [f"bench-{i:02d}" for i in range(20)]
        for run in runs:
            cur.execute("INSERT INTO runs (run_id, mode, profile, exchange, strategy, params_json, symbols_json, "
                        "timeframe, data_files_json, initial_equity, started_ms, status, host, pid) VALUES "
                        "(%s, 'paper', 'conservative', 'binance', 'rules', '{}', '[\"BTC/USDT\",\"ETH/USDT\"]', "
                        "'1h', '[]', 10000, %s, 'completed', 'bench', 1)", (run, t0))
        with cur.copy("COPY fills (run_id, client_order_id, trade_id, symbol, side, price, amount, fee, "
                      "fee_currency, liquidity, ts_ms) FROM STDIN") as copy:
            for i in range(fills):
                sym = "BTC/USDT" if i % 3 else "ETH/USDT"
                series = closes[sym]
                price = series[i % len(series)]
                amount = round(0.001 + (i % 97) * 0.0005, 6)
                copy.write_row((runs[i % 20], f"c{i:08d}", f"t{i:08d}", sym, "buy" if i % 2 else "sell", price,
                                amount, round(price * amount * 0.001, 8), "USDT", "taker", t0 + i * 60_000))
        with cur.copy("COPY equity (run_id, ts_ms, equity, cash, exposure, benchmark) FROM STDIN") as copy:
            for i in range(fills // 10):
                copy.write_row((runs[i % 20], t0 + i * 3_600_000, 10_000 + i % 500, 5_000.0, 5_000 + i % 500,
                                10_000.0))
        conn.commit()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--over-existing", action="store_true")
    args = parser.parse_args()

    from sigmax_cli.backup.create import create_backup
    from sigmax_cli.backup.restore import restore
    from sigmax_cli.risk.killswitch import KillSwitch
    from sigmax_cli.settings import load_settings

    tag = uuid.uuid4().hex[:8]
    source = f"sigmax_bench_{tag}"
    made: list[str] = [source]
    admin(f'CREATE DATABASE "{source}"')
    work = Path(tempfile.mkdtemp(prefix="sigmax-bench-"))
    try:
        t = timed(lambda: populate(db_url(source), args.fills))
        print(f"ledger: {args.fills:,} fills + {args.fills // 10:,} equity rows in PostgreSQL ({t:.1f} s to load)")
        home = work / "home"
        KillSwitch(home).engage("benchmark", by="bench")
        settings = load_settings(home=home, overrides={"database_url": db_url(source)})
        figures: dict[str, list[float]] = {k: [] for k in ("pg_dump", "backup", "pg_restore", "restore")}
        archive = None
        for i in range(args.repeat):
            dump = work / f"base-{i}.dump"
            figures["pg_dump"].append(timed(lambda dump=dump: run(["pg_dump", "-Fc", "-f", str(dump), db_url(source)])))
            result = {}
            figures["backup"].append(timed(lambda result=result: result.update(
                r=create_backup(settings, include=["ledger"], out_dir=work / "archives"))))
            archive = result["r"].path
            base_db, ours_db = f"sigmax_bench_{tag}_b{i}", f"sigmax_bench_{tag}_o{i}"
            for name in (base_db, ours_db):
                admin(f'CREATE DATABASE "{name}"')
                made.append(name)
            figures["pg_restore"].append(timed(lambda dump=dump, db=base_db: run(
                ["pg_restore", "-d", db_url(db), str(dump)])))
            target = load_settings(home=home, overrides={"database_url": db_url(ours_db)})
            figures["restore"].append(timed(lambda target=target, archive=archive: restore(
                target, archive, only=["ledger"])))
            for name in (base_db, ours_db):
                admin(f'DROP DATABASE "{name}" WITH (FORCE)')
                made.remove(name)
            dump.unlink()
        med = {k: statistics.median(v) for k, v in figures.items()}
        size = archive.stat().st_size if archive else 0
        print(f"repeats: {args.repeat} (medians; all four timed in the same run, alternating)")
        print(f"  pg_dump -Fc               {med['pg_dump']:7.2f} s")
        print(f"  sigmax backup (verified)  {med['backup']:7.2f} s   ratio {med['backup'] / med['pg_dump']:.2f}"
              f"  (archive {size / 1e6:.1f} MB)")
        print(f"  pg_restore (empty db)     {med['pg_restore']:7.2f} s")
        print(f"  sigmax restore (empty db) {med['restore']:7.2f} s   ratio {med['restore'] / med['pg_restore']:.2f}")
        ok = max(med["backup"] / med["pg_dump"], med["restore"] / med["pg_restore"]) <= 1.3
        print(f"target ratio <= 1.3: {'met' if ok else 'NOT met'}")
        if args.over_existing and archive is not None:
            t = timed(lambda: restore(settings, archive, only=["ledger"]))
            print(f"  sigmax restore over the populated ledger (incl. a full safety backup) {t:.2f} s, "
                  f"{t / med['pg_restore']:.2f} x pg_restore")
    finally:
        for name in made:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
