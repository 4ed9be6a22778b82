"""Benchmark 5 — memory: peak RSS of the crmbridge process syncing N customers (core → Zoho), for two sizes;
target: peak RSS at the larger ≤ 1.2 × at the smaller (the issue's sizes: 1,000,000 against 100,000).

Each size runs in its own DemoEnvironment and its own child process, so each peak is clean (VmHWM of the child;
the simulators, which hold every record they are sent, live in this parent process). The SOAP core simulator
materialises its customers lazily, so large N costs the source side only a sorted index.

    .venv/bin/python bench/bench_memory.py                       # 1,000 against 10,000 (ratio 10, like the issue)
    .venv/bin/python bench/bench_memory.py --n 100000 --n 1000000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import Table, append_results, run_worker

from crmbridge.demo import DemoEnvironment

TARGET = 1.2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, action="append", help="sizes (repeatable; the first is the reference); "
                   "default 1000 and 10000")
    p.add_argument("--job", default="core_to_zoho")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--timeout", type=float, default=7200)
    args = p.parse_args()
    sizes = args.n or [1000, 10000]
    t = Table(f"Peak RSS of the crmbridge process ({args.job}), one child process per size",
              ["N", "read", "written", "wall s", "peak RSS MiB", "× the first size", f"≤{TARGET}?"])
    base = None
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
                DemoEnvironment(Path(tmp) / "demo", customers=n, bad_fraction=0.05, seed=args.seed) as env:
            res = run_worker(["run", "--config", str(env.config_path), "--job", args.job], timeout=args.timeout)
        rep = res["reports"][0]
        rss = res["peak_rss_mib"]
        base = base or rss
        ratio = rss / base
        written = rep["actions"].get("created", 0) + rep["actions"].get("updated", 0)
        t.add(n, rep["read"], written, rep["wall_seconds"], rss, f"{ratio:.3f}",
              "" if n == sizes[0] else ("yes" if ratio <= TARGET else "NO"))
        print(f"N={n:,}: peak RSS {rss:.0f} MiB ({ratio:.2f}x) in {rep['wall_seconds']:.0f} s", flush=True)
    append_results("Benchmark 5: memory", [t], [
        "peak RSS = VmHWM of the child process that ran bootstrap + run_job (interpreter, imports, SQLAlchemy, zeep "
        "included)"])


if __name__ == "__main__":
    main()
