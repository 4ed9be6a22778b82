"""Child process of the benchmarks: runs crmbridge jobs against simulators started by the parent.

``python bench/_worker.py run --config FILE --job JOB [--job JOB ...] [--profile OUT.html]``
prints one JSON line: the run reports, CPU seconds, wall seconds and peak RSS (VmHWM) of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict[str, Any]:
    from crmbridge.sync.bootstrap import bootstrap
    from crmbridge.sync.engine import run_job

    rt = bootstrap(args.config)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler
        profiler = Profiler(interval=0.002)
        profiler.start()
    reports = []
    for job in args.job:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        rep = run_job(rt, job)
        reports.append({"job": job, "status": rep.status, "error": rep.error, "read": rep.read,
                        "actions": {str(k): v for k, v in rep.actions.items()}, "api_calls": rep.api_calls,
                        "retries": rep.retries, "throttled": rep.throttled, "out_of_scope": rep.out_of_scope,
                        "cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0})
    if profiler is not None:
        profiler.stop()
        if os.environ.get("BENCH_PROFILE_HTML"):  # tens of MB: only on request
            Path(args.profile).write_text(profiler.output_html())
        Path(args.profile).with_suffix(".txt").write_text(profiler.output_text(unicode=False, color=False,
                                                                                show_all=False))
    rt.close()
    out: dict[str, Any] = {"reports": reports}
    if args.floor:
        out["floor"] = floor(args)  # in the same process, after the run
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def floor(args: argparse.Namespace) -> dict[str, Any]:
    """The same source records through only the unavoidable primitives: pydantic validation of the canonical model
    (its validators check identifiers and phones), AES-GCM of the personal fields, a keyed content hash and one
    SQLite insert each. The records are read and mapped to canonical dicts first, untimed."""
    import hashlib
    import hmac
    import os
    import sqlite3
    import tempfile
    import uuid

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from crmbridge.canonical.model import parse_party
    from crmbridge.core.errors import CrmBridgeError
    from crmbridge.sync.bootstrap import bootstrap

    rt = bootstrap(args.config)
    job = rt.config.jobs[args.job[0]]
    src, mapping = rt.adapter(job.source_system), rt.mapping(job.source_mapping)
    out_mapping = rt.mapping(job.target_mapping)
    # beside the floor, the stages an integration cannot skip either, each timed alone on the same records: reading
    # the source (SOAP/HTTP and XML parsing), mapping in (declarative transforms + the same validation), mapping out
    stages: dict[str, float] = {}
    cpu0 = time.process_time()
    raws = [raw for page in src.extract(job.source_object, since=None, fields=mapping.vendor_fields("in") or None)
            for raw in page.records]
    stages["read source (SOAP + XML parsing)"] = time.process_time() - cpu0
    n_read = len(raws)
    parties: list[Any] = []
    cpu0 = time.process_time()
    for raw in raws:
        try:
            parties.append(mapping.to_party(raw.data, party_id=uuid.uuid4()))
        except CrmBridgeError:
            parties.append(None)  # a bad record: the floor still validates it and fails, as crmbridge does
    stages["map in (transforms + validation)"] = time.process_time() - cpu0
    scope = out_mapping.fixed_party_type
    cpu0 = time.process_time()
    for party in parties:
        if party is not None and (scope is None or str(party.party_type) == scope):
            try:
                out_mapping.map_out(party)
            except CrmBridgeError:
                pass
    stages["map out"] = time.process_time() - cpu0
    dicts = [p.canonical_dict(include_volatile=True) if p is not None else None for p in parties]
    rt.close()
    key, aes = os.urandom(32), AESGCM(os.urandom(32))
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(os.path.join(tmp, "floor.db"))
        db.execute("CREATE TABLE snap (party_id TEXT PRIMARY KEY, content_hash TEXT, blob BLOB)")
        cpu0 = time.process_time()
        for i, d in enumerate(dicts):
            if d is None:
                continue
            try:
                party = parse_party(d)
            except CrmBridgeError:
                continue
            body = party.canonical_json()
            digest = hmac.new(key, body, hashlib.sha256).hexdigest()
            blob = aes.encrypt(os.urandom(12), body, str(party.party_id).encode())
            db.execute("INSERT INTO snap VALUES (?, ?, ?)", (str(party.party_id), digest, blob))
            if i % 100 == 99:
                db.commit()
        db.commit()
        cpu = time.process_time() - cpu0
        db.close()
    return {"records": n_read, "floor_cpu_seconds": cpu, "stages": stages, "peak_rss_mib": peak_rss_mib()}


def zoho_payloads(rt: Any, n: int) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``n`` real Zoho Contacts payloads: core-banking records mapped to parties and out to Zoho."""
    import uuid

    from crmbridge.core.errors import CrmBridgeError

    job = rt.config.jobs["core_to_zoho"]
    src, m_in, m_out = rt.adapter(job.source_system), rt.mapping(job.source_mapping), rt.mapping(job.target_mapping)
    out: list[tuple[str, dict[str, Any]]] = []
    for page in src.extract(job.source_object, since=None, fields=m_in.vendor_fields("in") or None):
        for raw in page.records:
            try:
                party = m_in.to_party(raw.data, party_id=uuid.uuid4())
                if str(party.party_type) != "INDIVIDUAL":
                    continue
                out.append((str(party.party_id), m_out.map_out(party)))
            except CrmBridgeError:
                continue
            if len(out) >= n:
                return out
    return out


