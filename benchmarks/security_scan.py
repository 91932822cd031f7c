"""Wall time of `sigmax security-scan` on this project, per scanner.

The dependency audit runs against the OSV-compatible server of tests/support/osv_server.py
on 127.0.0.1 (no vulnerability service is reachable here), auditing the installed
environment. Baseline, measured in the same run: reading every file the scanners walk
once (``iter_files`` + ``read_bytes``), the floor any scanner pays. Each scanner's time is
printed in seconds and as a ratio to that baseline; medians over ``--runs`` scans.

    python benchmarks/security_scan.py [--runs 3] [PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sigmax_cli.security.base import iter_files  # noqa: E402
from sigmax_cli.security.scan import run_scan  # noqa: E402
from sigmax_cli.settings import load_settings  # noqa: E402
from tests.support.osv_server import OsvServer  # noqa: E402


def read_everything(path: Path) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    files = size = 0
    for file in iter_files(path):
        size += len(file.read_bytes())
        files += 1
    return time.perf_counter() - t0, files, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(ROOT))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = Path(args.path).resolve()
    baseline = ROOT / ".ci" / "security-baseline.toml"
    settings = load_settings()
    per_scanner: dict[str, list[float]] = {}
    totals, reads = [], []
    with OsvServer() as osv:
        for _ in range(args.runs):
            seconds, files, size = read_everything(path)
            reads.append(seconds)
            t0 = time.perf_counter()
            report = run_scan(path, settings, osv_url=osv.query_url,
                              baseline=baseline if baseline.is_file() else None)
            totals.append(time.perf_counter() - t0)
            for outcome in report.outcomes:
                per_scanner.setdefault(outcome.tool, []).append(outcome.seconds)
    base = statistics.median(reads)
    print(f"scanned {path}: {files} files, {size / 1e6:.1f} MB; {args.runs} runs, medians")
    print(f"baseline: read every file once     {base * 1000:8.1f} ms")
    for name, times in per_scanner.items():
        med = statistics.median(times)
        print(f"{name:<34} {med * 1000:8.1f} ms  ratio {med / base:8.1f}")
    total = statistics.median(totals)
    print(f"{'full scan (wall)':<34} {total * 1000:8.1f} ms  ratio {total / base:8.1f}")
    print(f"last scan: exit {report.exit_code}, {len(report.findings)} findings, "
          f"{len(report.suppressed)} hidden by baseline, failed: {[o.tool for o in report.failures] or 'none'}")


if __name__ == "__main__":
    main()
