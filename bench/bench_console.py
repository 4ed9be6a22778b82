"""Benchmark: the console's page times on a large ledger (issue 18: 1,000,000 entries against 10,000, under 1.5×).

For each state database (SQLite, PostgreSQL) and each size, a demo environment is synced for real (two jobs, dead
letters, mapping versions), then the ledger is filled up to the size with synthetic entries generated inside the
database (a recursive CTE on SQLite, ``generate_series`` on PostgreSQL): 100 entries per run (so the runs table grows
with the ledger: 100 runs at 10,000 entries, 10,000 at 1,000,000; every list page is full at both sizes), 10 per
party. The console is served by uvicorn on loopback and each page is fetched signed in; the median of
``--repeat`` fetches is reported, and the ratio of the large ledger to the small one::

    .venv/bin/python bench/bench_console.py                       # SQLite and PostgreSQL, 10,000 and 1,000,000
    .venv/bin/python bench/bench_console.py --db sqlite --sizes 10000,100000 --no-record

Deep pages are asked for too (runs before a run in the middle, a middle run's records after its middle entry, the
ledger before its middle seq): pages on indexed keys cost the same wherever they are.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Table, append_results  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PER_RUN = 100
PER_PARTY = 10
PASSWORD = "bench console password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _pg_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"crmbridge_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _fill(engine: Any, total: int) -> dict[str, Any]:
    """Synthetic entries up to ``total`` (after what the real runs wrote), their runs, and the head moved on."""
    from sqlalchemy import insert, select, text

    from crmbridge.sync.state.tables import runs

    pg = engine.dialect.name == "postgresql"
    with engine.begin() as c:
        start = int(c.execute(text("SELECT coalesce(max(seq), 0) FROM ledger_entries")).scalar_one()) + 1
        run_base = int(c.execute(select(runs.c.id).order_by(runs.c.id.desc()).limit(1)).scalar() or 0) + 1
        n = total - start + 1
        if n <= 0:
            return {"start": start, "run_base": run_base, "runs": 0, "parties": 0}
        nruns = (n + PER_RUN - 1) // PER_RUN
        parties = max(1, n // PER_PARTY)
        t0 = datetime(2026, 11, 1, tzinfo=UTC)
        c.execute(insert(runs), [{
            "id": run_base + i, "job": ("core_to_zoho", "core_fxiaoke")[i % 2], "status": "succeeded",
            "dry_run": False, "started_at": t0 + timedelta(minutes=15 * i),
            "finished_at": t0 + timedelta(minutes=15 * i, seconds=40), "actor": "scheduler@bench",
            "counts": {"read": PER_RUN, "updated": PER_RUN, "api_calls": 12,
                       "api_calls_by_system": {"corebank": 2, "fxiaoke": 10}, "outcomes": {"updated": PER_RUN}},
            "host": "bench", "pid": 1} for i in range(nruns)])
        if pg:
            party = ("lpad(to_hex(x % CAST(:p AS bigint)), 8, '0') || '-0000-4000-8000-' || "
                     "lpad(to_hex(x % CAST(:p AS bigint)), 12, '0')")
            run = f"CAST(CAST(:rb AS bigint) + (x - CAST(:s AS bigint)) / {PER_RUN} AS TEXT)"
            series = "generate_series(CAST(:s AS bigint), CAST(:e AS bigint)) AS g(x)"
            prefix, frm = "", f"FROM {series}"
        else:
            party = "printf('%08x-0000-4000-8000-%012x', x % :p, x % :p)"
            run = f"CAST(:rb + (x - :s) / {PER_RUN} AS TEXT)"
            prefix = "WITH RECURSIVE g(x) AS (SELECT :s UNION ALL SELECT x + 1 FROM g WHERE x < :e) "
            frm = "FROM g"
        sql = (
            "INSERT INTO ledger_entries (seq, prev_hash, entry_hash, hash_alg, recorded_at, run_id, job, "
            "source_system, source_object, source_id, target_system, target_object, target_id, party_id, action, "
            "changed_fields, masked_before, masked_after, diff_enc, mapping_version, actor, reason, enc, payload, "
            "answer, correlation_id, mapping_versions, actor_note) "
            + prefix +
            f"SELECT x, '{'0' * 64}', '{'1' * 64}', 'sha256', '2026-11-01T00:00:00.000000Z', {run}, "
            "'core_fxiaoke', 'corebank', 'Customer', CAST(x AS TEXT), 'fxiaoke', 'AccountObj', CAST(x AS TEXT), "
            f"{party}, 'updated', '[\"segment.code\",\"contact_points[type=MOBILE].value\"]', "
            "'[\"MASS\",\"+86138****1234\"]', '[\"PRIVATE\",\"+86139****5678\"]', NULL, NULL, 'scheduler@bench', "
            "NULL, 2, '{\"mobile_masked__c\":\"139****5678\",\"segment__c\":\"PRIVATE\"}', "
            "'{\"id\":\"65a1\",\"status\":\"updated\"}', 'bench', '{\"fxiaoke_accountobj.yaml\":\"abc\"}', NULL "
            + frm)
        c.execute(text(sql), {"s": start, "e": total, "rb": run_base, "p": parties})
        c.execute(text("UPDATE ledger_head SET seq = :e WHERE id = 1"), {"e": total})
    if pg:   # vacuumed now, so autovacuum does not wake up on the new million rows in the middle of the timings
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as c:
            c.execute(text("ANALYZE"))
    return {"start": start, "run_base": run_base, "runs": nruns, "parties": parties}


def _serve(rt: Any) -> Iterator[str]:
    import uvicorn

    from crmbridge.console.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _session(url: str) -> Any:
    import re

    import requests

    s = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]*)"', s.get(f"{url}/login").text).group(1)  # type: ignore[union-attr]
    r = s.post(f"{url}/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token, "next": "/"},
               allow_redirects=False)
    assert r.status_code == 303, r.status_code
    return s


@contextmanager
def _world(db: str, size: int, stack: Any) -> Iterator[dict[str, Any]]:
    """A synced demo world on ``db`` whose ledger is filled to ``size``, served: its URL, session and pages."""
    from crmbridge.console.passwords import hash_password
    from crmbridge.demo import DemoEnvironment
    from crmbridge.sync.bootstrap import bootstrap
    from crmbridge.sync.engine import run_job
    from crmbridge.sync.state.console import ConsoleRepository

    tmp = stack.enter_context(tempfile.TemporaryDirectory())
    pg_url = stack.enter_context(_pg_database()) if db == "postgresql" else None
    env = stack.enter_context(DemoEnvironment(Path(tmp) / "demo", customers=40, bad_fraction=0.1, seed=5,
                                              state_url=pg_url))
    rt = bootstrap(env.config_path)
    stack.callback(rt.close)
    for job in ("core_to_zoho", "core_fxiaoke"):
        run_job(rt, job, actor="bench")
    t = time.monotonic()
    info = _fill(rt.store.engine, size)
    fill_s = time.monotonic() - t
    with rt.store.transaction() as tx:
        ConsoleRepository(tx).add_user("bench", hash_password(PASSWORD), ["auditor"], created_by="bench",
                                       now=rt.store.clock())
    mid_run = info["run_base"] + info["runs"] // 2
    mid_seq = info["start"] + (size - info["start"]) // 2
    run_mid_seq = info["start"] + (mid_run - info["run_base"]) * PER_RUN + PER_RUN // 2
    party = f"{(mid_seq % info['parties']):08x}-0000-4000-8000-{(mid_seq % info['parties']):012x}"
    pages = {
        "dashboard /": "/",
        "runs, first page": "/runs",
        "runs, deep page": f"/runs?before={info['run_base'] + info['runs'] * 3 // 4}",
        "a run's records": f"/runs/{mid_run}",
        "a run's records, deep": f"/runs/{mid_run}?after={run_mid_seq}",
        "customer lineage": f"/customers/{party}",
        "ledger, head": "/ledger",
        "ledger, deep page": f"/ledger?before={mid_seq}",
        "dead letters": "/dead-letters",
        "conflicts": "/conflicts",
        "mappings": "/mappings",
    }
    url = stack.enter_context(contextmanager(_serve)(rt))
    session = _session(url)
    for name, path in pages.items():
        r = session.get(url + path)
        assert r.status_code == 200, (db, size, name, r.status_code, r.text[:300])
    print(f"{db} {size:,}: ledger filled in {fill_s:.1f} s", flush=True)
    yield {"url": url, "session": session, "pages": pages, "fill_s": fill_s}


def measure(db: str, sizes: list[int], repeat: int) -> dict[int, dict[str, float]]:
    """Median page times for each size, the sizes' fetches interleaved (a busy moment of the shared machine hits
    every size alike)."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        worlds = {n: stack.enter_context(_world(db, n, stack)) for n in sizes}
        times: dict[int, dict[str, list[float]]] = {n: {} for n in sizes}
        for name in worlds[sizes[0]]["pages"]:
            for _ in range(repeat):
                for n, wd in worlds.items():
                    t = time.perf_counter()
                    wd["session"].get(wd["url"] + wd["pages"][name]).raise_for_status()
                    times[n].setdefault(name, []).append(time.perf_counter() - t)
        out = {n: {name: statistics.median(v) * 1000 for name, v in times[n].items()} for n in sizes}
        for n in sizes:
            out[n].update({f"_min {name}": min(v) * 1000 for name, v in times[n].items()})
        for n in sizes:
            out[n]["_fill_s"] = worlds[n]["fill_s"]
        return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both (comma-separated)")
    ap.add_argument("--sizes", default="10000,1000000", help="ledger sizes, small first (comma-separated)")
    ap.add_argument("--repeat", type=int, default=25, help="fetches per page (the median is reported)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = ap.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {(db, n): r for db in dbs for n, r in measure(db, sizes, args.repeat).items()}
    small, large = sizes[0], sizes[-1]
    cols = ["page"]
    for db in dbs:
        cols += [f"{db} {small:,} (ms)", f"{db} {large:,} (ms)", f"{db} ratio", f"{db} ratio of minima"]
    table = Table(f"console page times, median of {args.repeat} fetches, interleaved (ledger of {small:,} vs "
                  f"{large:,} entries)", cols)
    worst: dict[str, float] = {}
    worst_min: dict[str, float] = {}
    for page in (k for k in results[(dbs[0], small)] if not k.startswith("_")):
        row: list[Any] = [page]
        for db in dbs:
            a, b = results[(db, small)][page], results[(db, large)][page]
            ma, mb = results[(db, small)][f"_min {page}"], results[(db, large)][f"_min {page}"]
            row += [a, b, f"{b / a:.2f}×", f"{mb / ma:.2f}×"]
            worst[db] = max(worst.get(db, 0.0), b / a)
            worst_min[db] = max(worst_min.get(db, 0.0), mb / ma)
        table.add(*row)
    notes = [f"filling the ledger to {large:,} entries took " + ", ".join(
        f"{db} {results[(db, large)]['_fill_s']:.0f} s" for db in dbs),
        "worst ratio of medians: " + ", ".join(f"{db} {r:.2f}×" for db, r in worst.items())
        + "; of minima: " + ", ".join(f"{db} {r:.2f}×" for db, r in worst_min.items()) + " (target < 1.5×)"]
    if args.no_record:
        print(table.text())
        for n in notes:
            print("note:", n)
    else:
        append_results("Benchmark: console page times on a large ledger (issue 18)", [table], notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
