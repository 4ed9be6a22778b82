"""Benchmark — a holdings job (FLEXCUBE account feed → Zoho custom holdings module) at N holdings: records per
second of the first full run (every holding created) and of a second run with nothing changed.

The parents are seeded, not synced: each owner gets a Zoho Contact (in the simulator) and the two cross-references a
party job would have left (core customer → party, Zoho Contact → party), so the run measures the holdings pipeline
alone (map in, parent lookup, sealing the object record, upsert, ledger), not a 100,000-party sync before it.

    .venv/bin/python bench/bench_holdings.py               # N ≈ 100,000 holdings
    .venv/bin/python bench/bench_holdings.py --customers 5000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from common import Table, append_results

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import COMPLETED

JOB = "core_holdings_to_zoho"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--customers", type=int, default=100_000, help="core customers (customer c holds c % 3 accounts)")
    p.add_argument("--batch", type=int, default=2000)
    args = p.parse_args()
    t = Table(f"Holdings job, FLEXCUBE accounts → Zoho Holdings ({args.customers:,} customers)",
              ["run", "holdings read", "created", "unchanged", "wall s", "CPU s (whole process)", "records/s",
               "Zoho write calls"])
    with tempfile.TemporaryDirectory() as tmp, \
            DemoEnvironment(Path(tmp) / "demo", customers=args.customers, bad_fraction=0.0, seed=3) as env:
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["jobs"][JOB]["batch_size"] = args.batch
        ops = cfg["systems"]["corebank_accounts"]["operations"]
        ops["list"]["paging"]["page_size"] = 1000
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        rt = bootstrap(env.config_path)
        try:
            owners = sorted({env.core.accounts.get(a)["CUSTNO"] for a in env.core.accounts.numbers})
            seeded = time.monotonic()
            with rt.store.transaction() as tx:
                for custno in owners:
                    pid = str(uuid.uuid4())
                    zid = env.zoho.add("Contacts", Last_Name="客户", Party_ID=pid)
                    tx.put_xref("corebank", "Customer", custno, pid)
                    tx.put_xref("zoho_cn", "Contacts", zid, pid)
            print(f"seeded {len(owners):,} parents in {time.monotonic() - seeded:.1f} s", flush=True)
            n = len(env.core.accounts.numbers)
            for label in ("first (all new)", "second (nothing changed)"):
                before = sum(v for k, v in env.zoho.requests_seen.items() if "upsert" in k)
                c0, w0 = cpu(), time.monotonic()
                rep = run_job(rt, JOB)
                wall, used = time.monotonic() - w0, cpu() - c0
                assert rep.status in COMPLETED, rep.error
                writes = sum(v for k, v in env.zoho.requests_seen.items() if "upsert" in k) - before
                t.add(label, f"{rep.read:,}", f"{rep.outcomes.get('created', 0):,}",
                       f"{rep.outcomes.get('unchanged', 0) + rep.outcomes.get('skipped', 0):,}", f"{wall:.1f}",
                      f"{used:.1f}", f"{rep.read / wall:,.0f}", f"{writes:,}")
                print(t.rows[-1], flush=True)
            assert len(env.zoho.stores["Holdings"].records) == n, "every holding exactly once"
        finally:
            rt.close()
    append_results("holdings job records per second", [t], [
        "the simulators run in the benchmark's process: CPU s include theirs (SOAP serialisation, the Zoho "
        "simulator's upserts); parents seeded, not synced (see bench/bench_holdings.py)"])


if __name__ == "__main__":
    main()
