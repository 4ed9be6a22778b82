"""Benchmark — CLI start-up: wall time of ``crmbridge --help`` and ``crmbridge ledger runs`` (issue 19, lazy CLI).

Each command imports what it needs when it runs, so help and a small report do not pay for every subsystem.
Median of N runs (default 5) of each command as a fresh process, with ``python -c pass`` as the baseline
(the interpreter's own start-up) measured in the same run. ``ledger runs`` reads a demo configuration whose state
database holds one run of the core → Zoho job (built first, untimed). Target: ≤ 0.3 s for both commands.

    .venv/bin/python bench/bench_cli.py
    .venv/bin/python bench/bench_cli.py --repeat 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Table, append_results

from crmbridge.demo import DemoEnvironment

TARGET = 0.3
CRMBRIDGE = Path(sys.executable).parent / "crmbridge"


def _wall(argv: list[str], repeat: int) -> list[float]:
    """Wall seconds of ``argv`` as a fresh process, ``repeat`` times (it must exit 0)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="runs of each command (the median is reported)")
    args = p.parse_args()
    t = Table(f"CLI wall time, fresh process each run (median of {args.repeat})",
              ["command", "median s", "min s", "max s", "over baseline s", f"≤{TARGET} s?"])
    with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
            DemoEnvironment(Path(tmp) / "demo", customers=20, seed=3) as env:
        cfg = str(env.config_path)
        for setup in (["keys", "init", "-c", cfg], ["run", "core_to_zoho", "-c", cfg]):   # untimed
            subprocess.run([str(CRMBRIDGE), *setup], check=True, capture_output=True, cwd=ROOT)
        commands = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
            ("crmbridge --help", [str(CRMBRIDGE), "--help"]),
            ("crmbridge ledger runs -c <demo>", [str(CRMBRIDGE), "ledger", "runs", "-c", cfg]),
        ]
        _wall(commands[1][1], 1)   # warm the file-system cache (bytecode, site-packages) before timing
        results = {label: _wall(argv, args.repeat) for label, argv in commands}
    base = statistics.median(results[commands[0][0]])
    for label, times in results.items():
        med = statistics.median(times)
        is_base = label == commands[0][0]
        t.add(label, f"{med:.3f}", f"{min(times):.3f}", f"{max(times):.3f}",
              "" if is_base else f"{med - base:.3f}", "" if is_base else ("yes" if med <= TARGET else "NO"))
        print(f"{label}: median {med:.3f} s", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    append_results("Benchmark: CLI start-up (lazy imports)", [t], [
        f"load average (1 min) when it ran: {load:.2f} on {os.cpu_count()} cores; the machine is shared, so compare "
        "a command with the baseline of the same run",
        "`ledger runs` reads a demo configuration (SQLite state, one run of core_to_zoho over 20 customers); "
        "`python -X importtime -c 'import crmbridge.cli.main'` shows what start-up imports",
    ])


if __name__ == "__main__":
    main()
