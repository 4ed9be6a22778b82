"""Benchmark 7 — distributed: one and two ``crmbridge worker`` processes (Celery) on a latency-bound job.

The core → Zoho job dispatched with ``crmbridge.sync.runners.distributed.dispatch`` (state on PostgreSQL, broker
Redis or RabbitMQ) over 1 worker, then over 2 workers, each on a fresh environment and a fresh database; Zoho answers
after ``--latency-ms`` so the job is bound by latency, not CPU. Reports the speed-up; target ≥ 1.8 ×.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust; ``CRMBRIDGE_BENCH_PG`` overrides the admin URL) and
a broker (``--broker redis://127.0.0.1:6379/0`` by default).

    .venv/bin/python bench/bench_distributed.py                     # N = 400, batch 20, Zoho 500 ms
    .venv/bin/python bench/bench_distributed.py --n 2000 --batch 50 --latency-ms 1000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from common import Table, append_results

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.runners.distributed import close_celery_app, dispatch, make_celery_app
from crmbridge.sync.state.db import create_database, drop_database

TARGET = 1.8
PG_ADMIN = os.environ.get("CRMBRIDGE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def fresh_db() -> str:
    return create_database(PG_ADMIN)


def drop_db(url: str) -> None:
    drop_database(PG_ADMIN, url)


def start_worker(config: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "crmbridge", "worker", "--config", str(config), "--hostname",
                             f"{name}@localhost", "--concurrency", "1", "--loglevel", "WARNING"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def one(n_workers: int, args: argparse.Namespace) -> dict[str, Any]:
    url = fresh_db()
    queue = f"crmbridge-bench-{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="crmbridge-bench-") as tmp, \
                DemoEnvironment(Path(tmp) / "demo", customers=args.n, bad_fraction=0.05, seed=args.seed,
                                state_url=url) as env:
            env.zoho.knobs.latency_ms = args.latency_ms
            cfg = yaml.safe_load(env.config_path.read_text())
            cfg["jobs"]["core_to_zoho"]["batch_size"] = args.batch
            cfg["distributed"] = {"broker_url": args.broker, "queue": queue, "wait_timeout_seconds": args.timeout}
            env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
            rt = bootstrap(env.config_path)
            app = make_celery_app(rt.config)
            try:
                procs = [start_worker(env.config_path, f"bench{i}", Path(tmp) / f"w{i}.log")
                         for i in range(n_workers)]
                want, seen, deadline = {f"bench{i}@localhost" for i in range(n_workers)}, set(), time.monotonic() + 60
                while seen < want and time.monotonic() < deadline:
                    for reply in app.control.ping(destination=sorted(want - seen), timeout=1.0) or []:
                        seen.update(reply)
                if seen < want:
                    raise RuntimeError("workers not ready: " + " | ".join(
                        (Path(tmp) / f"w{i}.log").read_text(errors="replace")[-1500:] for i in range(n_workers)))
                t0 = time.perf_counter()
                rep = dispatch(rt, "core_to_zoho", app=app)
                wall = time.perf_counter() - t0
            finally:
                for p in procs:
                    stop_worker(p)
                close_celery_app(app)
                rt.close()
            return {"workers": n_workers, "status": rep.status, "error": rep.error, "read": rep.read,
                    "written": rep.actions.get("created", 0) + rep.actions.get("updated", 0), "wall": wall,
                    "in_zoho": env.zoho.count("Contacts")}
    finally:
        drop_db(url)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--batch", type=int, default=20, help="job batch size (one Celery task each)")
    p.add_argument("--latency-ms", type=float, default=500.0, help="Zoho simulator latency")
    p.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--timeout", type=float, default=1200)
    args = p.parse_args()
    rows = []
    for k in (1, 2):
        r = one(k, args)
        print(f"{k} worker(s): {r['status']} {r['read']:,} read, {r['written']:,} written in {r['wall']:.1f} s "
              f"({r['in_zoho']:,} in Zoho) {r['error'] or ''}", flush=True)
        rows.append(r)
    speed = rows[0]["wall"] / rows[1]["wall"]
    t = Table(f"Distributed core → Zoho, Zoho latency {args.latency_ms:.0f} ms, batch {args.batch}, "
              f"broker {args.broker.split(':')[0]}",
              ["workers", "status", "read", "written", "in Zoho", "wall s", "records/s", "speed-up",
               f"≥{TARGET}?"])
    for r in rows:
        t.add(r["workers"], r["status"], r["read"], r["written"], r["in_zoho"], r["wall"], r["read"] / r["wall"],
              f"{rows[0]['wall'] / r['wall']:.2f}x", ("yes" if speed >= TARGET else "NO") if r["workers"] == 2 else "")
    append_results("Benchmark 7: distributed (Celery workers)", [t], [
        "wall = dispatch() of the job: staging the batches, the workers' processing, the cursor and the run's "
        "close; each worker is one 'crmbridge worker --concurrency 1' process; the machine has 2 cores, shared "
        "with the dispatcher, the simulators, PostgreSQL and the broker"])


if __name__ == "__main__":
    main()
