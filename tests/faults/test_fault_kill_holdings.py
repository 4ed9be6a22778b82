"""Crash tests of holdings jobs: run processes SIGKILLed mid-run, parents half synced (issue 20).

The party job is killed mid-run first, so only part of the parents reach the CRM; the holdings job is then killed
again and again while its children of missing parents wait as dead letters; finally the party job completes and the
holdings job runs to the end. After every kill: no holding twice in the CRM, every holding there carries a key
minted once (the cross-reference's) and a lookup to a parent the CRM has, and the ledger verifies. At the end:
every holding of a parent in the CRM is there exactly once, linked to that parent, and only children of parents not
in the CRM wait. Zoho (upsert by Holding_Key) and Fxiaoke (no upsert: write intents and a lookup by
holding_key__c). The RNG seed is in every failure message; set CRMBRIDGE_FAULT_SEED to replay one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from fault_helpers import CLI, COMPLETED_EXITS, REPO

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine.objects import record_pseudonym
from crmbridge.sync.report import COMPLETED

pytestmark = pytest.mark.slow

#: (CRM, its holdings job, the holdings object, key field, lookup field, the parent object, the party job)
TARGETS = {
    "zoho": ("core_holdings_to_zoho", "Holdings", "Holding_Key", "Contact", "Contacts", "core_to_zoho"),
    "fxiaoke": ("core_holdings_to_fxiaoke", "object_holding__c", "holding_key__c", "account_id__c", "AccountObj",
                "core_fxiaoke"),
}
SYSTEMS = {"zoho": "zoho_cn", "fxiaoke": "fxiaoke"}
#: write calls a party run makes before its kill: Zoho writes 10 parties a call (batch 10), Fxiaoke one
PARTY_WRITES = {"zoho": (1, 4), "fxiaoke": (10, 40)}
CASES = [
    pytest.param("zoho", "sqlite", 200, 5, id="zoho-sqlite"),
    pytest.param("fxiaoke", "sqlite", 150, 5, id="fxiaoke-sqlite"),
    pytest.param("zoho", "postgresql", 150, 4, id="zoho-postgresql", marks=pytest.mark.postgres),
    pytest.param("fxiaoke", "postgresql", 120, 4, id="fxiaoke-postgresql", marks=pytest.mark.postgres),
]


def _rows(env: DemoEnvironment, crm: str) -> list[dict[str, Any]]:
    obj = TARGETS[crm][1]
    if crm == "zoho":
        return list(env.zoho.stores[obj].records.values())
    return list(env.fxiaoke.records(obj))


def _parent_ids(env: DemoEnvironment, crm: str) -> set[str]:
    if crm == "zoho":
        return set(env.zoho.stores["Contacts"].records)
    return {r["_id"] for r in env.fxiaoke.records("AccountObj")}


def _lookup(row: dict[str, Any], crm: str) -> str | None:
    v = row.get(TARGETS[crm][3])
    return v.get("id") if isinstance(v, dict) else v


def _writes(env: DemoEnvironment, crm: str) -> int:
    sim = env.zoho if crm == "zoho" else env.fxiaoke
    return sum(n for k, n in sim.requests_seen.items() if k.startswith("POST") and "token" not in k.lower()
               and "query" not in k.lower())


def _run_killed(env: DemoEnvironment, crm: str, job: str, rng: random.Random, log: Path, *,
                writes: tuple[int, int] = (1, 3)) -> bool:
    """Start ``job`` in a process and SIGKILL it after a random number of write calls and a random delay; whether
    the kill landed (False: the run finished first)."""
    before = _writes(env, crm)
    with log.open("wb") as fh:
        p = subprocess.Popen([*CLI, "run", job, "--config", str(env.config_path), "--json"], stdout=fh,
                             stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=REPO)
        deadline = time.monotonic() + 120
        target = rng.randint(*writes)
        while _writes(env, crm) < before + target and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        try:
            p.wait(timeout=rng.uniform(0.0, 0.4))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True
    assert p.returncode in COMPLETED_EXITS, log.read_text(errors="replace")[-3000:]
    return False


def _pseudonym(rt: Runtime, account: str) -> str:
    """How the state database knows an account number (personal data): its keyed pseudonym."""
    return record_pseudonym(rt, "corebank_accounts", "Account", account)


def _check(env: DemoEnvironment, rt: Runtime, crm: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The invariants that hold at any instant; returns (holding id by account, the CRM's holdings)."""
    key = TARGETS[crm][2]
    rows = _rows(env, crm)
    keys = [r.get(key) for r in rows]
    assert len(keys) == len(set(keys)), "a holding is in the CRM twice"
    # account numbers are personal: the cross-reference knows them by their keyed pseudonym (worked out before the
    # read transaction: the blind indexer opens one of its own)
    pseudonyms = {a: _pseudonym(rt, a) for a in env.core.accounts.numbers}
    with rt.store.transaction(read_only=True) as tx:
        minted = {a: tx.get_xref("corebank_accounts", "Account", p) for a, p in pseudonyms.items()}
        verified = tx.ledger(rt.signer, cipher=rt.cipher).verify(rt.signer.public_key)
    assert set(keys) <= {m for m in minted.values() if m}, "a holding in the CRM under a key minted twice"
    parents = _parent_ids(env, crm)
    assert all(_lookup(r, crm) in parents for r in rows), "a child reached the CRM before its parent"
    assert verified.ok, verified
    return {a: m for a, m in minted.items() if m}, rows


