"""A canonical extension end to end (issue 16): declared in configuration, mapped in from the core's FLEXCUBE
``CIFCREATIONDT``, encrypted at rest in the snapshot, sent to Zoho and Fxiaoke custom fields in its masked form
(C2 personal data), listed in the ledger masked (clear only in the encrypted diff), and named by reconcile when the
CRM holds something else. Every snapshot records the versions of the mappings that produced it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crmbridge.canonical.extensions import declare_extensions
from crmbridge.config.model import PACKAGE_ROOT
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job, snapshot_row
from crmbridge.sync.reconcile import reconcile
from crmbridge.sync.state.ledger import Ledger, decode_entry

EXT = "relationship_start_date"
PATH = f"extensions.{EXT}"
MASKED = "****-**-**"
ZOHO_FIELD, FX_FIELD = "Customer_Since", "customer_since__c"

DECLARATION = {EXT: {"type": "date", "class": "C2", "treatment": ["encrypt", "mask"], "mask": "date",
                     "description": "Date the customer relationship began (FLEXCUBE CIFCREATIONDT)"}}
STEPS = {
    "corebank_soap_customer.yaml": f"  - {{type: field, vendor: CIFCREATIONDT, canonical: {PATH}, "
                                   "transform: [\"date:%Y-%m-%d\"], direction: in}\n",
    "zoho_contacts.yaml": f"  - {{type: field, vendor: {ZOHO_FIELD}, canonical: {PATH}, transform: [date], "
                          "out_mask: date, direction: out}\n",
    "fxiaoke_accountobj.yaml": f"  - {{type: field, vendor: {FX_FIELD}, canonical: {PATH}, transform: [date], "
                               "out_mask: date, direction: out}\n",
}


@pytest.fixture
def ext(env: DemoEnvironment, tmp_path: Path) -> Iterator[tuple[DemoEnvironment, Runtime]]:
    """The demo environment with the extension declared in its configuration and mapped by copies of the shipped
    mappings (core in; Zoho Contacts and Fxiaoke AccountObj out), and a runtime over it."""
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["canonical"] = {"extensions": DECLARATION}
    for name, step in STEPS.items():
        copy = tmp_path / name
        shutil.copy(PACKAGE_ROOT / "mappings" / name, copy)
        with copy.open("a", encoding="utf-8") as f:
            f.write(step)
        for job in cfg["jobs"].values():
            for k in ("source_mapping", "target_mapping"):
                if job[k] == name:
                    job[k] = str(copy)
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    rt = bootstrap(env.config_path)
    try:
        yield env, rt
    finally:
        rt.close()
        declare_extensions({})   # the declarations are process-wide


def _core_dates(env: DemoEnvironment) -> dict[str, str]:
    """CUSTNO → the clear CIFCREATIONDT the core simulator serves."""
    store = env.core.store
    return {store.custno(i): store.record(i)["created"] for i in range(store.n)}


def test_an_extension_flows_from_core_to_both_crms_encrypted_at_rest_ledgered_and_reconciled(ext) -> None:  # type: ignore[no-untyped-def]
    env, rt = ext
    for job in ("core_to_zoho", "core_fxiaoke"):
        report = run_job(rt, job)
        assert report.status in ("succeeded", "partial"), report.error
    dates = _core_dates(env)
    assert len(set(dates.values())) > 1

    # both CRMs received the field, in its masked form (C2 personal data)
    zoho = list(env.zoho.stores["Contacts"].records.values())
    managed = [r for r in zoho if r.get("Party_ID")]
    assert managed and all(r.get(ZOHO_FIELD) == MASKED for r in managed), [r.get(ZOHO_FIELD) for r in managed]
    crm_records = {("zoho_cn", r["id"]): r for r in zoho}
    crm_records.update({("fxiaoke", r["_id"]): r for r in env.fxiaoke.records("AccountObj")})

    versions = {job: {Path(ref).name: rt.mapping(ref).version_hash
                      for ref in (rt.config.jobs[job].source_mapping, rt.config.jobs[job].target_mapping)}
                for job in ("core_to_zoho", "core_fxiaoke")}
    assert set(versions["core_fxiaoke"]) == {"corebank_soap_customer.yaml", "fxiaoke_accountobj.yaml"}

    # at rest: the clear value is in the snapshot, encrypted; the database file never holds it in clear
    pids = [r["Party_ID"] for r in managed]
    seen: set[str] = set()
    with rt.store.transaction(read_only=True) as tx:
        for pid in pids:
            snap = tx.get_snapshot(pid, "zoho_cn", "Contacts")
            assert snap is not None
            party = tx.unseal(rt.cipher, "snapshots", "blob", row=snapshot_row(pid, "zoho_cn", "Contacts"),
                              token=snap.blob)
            value = party["extensions"][EXT]
            assert value in dates.values()
            seen.add(value)
            assert value.encode() not in snap.blob
            # the snapshot records the version of each mapping that produced it
            assert snap.mapping_versions == versions["core_to_zoho"]
    assert seen
    rt.store.engine.dispose()   # the WAL is checkpointed into the file
    db = Path(env.config()["state"]["url"].removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert b"core_to_zoho" in raw   # the right file: it holds the job's runs
    leaked = [v for v in seen if v.encode() in raw]
    assert not leaked, f"clear relationship start dates in the state database: {leaked[:3]}"

    # the ledger lists it among each write's changed fields, masked; the clear value only in the encrypted diff
    with rt.store.transaction(read_only=True) as tx:
        ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        for job in ("core_to_zoho", "core_fxiaoke"):
            created = [e for e in ledger.iter_entries(job=job) if e["action"] == "created"]
            assert created, job
            for raw_entry in created:
                e = decode_entry(raw_entry)
                assert PATH in e["changed_fields"], (job, e["changed_fields"])
                # the written record holds the masked form
                assert crm_records[(e["target_system"], e["target_id"])][FX_FIELD if job == "core_fxiaoke"
                                                                       else ZOHO_FIELD] == MASKED
                assert e["masked_after"][PATH] == MASKED
                assert ledger.decrypt_diff(raw_entry)[PATH][1] in dates.values()
                # the ledger entry and the party's snapshot name the same mapping versions (two-way too)
                assert e["mapping_versions"] == versions[job]
                snap = tx.get_snapshot(e["party_id"], e["target_system"], e["target_object"])
                assert snap is not None and snap.mapping_versions == versions[job]
                text = json.dumps([raw_entry[k] for k in ("payload", "masked_after", "masked_before")], default=str)
                assert not any(v in text for v in seen)

    # reconcile: the extension matches; changed in Zoho, it is named as the differing field
    for job in ("core_to_zoho", "core_fxiaoke"):
        assert reconcile(rt, job).complete, reconcile(rt, job).as_dict()
    victim = managed[0]
    victim[ZOHO_FIELD] = "2001-01-01"
    report = reconcile(rt, "core_to_zoho")
    assert report.different == [victim["Party_ID"]]
    assert report.different_fields[victim["Party_ID"]] == [ZOHO_FIELD]
