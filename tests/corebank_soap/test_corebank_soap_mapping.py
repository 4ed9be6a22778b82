"""The shipped core-banking mapping against real simulator records, and the configuration-only claim: the same
customers served as FLEXCUBE records and as T24-style records map to the same canonical parties, with only the
adapter configuration and the mapping file changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from corebank_soap_support import FIXTURES, fcubs_config, t24_config

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator, T24StyleSimulator
from crmbridge.adapters.registry import target_profile
from crmbridge.adapters.simulator import Knobs
from crmbridge.canonical.mapping import check_mapping_file, load_mapping, validate_against
from crmbridge.core.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
FCUBS_MAPPING = REPO / "mappings" / "corebank_soap_customer.yaml"
T24_MAPPING = FIXTURES / "t24_customer.yaml"


@pytest.mark.parametrize("path", [FCUBS_MAPPING, T24_MAPPING])
def test_mappings_validate(path: Path) -> None:
    mapping, problems = check_mapping_file(path, profile=target_profile)
    assert mapping is not None and [p for p in problems if p.severity == "error"] == []


def _essence(party: Any) -> dict[str, Any]:
    addr = party.addresses[0] if party.addresses else None
    return {
        "type": str(party.party_type), "name": party.name.legal_zh,
        "ids": sorted((str(i.scheme), i.value) for i in party.identifiers),
        "contacts": sorted((str(c.type), c.value) for c in party.contact_points),
        "address": addr and (addr.province, addr.city, addr.district, addr.street),
        "segment": party.segment and str(party.segment.code),
        "aum": party.aum and (party.aum.amount, party.aum.currency),
        "rm": party.relationship_manager and party.relationship_manager.employee_id,
        "risk": party.kyc and str(party.kyc.risk_rating),
        "crm_consent": [str(c.status) for c in party.consents if str(c.purpose).endswith("SHARE_WITH_CRM_VENDOR")],
    }


def test_flexcube_and_t24_shapes_give_the_same_parties() -> None:
    fm, tm = load_mapping(FCUBS_MAPPING, profile=target_profile), load_mapping(T24_MAPPING, profile=target_profile)
    knobs = dict(seed=21, records=25)
    with CorebankSoapSimulator(Knobs(**knobs)) as fs, T24StyleSimulator(Knobs(**knobs),
                                                                        wsdl_path=FIXTURES / "t24_customer.wsdl") as ts:
        with CorebankSoapAdapter(fcubs_config(fs)) as fa, CorebankSoapAdapter(t24_config(ts)) as ta:
            f_recs = {r.external_id: r for p in fa.extract("Customer") for r in p.records}
            t_recs = {r.external_id: r for p in ta.extract("Customer") for r in p.records}
    assert f_recs.keys() == t_recs.keys() and len(f_recs) == 25
    types = set()
    for cif, fr in f_recs.items():
        tr = t_recs[cif]
        fp, tp = fm.to_party(fr.data), tm.to_party(tr.data)
        assert _essence(fp) == _essence(tp), cif
        assert fm.external_id(fr.data) == tm.external_id(tr.data) == cif
        assert fr.version == tr.version == "1"
        # DATE.TIME has minute precision; CHECKERSTAMP has seconds
        assert fr.modified_at is not None and tr.modified_at is not None
        assert tr.modified_at == fr.modified_at.replace(second=0) == tm.modified_at(tr.data)
        types.add(str(fp.party_type))
    assert len(types) == 2


def test_defective_records_become_record_errors_with_the_field() -> None:
    m = load_mapping(FCUBS_MAPPING, profile=target_profile)
    with CorebankSoapSimulator(Knobs(seed=4, records=60, bad_fraction=0.25)) as sim, \
            CorebankSoapAdapter(fcubs_config(sim)) as adapter:
        records = [r for p in adapter.extract("Customer") for r in p.records]
        outcomes: dict[str, int] = {}
        for r in records:
            defect = sim.store.get(r.external_id)["bad"]  # type: ignore[index]
            try:
                m.to_party(r.data)
                ok = True
            except ValidationError as exc:
                ok = False
                assert exc.field, exc
                assert r.data.get("UIDVAL", "") not in str(exc) or not r.data.get("UIDVAL")
            expected_ok = defect in (None, "legacy15_ric", "fullwidth_ric")
            assert ok == expected_ok, (r.external_id, defect)
            outcomes[str(defect)] = outcomes.get(str(defect), 0) + 1
    assert len(outcomes) >= 5


def test_map_out_payload_is_accepted_by_the_write_back() -> None:
    """The mapping's out direction produces exactly what the adapter may write (CTYPE is dropped, nothing golden)."""
    m = load_mapping(FCUBS_MAPPING, profile=target_profile)
    with CorebankSoapSimulator(Knobs(seed=8, records=10)) as sim, \
            CorebankSoapAdapter(fcubs_config(sim)) as adapter:
        rec = next(r for p in adapter.extract("Customer") for r in p.records if r.data["CTYPE"] == "I")
        party = m.to_party(rec.data)
        changed = party.model_copy(update={"contact_points": [
            c.model_copy(update={"value": "+8613900001234"}) if str(c.type).endswith("MOBILE") else c
            for c in party.contact_points]})
        payload = m.map_out(changed)
        [res] = adapter.write("Customer", [WriteItem(key="p", payload=payload, external_id=rec.external_id,
                                                     expected_version=rec.version)])
        assert res.status is WriteStatus.UPDATED, res
        stored = sim.store.get(rec.external_id)
        assert stored is not None and stored["mobile"] == "13900001234"
        assert stored["name"] == rec.data["NAME"]


def test_t24_map_out_payload_round_trips() -> None:
    m = load_mapping(T24_MAPPING, profile=target_profile)
    with T24StyleSimulator(Knobs(seed=8, records=10), wsdl_path=FIXTURES / "t24_customer.wsdl") as sim, \
            CorebankSoapAdapter(t24_config(sim)) as adapter:
        rec = next(r for p in adapter.extract("Customer") for r in p.records if r.data["Sector"] == "1001")
        party = m.to_party(rec.data)
        payload = m.map_out(party)
        [res] = adapter.write("Customer", [WriteItem(key="p", payload=payload, external_id=rec.external_id,
                                                     expected_version=rec.version)])
        assert res.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED), res


def test_mappings_fit_the_described_fields(fcubs: CorebankSoapAdapter, t24: CorebankSoapAdapter) -> None:
    assert validate_against(load_mapping(FCUBS_MAPPING, profile=target_profile), fcubs.describe("Customer")) == []
    assert validate_against(load_mapping(T24_MAPPING, profile=target_profile), t24.describe("Customer")) == []


def test_shipped_sample_record_maps() -> None:
    sample = json.loads((REPO / "mappings" / "samples" / "corebank_soap_customer.json").read_text(encoding="utf-8"))
    party = load_mapping(FCUBS_MAPPING, profile=target_profile).to_party(sample)
    assert party.name.legal_zh == sample["NAME"]
    assert [i.value for i in party.identifiers if str(i.scheme).endswith("CN_RIC")] == [sample["UIDVAL"]]