@pytest.mark.parametrize(("crm", "backend", "customers", "kills"), CASES)
def test_killed_holdings_runs_keep_parent_before_child_without_loss_or_duplicates(
        tmp_path: Path, request: pytest.FixtureRequest, crm: str, backend: str, customers: int, kills: int) -> None:
    seed = int(os.environ.get("CRMBRIDGE_FAULT_SEED", "0")) or zlib.crc32(f"holdings/{crm}/{backend}".encode()) % 99_999
    rng = random.Random(seed)
    job, _, _, _, parent_obj, party_job = TARGETS[crm]
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=customers, bad_fraction=0.0, seed=9, state_url=url) as env:
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["jobs"]["core_holdings_to_fxiaoke"] = {
            "source": "corebank_accounts.Account", "target": f"fxiaoke.{TARGETS['fxiaoke'][1]}",
            "source_mapping": "corebank_soap_account.yaml", "target_mapping": "fxiaoke_holdings.yaml",
            "parent": {"source": "corebank.Customer", "target_object": "AccountObj"}, "delete_policy": "deactivate"}
        for name in (job, party_job):
            cfg["jobs"][name]["batch_size"] = 10
            cfg["jobs"][name]["max_failed_ratio"] = 1.0   # children waiting for parents are expected here
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        (env.zoho if crm == "zoho" else env.fxiaoke).knobs.latency_ms = 40
        rt = bootstrap(env.config_path)
        logs = tmp_path / "runs"
        logs.mkdir()
        try:
            landed = parent_kills = 0
            for i in range(kills * 3):
                # the parents advance by a killed run; the core posts to some accounts; the children follow, killed
                parent_kills += _run_killed(env, crm, party_job, rng, logs / f"party{i}.out",
                                            writes=PARTY_WRITES[crm])
                for acc in rng.sample(env.core.accounts.numbers, 25):
                    env.core.accounts.change(acc, CURBAL=f"{rng.choice([1_000, 80_000, 900_000, 9_000_000])}.00")
                landed += _run_killed(env, crm, job, rng, logs / f"holdings{i}.out")
                try:
                    _check(env, rt, crm)
                except AssertionError as exc:
                    raise AssertionError(f"seed={seed} after holdings run {i} ({landed} kills): {exc}") from exc
                if landed >= kills:
                    break
            for name in (party_job, job):   # the parents complete, then the children that waited follow
                done = subprocess.run([*CLI, "run", name, "--config", str(env.config_path), "--json"],
                                      capture_output=True, cwd=REPO, timeout=600, check=False)
                text = done.stdout.decode(errors="replace")
                assert done.returncode in COMPLETED_EXITS, f"seed={seed} {name}: {text[-3000:]}"
                assert json.loads(text[text.index("{"):])["status"] in COMPLETED
            minted, rows = _check(env, rt, crm)
            with rt.store.transaction(read_only=True) as tx:
                want = {}
                for acc in env.core.accounts.numbers:
                    pid = tx.get_xref("corebank", "Customer", env.core.accounts.get(acc)["CUSTNO"])
                    linked = tx.xrefs_for_party(pid, SYSTEMS[crm], parent_obj) if pid else []
                    if linked:
                        want[acc] = linked[0][2]
                letters = tx.list_dead_letters(job, status=["open"], limit=10_000)
            got = {r[TARGETS[crm][2]]: _lookup(r, crm) for r in rows}
            assert len(rows) == len(want), f"seed={seed}: {len(rows)} holdings in the CRM, {len(want)} expected"
            assert all(got.get(minted[a]) == parent for a, parent in want.items()), f"seed={seed}: lost or mislinked"
            waiting = set(env.core.accounts.numbers) - set(want)
            assert {d["external_id"] for d in letters} == {_pseudonym(rt, a) for a in waiting}
            assert landed >= kills // 2, f"seed={seed}: only {landed} kills landed inside the work"
            print(f"[fault] {job} {backend}: seed={seed} parent_kills={parent_kills} kills={landed} "
                  f"holdings={len(rows)} waiting={len(letters)}")
        finally:
            rt.close()

