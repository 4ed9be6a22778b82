"""The change list read against cores whose changed-since filter behaves differently (issue 13, "Truthful runs").

An independent FLEXCUBE-shaped service excluded the boundary second from its changed-since filter, and crmbridge's
keyset paging (each page asks again "changed since" the newest record read) then lost the customers that shared
that second with the last record of a page: 20 of 150, never picked up by a later run. The simulator has modes that
break each convenient assumption (exclusive boundary, many records in one second, edits during the read); with the
DEFAULT configuration (``since_boundary: unknown``) no customer may be lost in any of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from corebank_soap_support import fcubs_config

from crmbridge.adapters.base import RawRecord
from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator
from crmbridge.adapters.simulator import Knobs

CORE_TZ = ZoneInfo("Asia/Shanghai")


def _read(adapter: CorebankSoapAdapter, since: datetime | None = None) -> list[RawRecord]:
    out: list[RawRecord] = []
    for page in adapter.extract("Customer", since=since):
        out.extend(page.records)
    return out


def _expected(sim: CorebankSoapSimulator, since_local: str | None) -> set[str]:
    """Every customer changed at or after ``since`` (core local time), as the store holds them now."""
    store = sim.store
    return {store.custno(i) for i in range(store.n)
            if since_local is None or store.record(i)["stamp"] >= since_local}


def _utc(local_iso: str) -> datetime:
    return datetime.fromisoformat(local_iso).replace(tzinfo=CORE_TZ).astimezone(UTC)


def _shared_stamp(sim: CorebankSoapSimulator) -> str:
    stamps = [sim.store.record(i)["stamp"] for i in range(sim.store.n)]
    return max(set(stamps), key=stamps.count)


MODES = [
    pytest.param({"since_boundary": "exclusive", "same_second": 150}, id="exclusive-150-in-one-second"),
    pytest.param({"since_boundary": "inclusive", "same_second": 150}, id="inclusive-150-in-one-second"),
    pytest.param({"since_boundary": "exclusive"}, id="exclusive"),
    pytest.param({"since_boundary": "inclusive"}, id="inclusive"),
    pytest.param({"since_boundary": "exclusive", "edits_during_read": 12}, id="exclusive-edits-during-read"),
    pytest.param({"since_boundary": "inclusive", "edits_during_read": 12}, id="inclusive-edits-during-read"),
    pytest.param({"since_boundary": "exclusive", "same_second": 40, "edits_during_read": 8},
                 id="exclusive-40-in-one-second-edits"),
]


@pytest.mark.parametrize("modes", MODES)
def test_default_configuration_loses_no_customer(modes: dict) -> None:
    """Default since_boundary (unknown): a full read and a read from a shared second both return every customer
    changed since, whatever the core's boundary semantics; records edited during the read are read at their new
    version. (Before the fix, the exclusive modes lost the rest of each boundary second.)"""
    with CorebankSoapSimulator(Knobs(seed=3, records=300), **modes) as sim:
        adapter = CorebankSoapAdapter(fcubs_config(sim, page_size=10))
        try:
            got = _read(adapter)
            assert {r.external_id for r in got} == _expected(sim, None)
            newest = {r.external_id: int(r.version or 0) for r in got}
            for custno in sim.edits_made:   # the last version the read saw is the current one
                assert newest[custno] <= int(sim.store.get(custno)["modno"])
            if modes.get("same_second"):
                shared = _shared_stamp(sim)
                got = _read(adapter, since=_utc(shared))
                assert {r.external_id for r in got} >= _expected(sim, shared)
        finally:
            adapter.close()


def test_edits_during_the_read_are_read_at_their_new_version() -> None:
    with CorebankSoapSimulator(Knobs(seed=3, records=120), since_boundary="exclusive", edits_during_read=5) as sim:
        adapter = CorebankSoapAdapter(fcubs_config(sim, page_size=10))
        try:
            got = _read(adapter)
            assert len(sim.edits_made) == 5
            for custno in sim.edits_made:
                versions = [int(r.version or 0) for r in got if r.external_id == custno]
                assert max(versions) == int(sim.store.get(custno)["modno"])
            # nothing is yielded twice at the same version
            keys = [(r.external_id, r.version) for r in got]
            assert len(keys) == len(set(keys))
        finally:
            adapter.close()


@pytest.mark.parametrize("boundary", ["inclusive", "exclusive"])
def test_explicit_boundary_matching_the_core_loses_nothing(boundary: str) -> None:
    with CorebankSoapSimulator(Knobs(seed=3, records=250), since_boundary=boundary, same_second=60) as sim:
        cfg = fcubs_config(sim, page_size=10, operations={"list": {"since_boundary": boundary,
                                                                    "paging": {"page_size": 10}}})
        adapter = CorebankSoapAdapter(cfg)
        try:
            got = _read(adapter)
            assert {r.external_id for r in got} == _expected(sim, None)
            keys = [(r.external_id, r.version) for r in got]
            assert len(keys) == len(set(keys))
            shared = _shared_stamp(sim)
            assert {r.external_id for r in _read(adapter, since=_utc(shared))} >= _expected(sim, shared)
        finally:
            adapter.close()


def test_explicit_inclusive_reads_no_more_than_needed() -> None:
    """inclusive (what doctor finds on this core) asks exactly from the watermark: the calls stay close to the
    page count, where unknown pays for the overlap."""
    with CorebankSoapSimulator(Knobs(seed=3, records=200), since_boundary="inclusive") as sim:
        exact = CorebankSoapAdapter(fcubs_config(sim, page_size=10, operations={
            "list": {"since_boundary": "inclusive", "paging": {"page_size": 10}}}))
        safe = CorebankSoapAdapter(fcubs_config(sim, page_size=10))
        try:
            since = _utc(sim.store.record(100)["stamp"])
            a, b = _read(exact, since), _read(safe, since)
            assert {r.external_id for r in a} == _expected(sim, sim.store.record(100)["stamp"])
            assert {r.external_id for r in b} >= {r.external_id for r in a}
            assert exact.stats.api_calls <= 12
        finally:
            exact.close()
            safe.close()


def test_pinned_upper_bound_stops_chasing_edits() -> None:
    """With the list pinned to the first reply's AS_OF, records edited during the read are not chased: the read
    ends after the population present at its start (the edits are the next run's changes)."""
    with CorebankSoapSimulator(Knobs(seed=3, records=100), since_boundary="exclusive", edits_during_read=6) as sim:
        before = _expected(sim, None)
        cfg = fcubs_config(sim, page_size=10, operations={"list": {
            "until": "FCUBS_BODY/Customer-Changes-IO/UNTIL", "until_from": "FCUBS_BODY/Page-Info/AS_OF",
            "paging": {"page_size": 10}}})
        adapter = CorebankSoapAdapter(cfg)
        try:
            got = _read(adapter)
            ids = {r.external_id for r in got}
            # every customer not edited during the read is read; an edited one only if read before its edit
            assert ids >= before - set(sim.edits_made)
            newest_seen = max(r.modified_at for r in got if r.modified_at is not None)
            chased = 0
            for custno in sim.edits_made:
                current = sim.store.get(custno)
                read_versions = {int(r.version or 0) for r in got if r.external_id == custno}
                if current["modno"] not in read_versions:   # edited after the pin: the next run's change
                    chased += 1
                    assert _utc(current["stamp"]) > newest_seen
            assert chased >= 1   # the edits after the first reply were not chased
            assert len(got) <= len(before) + len(sim.edits_made) - chased
        finally:
            adapter.close()
