"""Benchmark — CPU per record of one job, an earlier version against this checkout, interleaved (issue 19).

On a shared machine the load changes between runs; interleaving (before, after, after, before, ...) gives both sides
the same conditions. The earlier version is a copy of the repository as the package ``crmbridge`` inside a directory
put first on the child's ``PYTHONPATH``::

    mkdir -p /tmp/before/crmbridge && git archive <commit> | tar -x -C /tmp/before/crmbridge
    nice .venv/bin/python bench/bench_interleaved.py --before /tmp/before --n 2000 --rounds 3

Each run: a fresh demo environment of N customers (seed 9, 5 % bad records), crmbridge in a child process
(``bench/_worker.py``), CPU timed around ``run_job``. Prints each run and the min/median per side; appends nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from common import run_worker

from crmbridge.demo import DemoEnvironment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", required=True, type=Path, help="directory holding the earlier crmbridge/ copy")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--job", default="core_to_zoho")
    args = p.parse_args()
    if not (args.before / "crmbridge" / "__init__.py").exists():
        raise SystemExit(f"{args.before}/crmbridge/__init__.py not found: see the module docstring")
    runs: dict[str, list[float]] = {"before": [], "after": []}
    saved = os.environ.get("PYTHONPATH")
    try:
        for r in range(args.rounds):
            for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
                        DemoEnvironment(Path(tmp) / "demo", customers=args.n, bad_fraction=0.05, seed=9) as env:
                    if side == "before":
                        os.environ["PYTHONPATH"] = str(args.before)
                    elif saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
                    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
                    out = run_worker(["run", "--config", str(env.config_path), "--job", args.job], timeout=3600)
                    rep = out["reports"][0]
                    ms = rep["cpu_seconds"] / max(rep["read"], 1) * 1000
                    rss = out.get("peak_rss_mib", out["children_maxrss_mib"])
                    runs[side].append(ms)
                    print(f"round {r + 1} {side}: {ms:.3f} ms/record; read {rep['read']:,}, {rep['actions']}, "
                          f"API calls {rep['api_calls']}, peak RSS {rss:.0f} MiB, "
                          f"load {load}", flush=True)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    for side, v in runs.items():
        print(f"{side}: min {min(v):.3f} median {statistics.median(v):.3f} max {max(v):.3f} ms/record")
    print(f"after/before: min {min(runs['after']) / min(runs['before']):.3f}, "
          f"median {statistics.median(runs['after']) / statistics.median(runs['before']):.3f}")


if __name__ == "__main__":
    main()
