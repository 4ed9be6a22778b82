"""Benchmark — the state database's size per customer per job (issue 19), with a per-table breakdown.

A fresh demo environment of N customers; crmbridge (a child process, ``bench/_worker.py``) runs core_to_zoho, the
SQLite state database is measured, then core_fxiaoke runs and it is measured again. Sizes come from SQLite's
``dbstat`` virtual table (every page of every table and its indexes; free pages excluded) or, where SQLite is built
without it, from the file size. Also: the median size of a "created" ledger entry (every column's bytes) and of
its largest columns. Target: ≤ 3 KB per customer per job (ledger + snapshots + xref + everything else).

    nice .venv/bin/python bench/bench_state_size.py              # N = 10,000
    nice .venv/bin/python bench/bench_state_size.py --n 10000 --n 100000
    nice .venv/bin/python bench/bench_state_size.py --n 100000 --job core_to_zoho   # the first job only
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import Table, append_results, run_worker

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.report import COMPLETED

TARGET_BYTES = 3 * 1024
JOBS = ("core_to_zoho", "core_fxiaoke")


def table_sizes(db: Path) -> tuple[dict[str, dict[str, int]], int, str]:
    """Bytes on pages per table (its indexes included), rows and payload bytes; total bytes; how measured."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        owner = {name: tbl for name, tbl in con.execute("SELECT name, tbl_name FROM sqlite_master")}
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out: dict[str, dict[str, int]] = defaultdict(lambda: {"bytes": 0, "payload": 0, "rows": 0, "index_bytes": 0})
        try:
            stats = con.execute("SELECT name, SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name").fetchall()
            how = "dbstat"
        except sqlite3.OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
            stats, how = [], "file size"
        for name, pg, payload in stats:
            tbl = owner.get(name, name)
            out[tbl]["bytes"] += pg
            if tbl != name:
                out[tbl]["index_bytes"] += pg
            else:
                out[tbl]["payload"] += payload or 0
        for t in tables:
            out[t]["rows"] = con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
        total = sum(v["bytes"] for v in out.values()) if stats else db.stat().st_size
    finally:
        con.close()
    return dict(out), total, how


def created_entries(db: Path) -> dict[str, dict[str, float]]:
    """Per job: count and median bytes of its "created" ledger entries, whole and by column."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(ledger_entries)")]
        sizes = ", ".join(f'COALESCE(LENGTH(CAST("{c}" AS BLOB)), 0)' for c in cols)
        per_job: dict[str, list[tuple[int, ...]]] = defaultdict(list)
        for row in con.execute(f"SELECT job, {sizes} FROM ledger_entries WHERE action = 'created'"):
            per_job[row[0]].append(row[1:])
    finally:
        con.close()
    out: dict[str, dict[str, float]] = {}
    for job, rows in per_job.items():
        med = {c: statistics.median(r[i] for r in rows) for i, c in enumerate(cols)}
        out[job] = {"count": len(rows), "total": statistics.median(sum(r) for r in rows), **med}
    return out


def measure(n: int, seed: int, timeout: float, jobs: tuple[str, ...] = JOBS) -> list[dict[str, Any]]:
    stages = []
    with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
            DemoEnvironment(Path(tmp) / "demo", customers=n, bad_fraction=0.05, seed=seed) as env:
        db = env.workdir / "crmbridge.db"
        done: list[str] = []
        for job in jobs:
            res = run_worker(["run", "--config", str(env.config_path), "--job", job], timeout=timeout)
            rep = res["reports"][0]
            if rep["status"] not in COMPLETED:  # partial: the seeded bad records are dead letters
                raise RuntimeError(f"{job} at N={n}: {rep['status']} {rep['error']}")
            done.append(job)
            tables, total, how = table_sizes(db)
            written = sum(v for k, v in rep["actions"].items() if k.lower() in ("created", "updated"))
            stage = {"n": n, "jobs": list(done), "tables": tables, "total": total, "how": how,
                     "file": db.stat().st_size, "written": written, "ledger": created_entries(db)}
            stages.append(stage)
            print(f"N={n:,} after {' + '.join(done)}: {total / 1024 / 1024:.1f} MiB ({how}), "
                  f"{total / n / len(done) / 1024:.2f} KB per customer per job; {job} wrote {written:,}", flush=True)
    return stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, action="append", help="customers (repeatable); default 10000")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--job", action="append", choices=JOBS, help="jobs to run, in order (repeatable); default both")
    args = p.parse_args()
    summary = Table("State database size (SQLite) per customer per job",
                    ["N", "after", "total MiB", "file MiB", "KB/customer", "KB/customer/job", "written by job",
                     f"≤{TARGET_BYTES // 1024} KB?"])
    breakdown = Table("By table (its indexes included): bytes per customer per job",
                      ["N", "after", "table", "rows", "MiB", "of which indexes MiB", "row payload MiB",
                       "bytes/customer/job", "share"])
    entries = Table('Median "created" ledger entry (bytes; every column, as stored)',
                    ["N", "job", "entries", "whole entry", "largest columns (median bytes)"])
    for n in args.n or [10_000]:
        stages = measure(n, args.seed, args.timeout, tuple(args.job or JOBS))
        for st in stages:
            jobs = len(st["jobs"])
            after = " + ".join(st["jobs"])
            per_job = st["total"] / n / jobs
            summary.add(n, after, st["total"] / 2**20, st["file"] / 2**20, f"{st['total'] / n / 1024:.2f}",
                        f"{per_job / 1024:.2f}", st["written"], "yes" if per_job <= TARGET_BYTES else "NO")
            small = [0, 0]
            for name, v in sorted(st["tables"].items(), key=lambda kv: -kv[1]["bytes"]):
                if v["bytes"] / st["total"] < 0.005:
                    small[0] += 1
                    small[1] += v["bytes"]
                    continue
                breakdown.add(n, after, name, v["rows"], v["bytes"] / 2**20, v["index_bytes"] / 2**20,
                              v["payload"] / 2**20, f"{v['bytes'] / n / jobs:,.0f}", f"{v['bytes'] / st['total']:.1%}")
            breakdown.add(n, after, f"{small[0]} other tables (each < 0.5 %)", "", small[1] / 2**20, "", "",
                          f"{small[1] / n / jobs:,.0f}", f"{small[1] / st['total']:.1%}")
        last = stages[-1]["ledger"]
        for job, med in sorted(last.items()):
            skip = {"count", "total"}
            big = sorted(((c, v) for c, v in med.items() if c not in skip), key=lambda cv: -cv[1])[:6]
            entries.add(n, job, int(med["count"]), f"{med['total']:,.0f}",
                        ", ".join(f"{c} {v:,.0f}" for c, v in big))
    append_results("Benchmark: state database size per customer per job (issue 19)", [summary, breakdown, entries], [
        "bytes = pages SQLite holds for each table and its indexes (dbstat: SUM(pgsize) GROUP BY name, indexes "
        "folded into their table; free pages excluded); row payload = the bytes of the table's rows themselves (dbstat "
        "payload), the rest is page and overflow-page slack, row headers and indexes; "
        "file MiB = the database file as left by the run",
        "per customer = per seeded core customer (N; 5 % are realistically bad and dead-lettered, organisations are "
        "out of scope for Zoho Contacts); per job = divided by the jobs run so far",
        "ledger entry = the sum of LENGTH(CAST(column AS BLOB)) over every column of a created entry (row overhead "
        "and indexes not included; see the ledger_entries line of the table breakdown for those)"])


if __name__ == "__main__":
    main()
