"""Benchmark 4 — incremental: after a full sync, 1 % of the source changed → write calls proportional to the
changes; nothing changed → zero write calls. Both jobs (core → Zoho one-way, core ↔ Fxiaoke two-way), in one run.

    .venv/bin/python bench/bench_incremental.py              # N = 2,000
    .venv/bin/python bench/bench_incremental.py --n 10000 --changed 0.01
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from common import Table, append_results, calls_by_kind, ceil_div, run_worker, snapshot_calls

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.report import COMPLETED

#: a segment change that stays valid for the party type (individual ↔ individual, organisation ↔ organisation)
SWAP = {"MASS": "AFFLUENT", "AFFLUENT": "MASS", "WEALTH": "PRIVATE", "PRIVATE": "WEALTH", "MICRO": "SMALL",
        "SMALL": "MICRO", "MEDIUM": "LARGE", "LARGE": "MEDIUM", "STRATEGIC": "LARGE"}
JOBS = {"core_to_zoho": ("zoho", 100), "core_fxiaoke": ("fxiaoke", 1)}


def writes(calls: dict[str, int]) -> int:
    return sum(v for k, v in calls.items() if k.startswith("POST") and ("upsert" in k or "/data/" in k and
                                                                          "query" not in k) or k.startswith("PUT"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--changed", type=float, default=0.01, help="fraction of customers changed after the full sync")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--max-wait", type=float, default=120, help="longest wait for the changes' stamps to pass")
    args = p.parse_args()
    t = Table("Incremental runs after a full sync (write calls at each target)",
              ["N", "job", "phase", "source changed", "read", "written", "write calls", "minimum write calls",
               "other calls", "CPU s", "wall s", "verdict"])
    with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
            DemoEnvironment(Path(tmp) / "demo", customers=args.n, bad_fraction=0.05, seed=args.seed) as env:
        sims = (env.core, env.zoho, env.fxiaoke)
        k_changed = max(1, round(args.n * args.changed))
        changed_ids = [env.core.store.custno(i) for i in sorted(random.Random(args.seed).sample(range(args.n),
                                                                                                k_changed))]
        for phase in ("full", "changed", "unchanged"):
            if phase == "changed":
                for k, custno in enumerate(changed_ids):
                    seg = env.core.store.get(custno)["segment"]
                    env.core.store.touch(custno, email=f"bench.changed.{k}@example.cn", segment=SWAP.get(seg, seg))
                # the simulator stamps changes at least 1 s apart, so a burst of changes is stamped up to k seconds
                # ahead, and the mapping takes a consent's capture time from the stamp: a consent "captured in the
                # future" does not count yet (skipped-no-consent). Wait until the stamps are in the past.
                time.sleep(min(len(changed_ids) + 2, args.max_wait))
            for job, (system, batch_max) in JOBS.items():
                before = snapshot_calls(*sims)
                res = run_worker(["run", "--config", str(env.config_path), "--job", job], timeout=args.timeout)
                rep = res["reports"][0]
                if rep["status"] not in COMPLETED:   # partial: the seeded bad records are dead letters
                    raise RuntimeError(f"{job} {phase}: {rep['status']} {rep['error']}")
                seen = calls_by_kind(before, *sims)
                tcalls = seen["ZohoSimulator" if system == "zoho" else "FxiaokeSimulator"]
                w = writes(tcalls)
                written = rep["actions"].get("created", 0) + rep["actions"].get("updated", 0)
                other = sum(sum(c.values()) for c in seen.values()) - w
                minimum = ceil_div(written, batch_max)
                if phase == "unchanged":
                    verdict = "yes (0 writes)" if w == 0 else f"NO ({w} writes)"
                elif phase == "changed":
                    verdict = "yes" if w <= max(minimum, 1) * 1.02 + 0.99 and written <= len(changed_ids) else "NO"
                else:
                    verdict = ""
                n_changed = {"changed": len(changed_ids), "full": args.n}.get(phase, 0)
                t.add(args.n, job, phase, n_changed, rep["read"], written, w, minimum, other, rep["cpu_seconds"],
                      rep["wall_seconds"], verdict)
                print(f"{phase} {job}: read {rep['read']:,}, written {written:,}, {w} write calls, {other} other "
                      f"calls {dict(tcalls)}; actions {rep['actions']}", flush=True)
    append_results("Benchmark 4: incremental", [t], [
        f"'changed': {len(changed_ids)} customers ({args.changed:.0%}) had their e-mail and segment changed in the "
        "core after the full sync (a teller's change: new modification number and stamp); some are organisations "
        "(out of scope for Zoho Contacts) or defective records (dead letters), so 'written' <= changed; in the "
        "two-way job the conflict policy gives contact points to Fxiaoke, so only the segment is carried there",
        "other calls = source reads, token, target reads (two-way reads Fxiaoke's changes first)"])


if __name__ == "__main__":
    main()
