"""Benchmark — one interleaved series: the bare reference sync, crmbridge at an earlier commit, crmbridge as checked
out (issue 19). CPU per record of core_to_zoho and core_fxiaoke, each against the reference of the same series.

The earlier commit is exported with ``git archive`` into a temporary directory and put first on ``PYTHONPATH`` of
its worker processes (the checked-out package stays installed for everything else). Each run is its own child
process (``bench/_worker.py``) against its own fresh demo environment (same N, same seed); the simulators run in
this process. Order: reference, then per job before/after/after/before, then reference again.

    .venv/bin/python bench/bench_before_after.py --base fab4e1f            # N = 2,000
    .venv/bin/python bench/bench_before_after.py --base fab4e1f --n 10000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, WORKER, Table, append_results

TARGETS = {"core_to_zoho": 2.5, "core_fxiaoke": 3.5}


def export(rev: str, into: Path) -> Path:
    """The package at ``rev``, importable as ``crmbridge`` from the returned directory."""
    pkg = into / "crmbridge"
    pkg.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(pkg)], input=archive, check=True)
    return into


def worker(args: list[str], pythonpath: Path | None, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    p = subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _party_jobs_only(config_path: Path) -> None:
    """The demo's configuration with only the two party jobs and the systems they use, so an earlier commit (which
    knows neither the object jobs nor their systems' settings) reads the same file."""
    import yaml

    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    cfg["jobs"] = {k: v for k, v in cfg["jobs"].items() if k in TARGETS}
    used = {j[side].split(".")[0] for j in cfg["jobs"].values() for side in ("source", "target")}
    cfg["systems"] = {k: v for k, v in cfg["systems"].items() if k in used}
    cfg["systems"]["corebank"].pop("operations", None)   # the consent write-back the responses job needs
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")


def one_run(side: str, job: str, n: int, seed: int, base: Path, timeout: float) -> dict[str, Any]:
    from crmbridge.demo import DemoEnvironment
    from crmbridge.sync.report import COMPLETED

    with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
            DemoEnvironment(Path(tmp) / "demo", customers=n, bad_fraction=0.05, seed=seed) as env:
        _party_jobs_only(env.config_path)
        if side == "reference":
            out = worker(["reference", "--config", str(env.config_path)], None, timeout)["reference"]
        else:
            rep = worker(["run", "--config", str(env.config_path), "--job", job],
                         base if side == "before" else None, timeout)["reports"][0]
            if rep["status"] not in COMPLETED:
                raise RuntimeError(f"{job} ({side}) at N={n}: {rep['status']} {rep['error']}")
            out = rep
    ms = out["cpu_seconds"] / out["read"] * 1000
    print(f"N={n:,} {side} {job}: {out['read']:,} read, CPU {out['cpu_seconds']:.2f} s ({ms:.3f} ms/record)",
          flush=True)
    return {"side": side, "job": job, "read": out["read"], "cpu": out["cpu_seconds"], "ms": ms}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="the earlier commit (e.g. the branch point)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    order = [("reference", "core_to_zoho")]
    for job in TARGETS:
        order += [("before", job), ("after", job), ("after", job), ("before", job)]
    order.append(("reference", "core_to_zoho"))
    runs = Table("Each run, in order (own fresh demo environment, child process; CPU = the sync loop only)",
                 ["#", "side", "job", "read", "CPU s", "ms/record"])
    summary = Table(f"CPU per record against the bare reference of the same series: before = {rev}, "
                    f"after = {head} (median of 2 each)",
                    ["job", "before ms/rec", "after ms/rec", "reference ms/rec", "before ratio", "after ratio",
                     "after range", "target", "met?"])
    with tempfile.TemporaryDirectory(prefix="crmbridge-base-") as tmp:
        base = export(args.base, Path(tmp))
        results = [one_run(side, job, args.n, args.seed, base, args.timeout) for side, job in order]
    for i, r in enumerate(results, 1):
        runs.add(i, r["side"], "reference sync" if r["side"] == "reference" else r["job"], r["read"], r["cpu"],
                 f"{r['ms']:.3f}")
    refs = [r["ms"] for r in results if r["side"] == "reference"]
    ref = statistics.median(refs)
    for job, target in TARGETS.items():
        before = [r["ms"] for r in results if r["side"] == "before" and r["job"] == job]
        after = [r["ms"] for r in results if r["side"] == "after" and r["job"] == job]
        b, a = statistics.median(before), statistics.median(after)
        summary.add(job, f"{b:.3f}", f"{a:.3f}", f"{ref:.3f}", f"{b / ref:.2f}", f"{a / ref:.2f}",
                    f"{min(after) / max(refs):.2f}–{max(after) / min(refs):.2f}", f"≤{target}",
                    "yes" if a / ref <= target else "NO")
    append_results(f"Benchmark: before/after against the bare reference sync, N={args.n:,} (issue 19)",
                   [summary, runs], [
                       "reference = bench/bench_reference.py's bare sync (core → Zoho Contacts), the denominator of "
                       "both jobs' ratios",
                       f"before = the package at {rev} (git archive, first on the workers' PYTHONPATH); after = the "
                       "checked-out package",
                       "ms/record = CPU seconds of the worker's run_job / source records read; the simulators run "
                       "in the parent process"])


if __name__ == "__main__":
    main()
