"""The shipped rules (mappings/rules.yaml): clean, schema current, and one test per rule showing each of its cases
both holding and failing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from crmbridge.canonical.classification import unclassified_fields
from crmbridge.canonical.rules import (
    DerivedFields,
    check_rules_file,
    derive,
    derived_policies,
    load_rules,
    rules_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "mappings" / "rules.yaml"
SAMPLES = ROOT / "mappings" / "samples"
AS_OF = dt.date(2025, 6, 30)
PARTY = json.loads((SAMPLES / "party_individual.json").read_text(encoding="utf-8"))
ORG = json.loads((SAMPLES / "party_organisation.json").read_text(encoding="utf-8"))
PID = PARTY["party_id"]


@pytest.fixture(scope="module")
def rules():
    return load_rules(RULES)


def party(band: str | None = "500K_6M", **kw: object) -> dict:
    p = {k: v for k, v in PARTY.items() if k != "aum"}
    if band is not None:
        p["aum"] = {"amount": "1.00", "currency": "CNY", "band": band}
    return {**p, **kw}


def holding(family: str = "DEPOSIT", opened: str | None = "2020-01-01", closed: str | None = None,
            amount: str | None = None) -> dict:
    h: dict = {"party_id": PID, "product_family": family, "product_code": "P1", "opened_on": opened}
    if closed:
        h.update(status="CLOSED", closed_on=closed)
    if amount:
        h["balance"] = {"amount": amount, "currency": "CNY"}
    return h


def fields(rules, p: dict, holdings: list, history: list | None = None) -> dict:
    return derive(p, holdings, history or [], rules, as_of=AS_OF).fields


def test_shipped_rules_are_clean_and_match_their_schema() -> None:
    import jsonschema

    r, problems = check_rules_file(RULES)
    assert r is not None and problems == []
    assert RULES.read_text(encoding="utf-8").splitlines()[0] == "# yaml-language-server: $schema=./rules.schema.json"
    published = json.loads((RULES.parent / "rules.schema.json").read_text(encoding="utf-8"))
    assert published == rules_json_schema(), "regenerate: crmbridge rules schema > mappings/rules.schema.json"
    validator = jsonschema.Draft202012Validator(published)
    assert list(validator.iter_errors(yaml.safe_load(RULES.read_text(encoding="utf-8")))) == []
    broken = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    broken["rules"][0]["cases"][0]["when"]["fact"] = "aum_bnad"      # editors flag unknown facts
    assert list(validator.iter_errors(broken))


def test_derived_fields_are_classified() -> None:
    assert unclassified_fields(DerivedFields) == []
    assert set(derived_policies()) == {"segment", "lifecycle_stage", "churn_risk"}
    assert all(not p.is_personal for p in derived_policies().values())


@pytest.mark.parametrize(("band", "holdings", "expected"), [
    ("GE_30M", [], "PRIVATE"),
    ("6M_30M", [], "PRIVATE"),
    ("500K_6M", [], "WEALTH"),
    ("50K_500K", [], "AFFLUENT"),
    ("LT_50K", [holding("WEALTH_MANAGEMENT")], "AFFLUENT"),       # from holdings: a wealth product
    ("LT_50K", [holding("INSURANCE")], "AFFLUENT"),
    ("LT_50K", [holding("DEPOSIT")], "MASS"),
    ("LT_50K", [holding("WEALTH_MANAGEMENT", closed="2025-01-01")], "MASS"),   # closed: not held
    (None, [holding(amount="7000000.00")], "PRIVATE"),           # no AUM on the party: its holdings' total band
    (None, [], "MASS"),
])
def test_rule_segment(rules, band, holdings, expected) -> None:
    assert fields(rules, party(band), holdings)["segment"] == expected


def test_rule_segment_does_not_apply_to_organisations(rules) -> None:
    d = derive(ORG, [], [], rules, as_of=AS_OF)
    assert "segment" not in d.fields
    assert any(t.rule == "segment" and t.note == "rule does not apply" for t in d.trace)


@pytest.mark.parametrize(("holdings", "expected"), [
    ([holding(closed="2025-05-01")], "WIN_BACK"),
    ([holding(opened="2019-01-01", closed="2023-01-01"), holding(opened="2020-01-01", closed="2024-01-01")],
     "WIN_BACK"),
    ([], "ACQUISITION"),
    ([holding(opened="2025-03-01")], "ACQUISITION"),
    ([holding(opened="2025-01-01")], "ACQUISITION"),          # 180 days: the first half-year still
    ([holding(opened="2024-12-31")], "GROWTH"),               # 181 days: past acquisition, opened within a year
    ([holding(opened="2020-01-01"), holding(opened="2025-01-15")], "GROWTH"),
    ([holding(opened="2020-01-01"), holding(opened="2024-06-29")], "RETENTION"),   # 366 days ago
    ([holding(opened="2020-01-01"), holding(opened=None)], "RETENTION"),
])
def test_rule_lifecycle(rules, holdings, expected) -> None:
    assert fields(rules, party(), holdings)["lifecycle_stage"] == expected


@pytest.mark.parametrize(("band", "history", "holdings", "expected"), [
    ("500K_6M", [{"at": "2025-05-01", "aum_band": "GE_30M"}], [holding()], True),      # down 3 bands
    ("500K_6M", [{"at": "2025-05-01", "aum_band": "6M_30M"}], [holding()], False),     # down 1 band
    ("500K_6M", [{"at": "2025-03-01", "aum_band": "GE_30M"}], [holding()], False),     # 121 days ago: outside 90
    ("LT_50K", [{"at": "2025-06-29T10:00:00+00:00", "party": {"aum": {"band": "500K_6M"}}}], [holding()], True),
    ("GE_30M", [{"at": "2025-06-01", "aum_band": "LT_50K"}], [holding()], False),      # up, not down
    ("500K_6M", [], [holding(closed="2025-05-15")], True),                             # last holding closed lately
    ("500K_6M", [], [holding(closed="2025-01-15")], False),                            # … but long ago
    ("500K_6M", [], [holding(closed="2025-05-15"), holding()], False),                 # another still open
])
def test_rule_churn_risk(rules, band, history, holdings, expected) -> None:
    assert fields(rules, party(band), holdings, history)["churn_risk"] is expected


def test_derivation_carries_the_rules_version_and_a_masked_trace(rules) -> None:
    doc = json.loads((SAMPLES / "rules_input.json").read_text(encoding="utf-8"))
    d = derive(doc["party"], doc["holdings"], doc["history"], rules, as_of=AS_OF)
    assert d.fields == {"segment": "WEALTH", "lifecycle_stage": "GROWTH", "churn_risk": False}
    assert d.rules_version == rules.version_hash and len(d.rules_version) == 64
    assert d.rules_applied == {"segment": "segment", "lifecycle_stage": "lifecycle", "churn_risk": "churn_risk"}
    assert d.model().segment == "WEALTH"
    text = repr(d.trace)
    assert "850000" not in text and "张三" not in text


def test_derived_fields_are_placed_where_party_mappings_read_them(rules) -> None:
    from crmbridge.canonical.extensions import ExtensionField, extensions_declared
    from crmbridge.core.errors import ValidationError

    d = derive(party("GE_30M"), [holding(closed="2025-05-15")], [], rules, as_of=AS_OF)
    assert d.fields == {"segment": "PRIVATE", "lifecycle_stage": "WIN_BACK", "churn_risk": True}
    placed, left = d.apply_to(party("GE_30M"))
    assert placed.segment.code == "PRIVATE" and placed.segment.source == f"rules:{d.rules_version[:12]}"
    assert placed.segment.tier is None                       # the core's tier belonged to its WEALTH code
    assert left == ["lifecycle_stage", "churn_risk"]
    stage = ExtensionField.model_validate({"type": "enum", "class": "C1", "description": "derived",
                                           "values": ["ACQUISITION", "GROWTH", "RETENTION", "WIN_BACK"]})
    risk = ExtensionField.model_validate({"type": "boolean", "class": "C1", "description": "derived"})
    with extensions_declared({"lifecycle_stage": stage, "churn_risk": risk}):
        placed, left = d.apply_to(party("GE_30M"))
        assert left == [] and placed.extensions == {"lifecycle_stage": "WIN_BACK", "churn_risk": True}
    personal = ExtensionField.model_validate({"type": "boolean", "class": "C2", "mask": "generic",
                                              "description": "wrongly personal"})
    with extensions_declared({"churn_risk": personal}), pytest.raises(ValidationError) as info:
        d.apply_to(party("GE_30M"))
    assert info.value.code == "class_mismatch"
