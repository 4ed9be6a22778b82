"""mappings/corebank_rest_client.yaml against the Fineract-shaped simulator: every record maps in (or is refused
with the reason its defect calls for), and the write-back round trip goes through the adapter's rules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from corebank_rest_support import set_env

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.corebank_rest import CorebankRestAdapter, CorebankRestConfig
from crmbridge.adapters.corebank_rest.simulator import CorebankRestSimulator
from crmbridge.adapters.registry import target_profile
from crmbridge.adapters.simulator import Knobs
from crmbridge.canonical.mapping import check_mapping_file, load_mapping
from crmbridge.canonical.synthetic import customer_at
from crmbridge.core.errors import ValidationError

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "corebank_rest_client.yaml"
SEED, BAD = 4, 0.2


@pytest.fixture
def sim() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=SEED, records=60, bad_fraction=BAD)) as s:
        yield s


def test_mapping_file_validates() -> None:
    _, problems = check_mapping_file(MAPPING, profile=target_profile)
    assert problems == []


def test_every_client_maps_in_or_is_refused_for_its_defect(sim: CorebankRestSimulator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)
    m = load_mapping(MAPPING, profile=target_profile)
    adapter = CorebankRestAdapter(default_config(sim))  # the built-in Fineract resource: identifiers embedded
    records = {r.external_id: r for p in adapter.extract("Client") for r in p.records}
    assert len(records) == 60
    kinds = {"INDIVIDUAL": 0, "ORGANISATION": 0}
    for i in range(60):
        rec = records[str(i + 1)].data
        c = customer_at(i, SEED, BAD)
        if c.expected_code is not None:
            with pytest.raises(ValidationError) as info:
                m.to_party(rec)
            if c.defect != "malformed_mobile":
                assert info.value.code == c.expected_code, c.defect
            assert c.id_number not in str(info.value) and (c.mobile or "@@") not in str(info.value)
            continue
        party = m.to_party(rec)
        kinds[party.party_type.value] += 1
        assert m.external_id(rec) == str(i + 1)
        assert party.name is not None and party.name.legal_zh == c.name
        scheme = "CN_RIC" if c.is_individual else "CN_USCC"
        ident = next(x for x in party.identifiers if x.scheme.value == scheme)
        if c.defect == "legacy15_ric":
            assert "legacy15" in ident.flags
        elif c.defect != "fullwidth_ric":
            assert ident.value == c.id_number
        mobile = next(cp.value for cp in party.contact_points if cp.type.value == "MOBILE")
        assert mobile.endswith(c.mobile[-8:])
        assert m.is_deleted(rec) == (c.lifecycle_stage == "CLOSED")
    assert kinds["INDIVIDUAL"] and kinds["ORGANISATION"]


def default_config(sim: CorebankRestSimulator) -> CorebankRestConfig:
    return CorebankRestConfig(base_url=f"{sim.url}/fineract-provider/api",
                              auth={"type": "basic", "username": "mifos", "password": "env:CB_REST_PASSWORD"},
                              timezone="Asia/Shanghai")  # type: ignore[arg-type]


def test_write_back_round_trip_with_the_default_fineract_resource(sim: CorebankRestSimulator,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)
    m = load_mapping(MAPPING, profile=target_profile)
    adapter = CorebankRestAdapter(default_config(sim))
    rec = sim.record("1")
    assert rec is not None
    party_id = uuid.uuid4()
    party = m.to_party(rec, party_id=party_id)
    payload = m.map_out(party)
    assert payload["externalId"] == str(party_id) and "legalForm" in payload  # the adapter drops legalForm
    res = adapter.write("Client", [WriteItem(key=str(party_id), external_id="1", payload=payload,
                                             key_field=m.spec.key_field)])
    assert res[0].status is WriteStatus.UPDATED, res
    after = sim.record("1")
    assert after is not None and after["externalId"] == str(party_id) and after["legalForm"] == rec["legalForm"]
    found = adapter.find("Client", "externalId", str(party_id))
    assert found is not None and found.external_id == "1"
    again = adapter.write("Client", [WriteItem(key=str(party_id), payload=payload, key_field="externalId")])
    assert again[0].status is WriteStatus.UNCHANGED and again[0].external_id == "1"
