"""Write-back of CRM-owned contact fields to core banking: optimistic concurrency on MODNO / CURR.NO, stale
versions as CONFLICT (never an overwrite), idempotent repeats, golden fields refused, per-record failures."""

from __future__ import annotations

import pytest
from corebank_soap_support import fcubs_config

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator, T24StyleSimulator
from crmbridge.adapters.simulator import Fault
from crmbridge.core.errors import RecordRejectedError

POSTS = "POST /FCUBSCustomerService/FCUBSCustomerService"


def _mobile_item(custno: str, mobile: str, version: str | None, key: str = "k") -> WriteItem:
    return WriteItem(key=key, payload={"Custpersonal": {"MOBNUM": mobile}}, external_id=custno,
                     expected_version=version)


def _individual(sim: CorebankSoapSimulator, start: int = 1) -> str:
    """The CIF number of an individual customer (contact fields live in Custpersonal)."""
    for i in range(start - 1, sim.store.n):
        rec = sim.store.record(i)
        if rec["ctype"] == "I":
            return rec["custno"]
    raise AssertionError("no individual customer seeded")


def test_update_with_current_modno(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter) -> None:
    cif = _individual(fcubs_sim)
    [res] = fcubs.write("Customer", [_mobile_item(cif, "13900001111", "1")])
    assert res.status is WriteStatus.UPDATED and res.version == "2" and res.external_id == cif
    assert res.modified_at is not None and res.modified_at.tzinfo is not None
    stored = fcubs_sim.store.get(cif)
    assert stored is not None and stored["mobile"] == "13900001111" and stored["modno"] == 2


def test_stale_modno_is_a_conflict_never_an_overwrite(fcubs_sim: CorebankSoapSimulator,
                                                      fcubs: CorebankSoapAdapter) -> None:
    cif = _individual(fcubs_sim)
    fcubs_sim.store.touch(cif, mobile="13700009999")          # a teller changed the customer meanwhile
    [res] = fcubs.write("Customer", [_mobile_item(cif, "13900001111", "1")])
    assert res.status is WriteStatus.CONFLICT
    assert res.version == "2"                                  # the core's current MODNO, for the conflict queue
    assert isinstance(res.error, RecordRejectedError) and res.error.code == "conflict:stale_version"
    stored = fcubs_sim.store.get(cif)
    assert stored is not None and stored["mobile"] == "13700009999" and stored["modno"] == 2


def test_repeated_write_is_unchanged_not_a_second_modification(fcubs_sim: CorebankSoapSimulator,
                                                               fcubs: CorebankSoapAdapter) -> None:
    cif = _individual(fcubs_sim)
    item = _mobile_item(cif, "13900001111", "1")
    assert fcubs.write("Customer", [item])[0].status is WriteStatus.UPDATED
    [again] = fcubs.write("Customer", [item])
    assert again.status is WriteStatus.UNCHANGED and again.version == "2"
    stored = fcubs_sim.store.get(cif)
    assert stored is not None and stored["modno"] == 2


def test_timeout_after_apply_is_retried_without_a_second_modification(fcubs_sim: CorebankSoapSimulator) -> None:
    cif = _individual(fcubs_sim)
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, timeout=0.3)) as adapter:
        assert adapter.get("Customer", cif) is not None
        fcubs_sim.knobs.timeout_delay = 0.8
        fcubs_sim.inject(Fault.TIMEOUT_AFTER_APPLY, times=1)
        [res] = adapter.write("Customer", [_mobile_item(cif, "13900001111", "1")])
        assert res.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED)
        assert adapter.stats.retries == 1
    stored = fcubs_sim.store.get(cif)
    assert stored is not None and stored["modno"] == 2 and stored["mobile"] == "13900001111"


def test_golden_fields_are_refused_without_a_call(fcubs_sim: CorebankSoapSimulator,
                                                  fcubs: CorebankSoapAdapter) -> None:
    cif = _individual(fcubs_sim)
    before = fcubs_sim.requests_seen[POSTS]
    [res] = fcubs.write("Customer", [WriteItem(key="k", payload={"NAME": "张三", "UIDVAL": "110105194912310021"},
                                               external_id=cif, expected_version="1")])
    assert res.status is WriteStatus.FAILED and res.error is not None and res.error.code == "golden_field"
    assert "110105194912310021" not in str(res.error)
    assert fcubs_sim.requests_seen[POSTS] == before


