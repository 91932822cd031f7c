"""Shared by the start-up benchmarks (startup.py, health_latency.py): fresh-interpreter timing.

Two things make start-up figures trustworthy on a shared 2-core VM:

- Interleaving: the commands run in rounds (baseline, a, b, baseline, a, b, ...), so that a
  slow spell of the machine lands on every command alike instead of on whichever ran then.
- Bytecode: ``pip install`` compiles a package's modules to ``.pyc`` at install time, so an
  installed sigmax never compiles its source at start-up. A checkout installed with
  ``pip install -e .`` under ``PYTHONDONTWRITEBYTECODE=1`` (as on this machine) compiles all
  of sigmax's imported modules at every start, ~40 ms that no user pays. :func:`compile_sigmax`
  writes the bytecode an install would have (into ``__pycache__``, which git ignores).
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def compile_sigmax() -> str:
    """Byte-compile sigmax's packages as ``pip install`` would; returns a line saying so."""
    for package in ("sigmax_cli", "commands"):
        compileall.compile_dir(REPO / package, quiet=1)
    why = " (PYTHONDONTWRITEBYTECODE is set here)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""
    return f"sigmax's modules byte-compiled first, as pip install does{why}"


def interleaved_medians(commands: dict[str, tuple[list[str], dict[str, str] | None]], runs: int) -> dict[str, float]:
    """Median wall time in seconds of each command, run ``runs`` times in interleaved rounds
    after one warm-up round (OS file cache). Exit codes are not checked (health exits 0-3)."""
    times: dict[str, list[float]] = {label: [] for label in commands}
    for round_ in range(runs + 1):
        for label, (cmd, env) in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, env=env)
            if round_:
                times[label].append(time.perf_counter() - t0)
    return {label: statistics.median(values) for label, values in times.items()}
