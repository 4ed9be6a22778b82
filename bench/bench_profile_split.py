"""Benchmark — where a job's CPU goes, by stage: a CPU-time sampling profile of one run (issue 19).

A child process runs the job (the simulators stay in this process) with ``setitimer(ITIMER_PROF)``: at each tick of
its CPU time the main thread's stack is read and the sample goes to the innermost stage found on it (map in, model
validation, map out, SQL, ledger lineage…). Sampling CPU time this way does not inflate call-heavy Python the way
cProfile does (cProfile's per-call cost doubled the mapping's share), so the split is close to what the run spends.
With ``--base REV`` the same is measured for the package at an earlier commit (``git archive``, first on the child's
``PYTHONPATH``), in the same series.

    .venv/bin/python bench/bench_profile_split.py --job core_to_zoho --base fab4e1f
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: (stage, file path part, function name or "" for any): the innermost frame matching a stage decides
STAGES = [
    ("C3 refusal scan (canonical/c3.py)", "canonical/c3.py", "refuse_c3"),
    ("model validation (pydantic, identifiers, phones)", "canonical/mapping/engine.py", "_validate"),
    ("map in (mapping steps, transforms)", "canonical/mapping/engine.py", "_run_in"),
    ("map out (mapping steps, transforms)", "canonical/mapping/engine.py", "map_out"),
    ("canonical JSON + content hash", "canonical/model.py", "canonical_dict"),
    ("canonical JSON + content hash", "canonical/model.py", "hash_canonical"),
    ("masked payload for the ledger (canonical/masking.py)", "canonical/masking.py", "mask_vendor_payload"),
    ("ledger lineage (sync/state/lineage.py)", "sync/state/lineage.py", "write_lineage"),
    ("ledger append (signing, encryption of the diff)", "sync/state/ledger.py", "append"),
    ("SQL (SQLAlchemy + SQLite)", "sqlalchemy/engine/base.py", "execute"),
    ("encryption of snapshots and letters", "sync/security/protect.py", "seal"),
    ("encryption of snapshots and letters", "sync/security/protect.py", "unseal"),
    ("identity (match rules, blind index)", "sync/engine/oneway.py", "_identity_keys"),
    ("identity (match rules, blind index)", "sync/identity", ""),
    ("write to the target (HTTP, JSON)", "sync/engine/records.py", "_write"),
    ("read the source (SOAP: zeep, lxml)", "adapters/base.py", "extract"),
]
OTHER = "other (engine bookkeeping, record hashes, diffs, state lookups)"


def child(config: str, job: str, out: str) -> None:
    from crmbridge.sync.bootstrap import bootstrap
    from crmbridge.sync.engine import run_job

    rt = bootstrap(config)
    counts: collections.Counter[str] = collections.Counter()

    def tick(signum: int, frame: Any) -> None:
        f = frame
        while f is not None:
            fn, name = f.f_code.co_filename, f.f_code.co_name
            for stage, part, func in STAGES:
                if part in fn and (not func or name == func):
                    counts[stage] += 1
                    return
            f = f.f_back
        counts[OTHER] += 1

    signal.signal(signal.SIGPROF, tick)
    cpu0 = time.process_time()
    signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
    try:
        rep = run_job(rt, job)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)
    cpu = time.process_time() - cpu0
    rt.close()
    Path(out).write_text(json.dumps({"counts": counts, "cpu": cpu, "read": rep.read, "status": rep.status}))


def measure(job: str, n: int, seed: int, pythonpath: Path | None) -> dict[str, Any]:
    from crmbridge.demo import DemoEnvironment

    with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
            DemoEnvironment(Path(tmp) / "demo", customers=n, bad_fraction=0.05, seed=seed) as demo:
        env = dict(os.environ)   # the demo's secrets are in the environment now
        env.pop("PYTHONPATH", None)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        out = Path(tmp) / "split.json"
        subprocess.run([sys.executable, __file__, "--child", str(demo.config_path), job, str(out)], check=True,
                       env=env, cwd=Path(__file__).resolve().parent.parent)
        return json.loads(out.read_text())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    from bench_before_after import export
    from common import Table, append_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--job", default="core_to_zoho")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--base", help="also measure the package at this earlier commit")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="crmbridge-base-") as tmp:
        sides = [("after", None)]
        if args.base:
            sides.insert(0, ("before", export(args.base, Path(tmp))))
        results = {side: measure(args.job, args.n, args.seed, path) for side, path in sides}
    cols = ["stage"]
    for side in results:
        cols += [f"{side}: share", f"{side}: ms/record"]
    table = Table(f"{args.job}, N={args.n:,}: CPU by stage (sampled every 1 ms of CPU time)", cols)
    stages = list(dict.fromkeys([s for s, _, _ in STAGES] + [OTHER]))
    for stage in stages:
        row: list[Any] = [stage]
        for r in results.values():
            total = sum(r["counts"].values()) or 1
            share = r["counts"].get(stage, 0) / total
            row += [f"{100 * share:.0f} %", f"{share * r['cpu'] / r['read'] * 1000:.3f}"]
        table.add(*row)
    total_row: list[Any] = ["whole run (CPU per record)"]
    for r in results.values():
        total_row += ["100 %", f"{r['cpu'] / r['read'] * 1000:.3f}"]
    table.add(*total_row)
    append_results(f"Benchmark: CPU by stage, {args.job} (issue 19)", [table], [
        "a child process runs the job under setitimer(ITIMER_PROF): each ~1 ms of its CPU time, the innermost stage "
        "on the main thread's stack gets the sample; ms/record = share × the run's CPU seconds / records read",
        *([f"before = the package at {args.base} (git archive, first on the child's PYTHONPATH)"] if args.base
          else [])])


if __name__ == "__main__":
    main()