def test_one_invalid_record_does_not_fail_the_others(fcubs_sim: CorebankSoapSimulator,
                                                     fcubs: CorebankSoapAdapter) -> None:
    a, b = _individual(fcubs_sim), _individual(fcubs_sim, int(_individual(fcubs_sim)) + 1)
    res = fcubs.write("Customer", [_mobile_item(a, "13900001111", "1", "ka"),
                                   _mobile_item(b, "12345", "1", "kb"),
                                   _mobile_item("000009999", "13900002222", "1", "kc"),
                                   WriteItem(key="kd", payload={"Custpersonal": {"EMAILID": "x@y.cn"}})])
    assert [r.key for r in res] == ["ka", "kb", "kc", "kd"]
    assert [r.status for r in res] == [WriteStatus.UPDATED, WriteStatus.FAILED, WriteStatus.FAILED,
                                       WriteStatus.FAILED]
    assert res[1].error is not None and res[1].error.code == "validation:ST-VALS-010"
    assert res[2].error is not None and res[2].error.code == "not_found:ST-CUS-001"
    assert res[3].error is not None and res[3].error.code == "create_unsupported"


def test_missing_version_reads_it_first_unless_required(fcubs_sim: CorebankSoapSimulator,
                                                        fcubs: CorebankSoapAdapter) -> None:
    cif = _individual(fcubs_sim)
    [res] = fcubs.write("Customer", [_mobile_item(cif, "13900001111", None)])
    assert res.status is WriteStatus.UPDATED and res.version == "2"
    strict = fcubs_config(fcubs_sim, operations={"modify": {"require_version": True}})
    with CorebankSoapAdapter(strict) as adapter:
        [res] = adapter.write("Customer", [_mobile_item(cif, "13900002222", None)])
        assert res.status is WriteStatus.FAILED and res.error is not None and res.error.code == "version_required"


def test_closed_customers_are_tombstones_and_not_writable(fcubs_sim: CorebankSoapSimulator,
                                                          fcubs: CorebankSoapAdapter) -> None:
    cif = _individual(fcubs_sim)
    fcubs_sim.store.close(cif)
    records = [r for p in fcubs.extract("Customer") for r in p.records]
    closed = [r for r in records if r.external_id == cif]
    assert len(closed) == 1 and closed[0].deleted and closed[0].data["RECORD_STAT"] == "C"
    assert sum(r.deleted for r in records) == 1
    [res] = fcubs.write("Customer", [_mobile_item(cif, "13900001111", closed[0].version)])
    assert res.status is WriteStatus.FAILED and res.error is not None
    assert res.error.code == "rejected:ST-CLOSED-001"


def test_incremental_extract_sees_the_write_back(fcubs_sim: CorebankSoapSimulator,
                                                 fcubs: CorebankSoapAdapter) -> None:
    everything = [r for p in fcubs.extract("Customer") for r in p.records]
    newest = max(r.modified_at for r in everything if r.modified_at is not None)
    cif = _individual(fcubs_sim)
    [res] = fcubs.write("Customer", [_mobile_item(cif, "13900001111", "1")])
    changed = [r for p in fcubs.extract("Customer", since=newest) for r in p.records]
    assert cif in {r.external_id for r in changed}
    assert res.modified_at is not None and res.modified_at >= newest


# --------------------------------------------------------------------------------------------- T24-style
def test_t24_amend_with_curr_no_and_stale_conflict(t24_sim: T24StyleSimulator, t24: CorebankSoapAdapter) -> None:
    cif = "000000003"
    current = t24.get("Customer", cif)
    assert current is not None and current.version == "1"
    item = WriteItem(key="k", payload={"gPHONE1": {"mPHONE1": {"SMS1": "13900001111"}}}, external_id=cif,
                     expected_version="1")
    [res] = t24.write("Customer", [item])
    assert res.status is WriteStatus.UPDATED and res.version == "2"
    stored = t24_sim.store.get(cif)
    assert stored is not None and stored["mobile"] == "13900001111"
    stale = WriteItem(key="k", payload={"gPHONE1": {"mPHONE1": {"SMS1": "13900002222"}}}, external_id=cif,
                      expected_version="1")
    [res] = t24.write("Customer", [stale])
    assert res.status is WriteStatus.CONFLICT and res.version == "2"
    stored = t24_sim.store.get(cif)
    assert stored is not None and stored["mobile"] == "13900001111"


@pytest.mark.parametrize("payload", [{"gNAME1": {"Name1": ["X"]}}, {"Target": "WEALTH"}])
def test_t24_golden_fields_are_refused(t24: CorebankSoapAdapter, payload: dict) -> None:
    [res] = t24.write("Customer", [WriteItem(key="k", payload=payload, external_id="000000001",
                                             expected_version="1")])
    assert res.status is WriteStatus.FAILED and res.error is not None and res.error.code == "golden_field"