def zwrite(args: argparse.Namespace) -> dict[str, Any]:
    """crmbridge's Zoho adapter upserting the payloads (``adapter.write``: batches of 100, edition concurrency)."""
    from crmbridge.adapters.base import WriteItem
    from crmbridge.sync.bootstrap import bootstrap

    rt = bootstrap(args.config)
    key_field = rt.mapping(rt.config.jobs["core_to_zoho"].target_mapping).spec.key_field
    payloads = zoho_payloads(rt, args.n // args.repeat)
    if args.repeat > 1:  # the same payloads again under fresh keys (new records), to reach N cheaply
        import uuid
        payloads = [(k, {**p, key_field: k}) for _ in range(args.repeat) for k, p in
                    ((str(uuid.uuid4()), p) for _k, p in payloads)]
    adapter = rt.adapter("zoho_cn")
    items = [WriteItem(key=k, payload=p, key_field=key_field) for k, p in payloads]
    calls0 = adapter.stats.api_calls
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = adapter.write("Contacts", items)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    ok = sum(1 for r in results if r.status.name in ("CREATED", "UPDATED", "UNCHANGED"))
    rt.close()
    return {"records": len(items), "ok": ok, "wall_seconds": wall, "cpu_seconds": cpu,
            "api_calls": adapter.stats.api_calls - calls0, "concurrency": adapter._gate.concurrency,
            "peak_rss_mib": peak_rss_mib()}


def sdk(args: argparse.Namespace) -> dict[str, Any]:
    """The official Zoho CRM SDK for API v8 (zohocrmsdk8_0) upserting the same payloads, as a bank would write it:
    RecordOperations.upsert_records in batches of 100 with duplicate_check_fields = the key field."""
    import os
    import tempfile
    from datetime import date

    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.api.authenticator.store import FileStore
    from zohocrmsdk.src.com.zoho.api.logger import Logger
    from zohocrmsdk.src.com.zoho.crm.api import HeaderMap
    from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
    from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
    from zohocrmsdk.src.com.zoho.crm.api.record import ActionWrapper, BodyWrapper, Record, RecordOperations
    from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
    from zohocrmsdk.src.com.zoho.crm.api.util import Choice

    from crmbridge.sync.bootstrap import bootstrap

    rt = bootstrap(args.config)
    payloads = zoho_payloads(rt, args.n)
    key_field = rt.mapping(rt.config.jobs["core_to_zoho"].target_mapping).spec.key_field
    zcfg = rt.config.systems["zoho_cn"]
    types = {f.name: f.type for f in rt.adapter("zoho_cn").describe("Contacts")}  # what the bank's developer
    rt.close()                                                                    # reads in the field list
    url = args.zoho_url
    tmp = tempfile.mkdtemp(prefix="zoho-sdk-")
    env = DataCenter.Environment(url, f"{url}/oauth/v2/token", url)
    token = OAuthToken(client_id=zcfg.client_id, client_secret=os.environ["CRMBRIDGE_DEMO_ZOHO_CLIENT_SECRET"],
                       refresh_token=os.environ["CRMBRIDGE_DEMO_ZOHO_REFRESH_TOKEN"])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    Initializer.initialize(environment=env, token=token, store=FileStore(os.path.join(tmp, "tokens.txt")),
                           sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=False,
                                                update_api_domain=False),
                           resource_path=tmp,
                           logger=Logger.get_instance(Logger.Levels.CRITICAL, os.path.join(tmp, "sdk.log")))
    ops = RecordOperations("Contacts")
    ok = errors = 0
    first_error = None
    for i in range(0, len(payloads), 100):
        body = BodyWrapper()
        recs = []
        for _k, payload in payloads[i:i + 100]:
            rec = Record()
            for name, value in payload.items():
                kind = types.get(name, "")
                if kind in ("picklist",) and isinstance(value, str):
                    value = Choice(value)
                elif kind == "multiselectpicklist" and isinstance(value, list):
                    value = [Choice(v) for v in value]
                elif kind == "date" and isinstance(value, str):
                    value = date.fromisoformat(value)
                rec.add_key_value(name, value)
            recs.append(rec)
        body.set_data(recs)
        body.set_duplicate_check_fields([key_field])
        resp = ops.upsert_records(body, HeaderMap())
        obj = resp.get_object() if resp is not None else None
        if isinstance(obj, ActionWrapper):
            for r in obj.get_data():
                if getattr(r.get_status(), "get_value", lambda: "")() == "success":
                    ok += 1
                else:
                    errors += 1
                    code = r.get_code()
                    first_error = first_error or str(code.get_value() if hasattr(code, "get_value") else code)
        else:
            errors += len(recs)
            first_error = first_error or f"status {resp.get_status_code() if resp else None}"
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"records": len(payloads), "ok": ok, "errors": errors, "first_error": first_error, "wall_seconds": wall,
            "cpu_seconds": cpu, "peak_rss_mib": peak_rss_mib()}


def reference(args: argparse.Namespace) -> dict[str, Any]:
    """The bare reference sync of bench/bench_reference.py (no crmbridge code), in this process."""
    from bench_reference import reference_sync

    return {"reference": reference_sync(args.config), "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--config", required=True)
    r.add_argument("--job", action="append", required=True)
    r.add_argument("--profile")
    r.add_argument("--floor", action="store_true", help="then the same records through the floor primitives")
    f = sub.add_parser("floor")
    f.add_argument("--config", required=True)
    f.add_argument("--job", action="append", required=True)
    ref = sub.add_parser("reference")
    ref.add_argument("--config", required=True)
    for name in ("zwrite", "sdk"):
        z = sub.add_parser(name)
        z.add_argument("--config", required=True)
        z.add_argument("--n", type=int, required=True)
        z.add_argument("--zoho-url")
        z.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    out = {"run": run, "floor": floor, "zwrite": zwrite, "sdk": sdk, "reference": reference}[args.cmd](args)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
