"""Start-up time of `sigmax --help` against a bare `import typer, rich`.

Runs each command several times in fresh interpreters, in interleaved rounds after one
warm-up round, with sigmax's modules byte-compiled as an install has them (see
benchmarks/_startup.py), and prints the medians and their ratio. Target: <= 1.5, which holds
only while ccxt, pandas, torch and stable-baselines3 are imported lazily.

    python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from _startup import compile_sigmax, interleaved_medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = shutil.which("sigmax")
    help_cmd = [script, "--help"] if script else [sys.executable, "-m", "commands.app", "--help"]
    baseline_cmd = [sys.executable, "-c", "import typer, rich"]
    subprocess.run(help_cmd, check=True, capture_output=True)  # it must work before it is timed
    print(compile_sigmax())
    medians = interleaved_medians({"base": (baseline_cmd, None), "help": (help_cmd, None)}, args.runs)
    base, helped = medians["base"], medians["help"]
    ratio = helped / base
    print(f"python -c 'import typer, rich'  median {base * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"sigmax --help                   median {helped * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"ratio                           {ratio:.2f}  (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
