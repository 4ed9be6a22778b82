"""Benchmark 2 — CPU against the floor: crmbridge's per-record CPU over the unavoidable primitives' CPU.

One child process runs the core → Zoho job, then puts the same source records through only the unavoidable
primitives (pydantic validation of the canonical model with its identifier and phone validators, AES-GCM of the
personal fields, a keyed content hash, one SQLite insert each). Target: crmbridge ≤ 2 × the floor.

    .venv/bin/python bench/bench_cpu_floor.py            # N = 2,000
    .venv/bin/python bench/bench_cpu_floor.py --n 10000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import Table, append_results, run_worker

from crmbridge.demo import DemoEnvironment

TARGET = 2.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, action="append", help="customers (repeatable); default 2000")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args()
    t = Table("CPU per record: crmbridge against the floor (same process, same records)",
              ["N", "job", "crmbridge CPU s", "crmbridge ms/rec", "floor CPU s", "floor ms/rec", "ratio",
               f"≤{TARGET}?"])
    st = Table("Where crmbridge's CPU goes beyond the floor: stages timed alone on the same records (ms/record)",
               ["N", "stage", "ms/record", "share of crmbridge"])
    for n in args.n or [2000]:
        with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
                DemoEnvironment(Path(tmp) / "demo", customers=n, bad_fraction=0.05, seed=args.seed) as env:
            res = run_worker(["run", "--config", str(env.config_path), "--job", "core_to_zoho", "--floor"],
                             timeout=args.timeout)
        rep, fl = res["reports"][0], res["floor"]
        per = rep["cpu_seconds"] / rep["read"] * 1000
        floor_per = fl["floor_cpu_seconds"] / fl["records"] * 1000
        ratio = per / floor_per
        print(f"N={n:,}: crmbridge {per:.2f} ms/record CPU, floor {floor_per:.2f} ms/record: {ratio:.1f}x", flush=True)
        t.add(n, "core_to_zoho", rep["cpu_seconds"], per, fl["floor_cpu_seconds"], floor_per, f"{ratio:.2f}",
              "yes" if ratio <= TARGET else "NO")
        rest = per
        for stage, cpu in fl["stages"].items():
            ms = cpu / fl["records"] * 1000
            rest -= ms
            st.add(n, stage, f"{ms:.3f}", f"{ms / per:.0%}")
        st.add(n, "the rest: identify, state, encrypt, ledger, write (crmbridge − stages above)", f"{rest:.3f}",
               f"{rest / per:.0%}")
        st.add(n, "crmbridge, whole run", f"{per:.3f}", "100%")
        needed = sum(fl["stages"].values()) / fl["records"] * 1000
        print(f"  stages alone {needed:.2f} ms/record; crmbridge over them: {per / needed:.2f}x", flush=True)
    append_results("Benchmark 2: CPU against the floor", [t, st], [
        "crmbridge CPU = process CPU time of run_job in the child (includes its SOAP/HTTP client work; the "
        "simulators run in the parent); floor = parse_party + canonical JSON + HMAC-SHA256 + AES-GCM + one "
        "sqlite3 INSERT per record (commit per 100), over records read and mapped beforehand, untimed",
        "per-record figures divide by every source record read (5 % bad ones fail validation in both)"])


if __name__ == "__main__":
    main()
