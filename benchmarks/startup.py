"""Start-up time of `sigmax --help` against a bare `import typer, rich`.

Runs each command several times in fresh interpreters (after one warm-up run each, so the
OS file cache is warm for both) and prints the medians and their ratio. Target: <= 1.5,
which holds only while ccxt, pandas, torch and stable-baselines3 are imported lazily.

    python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = shutil.which("sigmax")
    help_cmd = [script, "--help"] if script else [sys.executable, "-m", "commands.app", "--help"]
    baseline_cmd = [sys.executable, "-c", "import typer, rich"]
    base = median_seconds(baseline_cmd, args.runs)
    helped = median_seconds(help_cmd, args.runs)
    ratio = helped / base
    print(f"python -c 'import typer, rich'  median {base * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"sigmax --help                   median {helped * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"ratio                           {ratio:.2f}  (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
