"""The rules language: every problem located ``file:line: key.path``, the comparisons, masking by class in traces,
and derivation errors that say what and where without values."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest

from crmbridge.canonical.rules import RulesLoadError, check_rules_file, derive, load_rules
from crmbridge.core.errors import MappingError, ValidationError

ROOT = Path(__file__).resolve().parents[2]
PARTY = json.loads((ROOT / "mappings" / "samples" / "party_individual.json").read_text(encoding="utf-8"))
AS_OF = dt.date(2025, 6, 30)

BASE = """\
version: 1
description: test
rules:
  - name: seg
    description: test
    derive: segment
    cases:
      - when: {fact: aum_band, equals: GE_30M}
        value: PRIVATE
      - value: MASS
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    rules, found = check_rules_file(write(tmp_path, text), display="r.yaml")
    assert rules is None
    return [str(p) for p in found]


def line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i for i, t in enumerate(text.splitlines(), 1) if needle in t]
    return hits[nth - 1]


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("fact: aum_band, equals", "fact: aum_bnad, equals", "rules[0].cases[0].when.fact", "unknown fact 'aum_bnad'"),
    ("equals: GE_30M", "equals: GE_40M", "rules[0].cases[0].when.equals", "'GE_40M' is not a valid aum_band"),
    ("equals: GE_30M", "gte: 3", "rules[0].cases[0].when.gte", "gte compares numbers; aum_band is text"),
    ("value: PRIVATE", "value: PLATINUM", "rules[0].cases[0].value", "'PLATINUM' is not a valid segment"),
    ("{fact: aum_band, equals: GE_30M}", "{fact: party.name.nickname, present: true}", "rules[0].cases[0].when.fact",
     "unknown party path 'name.nickname'"),
    ("{fact: aum_band, equals: GE_30M}", "{fact: party.kyc.risk_rating, equals: SCARY}",
     "rules[0].cases[0].when.equals", "'SCARY' is not a valid party.kyc.risk_rating"),
    ("{fact: aum_band, equals: GE_30M}", "{fact: open_families, equals: LOAN}", "rules[0].cases[0].when.equals",
     "open_families is a list: use contains"),
    ("{fact: aum_band, equals: GE_30M}", "{fact: holdings, days: 30, gte: 1}", "rules[0].cases[0].when.days",
     "days does not apply to holdings"),
    ("{fact: aum_band, equals: GE_30M}", "{fact: derived.churn_risk, equals: true}", "rules[0].cases[0].when.fact",
     "derived.churn_risk is not derived by an earlier rule"),
    ("derive: segment", "derive: wealth_score", "rules[0].derive", "Input should be 'segment'"),
    ("{fact: aum_band, equals: GE_30M}", "{fact: aum_band, equals: GE_30M, present: true}", "rules[0].cases[0].when",
     "exactly one of equals, in, not_in"),
    ("{fact: aum_band, equals: GE_30M}", "{all: [{fact: holdings, gte: 1}], any: [{fact: holdings, gte: 1}]}",
     "rules[0].cases[0].when", "a condition is exactly one of: all, any, not, fact"),
    ("{fact: aum_band, equals: GE_30M}", "{all: []}", "rules[0].cases[0].when.all", "at least 1 item"),
    ("{fact: aum_band, equals: GE_30M}", "{fact: aum_band, equals: GE_30M, colour: red}",
     "rules[0].cases[0].when.colour", "unknown key 'colour'"),
    ("  - name: seg", "  - name: Seg-1", "rules[0].name", "should match pattern"),
    ("equals: GE_30M", "equals: null", "rules[0].cases[0].when", "null compares nothing"),
    ("equals: GE_30M", "in: []", "rules[0].cases[0].when.in", "at least 1 item"),
    ("description: test\nrules", "rules", "description", "required key 'description' is missing"),
])
def test_problem_is_located(tmp_path, old, new, where, message) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    found = problems(tmp_path, text)
    line_text = new.splitlines()[-1].split(":")[0].strip("{ -") if where != "description" else None
    hit = [p for p in found if f": {where}: " in p and message in p]
    assert hit, found
    if line_text:
        assert hit[0].startswith("r.yaml:"), hit
        assert int(hit[0].split(":")[1]) == line_of(text, line_text.split(",")[0]), (hit, line_text)


def test_unreachable_case_and_duplicates_are_reported(tmp_path) -> None:
    text = BASE.replace("      - when: {fact: aum_band, equals: GE_30M}\n        value: PRIVATE\n      - value: MASS\n",
                        "      - value: MASS\n      - when: {fact: aum_band, equals: GE_30M}\n        value: PRIVATE\n")
    text += "  - name: seg\n    description: again\n    derive: segment\n    cases: [{value: MASS}]\n"
    found = problems(tmp_path, text)
    assert any(f"r.yaml:{line_of(text, '- value: MASS')}: rules[0].cases[0]: a case without when always holds" in p
               for p in found), found
    assert any("rules[1].name: rule name 'seg' is also rules[0]'s" in p for p in found), found
    assert any("rules[1].derive: segment is already derived by rules[0]" in p for p in found), found


