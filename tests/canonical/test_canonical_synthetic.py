"""The synthetic-customer generator: determinism, validity, and each defect kind's fate in the validators."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter

import phonenumbers
import pytest
from stdnum.cn import ric as stdnum_ric

from crmbridge.canonical.gb2260 import area_code
from crmbridge.canonical.identifiers import (
    normalise_identifier,
    org_code_check_digit,
    ric_check_digit,
    uscc_check_digit,
)
from crmbridge.canonical.model import Individual, Organisation, parse_party
from crmbridge.canonical.synthetic import (
    COUNTIES,
    DEFECT_KINDS,
    customer_at,
    defect_for,
    generate_customers,
    mutate,
)
from crmbridge.core.errors import ValidationError

N = 600


@pytest.fixture(scope="module")
def clean() -> list:
    return list(generate_customers(N, seed=11))


@pytest.fixture(scope="module")
def dirty() -> list:
    return list(generate_customers(N, seed=11, bad_fraction=0.1))


def test_county_table_is_real_and_validates() -> None:
    assert len(COUNTIES) >= 60
    assert len({c[0] for c in COUNTIES}) == len(COUNTIES)
    assert len({c[0][:2] for c in COUNTIES}) >= 28  # spread across provinces
    for adcode, province, _city, district, postcode, since in COUNTIES:
        for year in (max(since, 1950), 2005):
            body = f"{adcode}{year}0101001"
            place = stdnum_ric.get_birth_place(body + ric_check_digit(body))
            assert place["province"] == province, adcode
            assert district in place["county"] or place["county"] in district or since > 1950, adcode
        assert len(postcode) == 6 and postcode.isdigit()


def test_synthetic_area_codes_are_current_gb2260_divisions(clean: list, dirty: list) -> None:
    # records meant to be valid carry area codes that pass the GB/T 2260 check; bad ones fail for their named reason
    for adcode, *_ in COUNTIES:
        entry = area_code(adcode)
        assert entry is not None and entry.current, adcode
    for c in (*clean, *dirty):
        rics = [c.id_number] if c.is_individual else [c.legal_rep_id]
        for ric in rics:
            if c.defect in ("bad_ric_checksum",) and ric == c.id_number:
                assert _code("CN_RIC", ric) == "invalid_checksum"
            else:
                assert _code("CN_RIC", ric) is None, (c.index, c.defect)


def _code(scheme: str, value: str) -> str | None:
    try:
        normalise_identifier(scheme, value)
    except ValidationError as exc:
        return exc.code
    return None


def test_deterministic_and_index_independent() -> None:
    a = list(generate_customers(30, seed=5, bad_fraction=0.2))
    b = list(generate_customers(60, seed=5, bad_fraction=0.2))[:30]
    assert a == b
    assert customer_at(17, 5, 0.2) == a[17]
    assert customer_at(17, 6, 0.2) != a[17]


def test_mix_of_individuals_and_organisations(clean: list) -> None:
    kinds = Counter(c.party_type for c in clean)
    assert 0.72 < kinds["INDIVIDUAL"] / N < 0.88
    assert len({c.cif for c in clean}) == N
    assert customer_at(0, 1).cif == customer_at(0, 2).cif == "800000001"


def test_every_clean_record_validates_without_flags(clean: list) -> None:
    for c in clean:
        assert c.defect is None and c.should_validate
        party = parse_party(c.to_party_dict())
        assert isinstance(party, Individual if c.is_individual else Organisation)
        assert party.identifiers[0].flags == (), (c.index, party.identifiers[0].flags)
        assert party.identifiers[0].value == c.id_number
        if c.is_individual:
            # gender consistent with the sequence digit, birth date with digits 7-14 (checked by the model too)
            assert party.gender == c.gender and party.date_of_birth == c.birth_date
            assert party.name.legal_zh == c.name  # type: ignore[union-attr]
        assert party.contact("MOBILE").kind == "MOBILE"  # type: ignore[union-attr]
        assert party.aum is not None and party.aum.band == c.aum_band


def test_identifiers_and_mobiles_are_independently_valid(clean: list) -> None:
    for c in clean:
        if c.is_individual:
            assert stdnum_ric.is_valid(c.id_number)
            assert c.pinyin.split()[0].isupper()
        else:
            assert c.id_number[17] == uscc_check_digit(c.id_number[:17])
            assert c.id_number[16] == org_code_check_digit(c.id_number[8:16])
            assert stdnum_ric.is_valid(c.legal_rep_id)
        number = phonenumbers.parse(c.mobile, "CN")
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
        assert c.email.endswith((".com", ".net", ".org")) and "@example." in c.email


def test_variety(clean: list) -> None:
    orgs = [c for c in clean if not c.is_individual]
    assert any(c.id_number[0].isalpha() for c in orgs), "some letter-prefixed USCCs"
    assert any(len(c.family_name) == 2 for c in clean if c.is_individual), "some compound surnames"
    assert {c.segment for c in clean} >= {"MASS", "AFFLUENT", "WEALTH", "PRIVATE"}
    statuses = Counter(cs.status for c in clean for cs in c.consents if cs.purpose.startswith("MARKETING"))
    assert statuses["GRANTED"] and statuses["DENIED"] and statuses["WITHDRAWN"]
    assert len({c.address.adcode for c in clean}) > 40
    assert all(c.created_at.tzinfo is not None and c.updated_at >= c.created_at for c in clean)


def test_defect_schedule_is_exact_and_cycles() -> None:
    kinds = [defect_for(i, 0.1, seed=0) for i in range(600)]
    bad = [k for k in kinds if k]
    assert len(bad) == 60
    assert bad[:6] == list(DEFECT_KINDS)
    assert Counter(bad) == {k: 10 for k in DEFECT_KINDS}
    assert defect_for(5, 0.0) is None
    assert all(defect_for(i, 1.0) for i in range(12))
    with pytest.raises(ValueError):
        defect_for(0, 1.5)


#: what the validator must do with each defect kind, written here and not taken from the generator's own
#: ``expected_code``/``expected_flag`` (a generator and a validator drifting together would otherwise pass)
DEFECT_OUTCOMES: dict[str, tuple[str, frozenset[str]]] = {
    "bad_ric_checksum": ("rejected", frozenset({"invalid_checksum"})),
    "malformed_mobile": ("rejected", frozenset({"invalid_phone", "unparsable_phone"})),
    "missing_name": ("rejected", frozenset({"missing_name"})),
    "legacy15_ric": ("flagged", frozenset({"legacy15"})),
    "fullwidth_ric": ("accepted", frozenset()),
    "bad_uscc_check": ("rejected", frozenset({"invalid_checksum"})),
}


def test_every_defect_kind_is_rejected_or_flagged(dirty: list) -> None:
    assert set(DEFECT_OUTCOMES) == set(DEFECT_KINDS)
    outcomes: dict[str, Counter[str]] = {k: Counter() for k in DEFECT_KINDS}
    for c in dirty:
        if c.defect is None:
            party = parse_party(c.to_party_dict())
            assert party.identifiers[0].flags == (), (c.index, party.identifiers[0].flags)
            continue
        kind, allowed = DEFECT_OUTCOMES[c.defect]
        try:
            party = parse_party(c.to_party_dict())
        except ValidationError as err:
            outcomes[c.defect][f"rejected:{err.code}"] += 1
            assert kind == "rejected", (c.defect, err)
            assert err.code in allowed, (c.defect, err.code)
            assert err.code == c.expected_code    # the generator's promise agrees with the validator
            if c.id_number and c.defect != "missing_name":
                assert c.id_number not in str(err), "an error message quotes the ID number"
            continue
        flags = party.identifiers[0].flags
        outcomes[c.defect]["flagged" if flags else "accepted"] += 1
        assert kind != "rejected", f"{c.defect} record {c.index} was accepted"
        assert set(flags) == set(allowed), (c.defect, flags)
        assert c.expected_code is None and c.expected_flag == (next(iter(allowed)) if allowed else None)
        if c.defect == "legacy15_ric":
            assert len(c.id_number) == 15 and len(party.identifiers[0].value) == 18   # converted to 18 digits
        if c.defect == "fullwidth_ric":
            assert party.identifiers[0].value != c.id_number and party.identifiers[0].value.isascii()
    for defect, seen in outcomes.items():
        assert sum(seen.values()) >= 2, f"the data set holds too few {defect} records to judge: {dict(seen)}"


def test_mutate_changes_a_few_fields_deterministically() -> None:
    c = customer_at(3, seed=9)
    m1, m2 = mutate(c, seed=1), mutate(c, seed=1)
    assert m1 == m2
    assert m1.version == c.version + 1 and m1.updated_at > c.updated_at
    changed = [f.name for f in dataclasses.fields(c)
               if getattr(c, f.name) != getattr(m1, f.name) and f.name not in ("version", "updated_at")]
    assert 2 <= len(changed) <= 5, changed
    assert m1.cif == c.cif and m1.id_number == c.id_number
    p0, p1 = parse_party(c.to_party_dict()), parse_party(m1.to_party_dict())
    assert p0.content_hash() != p1.content_hash()
    assert mutate(m1, seed=1) != m1
    assert mutate(c, seed=2) != m1 or mutate(c, seed=3) != m1


def test_mutated_records_still_validate() -> None:
    for i in range(40):
        c = customer_at(i, seed=4)
        m = mutate(mutate(c, seed=i), seed=i)
        party = parse_party(m.to_party_dict())
        assert isinstance(party, Individual if c.is_individual else Organisation)
        assert party.identifiers[0].value == c.id_number and party.identifiers[0].flags == ()
        assert party.content_hash() != parse_party(c.to_party_dict()).content_hash()


def test_paging_lazily_is_cheap() -> None:
    start = dt.datetime.now()
    c = customer_at(9_999_999, seed=1)
    assert c.cif == "810000000"
    assert (dt.datetime.now() - start).total_seconds() < 1