def test_yaml_errors_and_wrong_documents_are_reported(tmp_path) -> None:
    assert any("YAML syntax error" in p for p in problems(tmp_path, "version: 1\nrules: [\n"))
    assert any("a rules file is a YAML mapping" in p for p in problems(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(RulesLoadError) as info:
        load_rules(write(tmp_path, BASE.replace("GE_30M", "GE_40M")))
    assert isinstance(info.value, MappingError) and "rules.yaml:8: rules[0].cases[0].when.equals" in str(info.value)


def test_version_is_the_content_hash(tmp_path) -> None:
    a = load_rules(write(tmp_path, BASE))
    b = load_rules(write(tmp_path, BASE.replace("description: test\nrules", "description: changed\nrules")))
    assert a.version_hash != b.version_hash and len(a.version_hash) == 64


NESTED = """\
version: 2
description: test
rules:
  - name: risk
    description: nested conditions and every operator
    derive: churn_risk
    cases:
      - when:
          all:
            - {fact: party.party_type, in: [INDIVIDUAL]}
            - not: {fact: open_holdings, gt: 2}
            - any:
                - {fact: total_balance, lt: 1000}
                - {fact: party.name.legal_zh, present: true}
            - {fact: party.segment.code, not_in: [PRIVATE]}
        value: true
      - value: false
  - name: seg
    description: reads the earlier derived field
    derive: segment
    cases:
      - when: {fact: derived.churn_risk, equals: true}
        value: MASS
"""


def test_nested_conditions_evaluate_and_mask_by_class(tmp_path) -> None:
    rules = load_rules(write(tmp_path, NESTED))
    holdings = [{"party_id": PARTY["party_id"], "product_family": "DEPOSIT", "product_code": "D",
                 "balance": {"amount": "123456.78", "currency": "CNY"}}]
    d = derive(PARTY, holdings, [], rules, as_of=AS_OF)
    assert d.fields == {"churn_risk": True, "segment": "MASS"}
    rows = {t.test: t for t in d.trace}
    assert rows["total_balance < 1000"].value == "***" and rows["total_balance < 1000"].result is False
    name_row = rows["party.name.legal_zh present is true"]
    assert name_row.value == "张*" and name_row.result is True
    assert rows["not"].result is True and rows["any of"].result is True and rows["all of"].result is True
    assert rows["open_holdings > 2"].depth == 2
    assert "123456" not in repr(d.trace) and "张三" not in repr(d.trace)
    # the same party with many holdings: the `not` fails, so does the case
    d = derive(PARTY, holdings * 3, [], rules, as_of=AS_OF)
    assert d.fields == {"churn_risk": False}
    assert any(t.rule == "seg" and t.note == "no case holds: not derived" for t in d.trace)


def test_a_rule_deriving_the_wrong_party_type_segment_says_where(tmp_path) -> None:
    rules = load_rules(write(tmp_path, BASE.replace("value: MASS", "value: STRATEGIC")))
    with pytest.raises(ValidationError) as info:
        derive(PARTY, [], [], rules, as_of=AS_OF)
    assert info.value.code == "segment_mismatch" and "rules.yaml:10: rules[0].cases[1].value" in str(info.value)


def test_bad_inputs_are_record_errors_without_values(tmp_path) -> None:
    rules = load_rules(write(tmp_path, BASE))
    with pytest.raises(ValidationError) as info:
        derive(PARTY, [{"party_id": PARTY["party_id"], "product_family": "DEPOSIT", "product_code": "D",
                        "account_number": "62220!!2345"}], [], rules)
    assert info.value.field == "account_number" and "holdings[0]" in str(info.value) and "2345" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        derive(PARTY, [], [{"at": "yesterday", "aum_band": "LT_50K"}], rules)
    assert info.value.field == "history[0].at"
    with pytest.raises(ValidationError) as info:
        derive({**PARTY, "name": {"legal_zh": ""}}, [], [], rules)
    assert info.value.code == "missing_name"


def test_corrupted_rules_files_load_or_fail_located(tmp_path) -> None:
    """Cut and scribbled-over copies of the shipped rules: each loads, or every problem is located; nothing raises."""
    import random

    rng = random.Random(20)
    original = (ROOT / "mappings" / "rules.yaml").read_bytes()
    junk = [b"{", b"]", b": ", b"\n  - ", b"fact: party.", b"\x00", b"\xff", b"not:", b"- value:", b"&a *a"]
    loaded = failed = 0
    for i in range(300):
        data = bytearray(original[: max(1, int(len(original) * rng.random()))] if i % 3 == 0 else original)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            data[pos:pos + rng.randint(0, 4)] = rng.choice(junk)
        path = tmp_path / f"r{i}.yaml"
        path.write_bytes(bytes(data))
        rules, found = check_rules_file(path)
        if rules is not None:
            loaded += 1
            derive(PARTY, [], [], rules, as_of=AS_OF)
        else:
            failed += 1
            assert found and all(str(p).startswith(str(path)) for p in found)
    assert failed > 100
