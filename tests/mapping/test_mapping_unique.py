"""unique_masked: a minimised value that cannot collide (Fxiaoke's duplicate rule matched every 张* to every other)."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import check_mapping_file, load_mapping, mapping_json_schema
from crmbridge.canonical.model import parse_party
from crmbridge.core.errors import ValidationError

SAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "samples"

HEADER = """\
system: fxiaoke
object: ContactObj
version: 1
description: test
party_type: INDIVIDUAL
external_id: _id
key_field: party_id__c
steps:
"""

UNIQUE = """\
  - type: unique_masked
    vendor: name
    parts:
      - {canonical: name.legal_zh, mask: name}
      - {canonical: party_id}
    required: true
"""


def _write(tmp_path: Path, steps: str, header: str = HEADER) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(textwrap.dedent(header) + textwrap.dedent(steps), encoding="utf-8")
    return p


def _party(pid: str, name: str = "张三", cif: str = "800000123"):
    data = json.loads((SAMPLES / "party_individual.json").read_text(encoding="utf-8"))
    data["party_id"] = pid
    data["name"] = {"legal_zh": name}
    data["source_refs"] = [{"system": "FLEXCUBE", "system_id": cif}]
    return parse_party(data)


def _problems(path: Path) -> list[tuple[str, str, str]]:
    _, problems = check_mapping_file(path, profile=target_profile)
    return [(p.path, p.severity, p.message) for p in problems]


def test_two_parties_with_the_same_masked_name_get_different_values(tmp_path: Path) -> None:
    m = load_mapping(_write(tmp_path, UNIQUE), profile=target_profile)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    out_a = m.map_out(_party(a, "张三"))
    out_b = m.map_out(_party(b, "张伟"))
    assert out_a["name"] == f"张*-{a}" and out_b["name"] == f"张*-{b}"
    assert out_a["name"] != out_b["name"]
    assert "三" not in out_a["name"] and "伟" not in out_b["name"]   # the given name never goes out
    assert _problems(_write(tmp_path, UNIQUE)) == []                   # masked + unique key: no warning


def test_masked_name_with_the_last_characters_of_the_party_id(tmp_path: Path) -> None:
    steps = """\
      - type: unique_masked
        vendor: name
        separator: "·"
        parts:
          - {canonical: name.legal_zh, mask: name}
          - {canonical: party_id, last: 4}
    """
    path = _write(tmp_path, steps)
    m = load_mapping(path, profile=target_profile)   # a warning, not an error
    pid = "6f1c2b0e-8d2a-4c35-9e61-2b7f4a1d9c10"
    assert m.map_out(_party(pid, "欧阳娜娜"))["name"] == "欧阳**·9c10"
    ((where, severity, message),) = _problems(path)
    assert where == "steps[0].parts" and severity == "warning" and "can get the same value" in message


def test_core_reference_as_the_unique_part(tmp_path: Path) -> None:
    steps = """\
      - type: unique_masked
        vendor: name
        parts:
          - {canonical: name.legal_zh, mask: name}
          - {canonical: "source_refs[system=FLEXCUBE].system_id"}
    """
    path = _write(tmp_path, steps)
    assert _problems(path) == []
    out = load_mapping(path, profile=target_profile).map_out(_party(str(uuid.uuid4()), "李四", cif="800000777"))
    assert out["name"] == "李*-800000777"


@pytest.mark.parametrize(("part", "expected"), [
    ("{canonical: name.legal_zh}", "is personal data (C2): give the part mask: name"),
    ("{canonical: date_of_birth, mask: date}", "is not part of the CRM projection (never"),
    ("{canonical: aum.amount, mask: amount}", "is not part of the CRM projection (derived"),
    ("{canonical: \"identifiers[scheme=CN_RIC].value\"}", "is personal data (C2)"),
    ("{canonical: name.legal_zh, mask: nope}", "unknown mask kind 'nope'"),
    ("{canonical: name.legal_zh, mask: generic}", "is masked as name in a CRM projection"),   # 张*丰 shows more
    ("{canonical: \"contact_points[type=MOBILE].value\", mask: generic}", "is masked as mobile"),
])
def test_validate_refuses_parts_that_would_leak(tmp_path: Path, part: str, expected: str) -> None:
    steps = f"""\
      - type: unique_masked
        vendor: name
        parts:
          - {part}
          - {{canonical: party_id}}
    """
    path = _write(tmp_path, steps)
    errors = [p for p in _problems(path) if p[1] == "error"]
    assert errors and any(expected in msg for _, _, msg in errors), errors


def test_masked_identifier_tail_is_within_the_projection(tmp_path: Path) -> None:
    steps = """\
      - type: unique_masked
        vendor: name
        parts:
          - {canonical: name.legal_zh, mask: name}
          - {canonical: "identifiers[scheme=CN_RIC].value", mask: ric, last: 4}
          - {canonical: party_id}
    """
    path = _write(tmp_path, steps)
    assert _problems(path) == []
    pid = str(uuid.uuid4())
    assert load_mapping(path, profile=target_profile).map_out(_party(pid))["name"] == f"张*-002X-{pid}"


def test_core_banking_mapping_is_not_minimised(tmp_path: Path) -> None:
    header = HEADER.replace("system: fxiaoke", "system: corebank_soap").replace("object: ContactObj",
                                                                                 "object: Customer")
    steps = """\
      - type: unique_masked
        vendor: LABEL
        parts:
          - {canonical: name.legal_zh}
          - {canonical: party_id}
    """
    path = _write(tmp_path, steps, header)
    assert [p for p in _problems(path) if p[1] == "error"] == []


def test_missing_part_is_a_record_error_when_required_and_omitted_otherwise(tmp_path: Path) -> None:
    m = load_mapping(_write(tmp_path, UNIQUE), profile=target_profile)
    party = _party(str(uuid.uuid4())).model_dump()
    party["name"] = None
    with pytest.raises(ValidationError) as err:
        m.map_out(party)
    assert err.value.field == "name" and "name.legal_zh" in str(err.value)
    optional = load_mapping(_write(tmp_path, UNIQUE.replace("    required: true\n", "")), profile=target_profile)
    assert "name" not in optional.map_out(party)


def test_value_longer_than_the_vendor_field_is_an_error_not_a_cut(tmp_path: Path) -> None:
    m = load_mapping(_write(tmp_path, UNIQUE + "    max_length: 20\n"), profile=target_profile)
    with pytest.raises(ValidationError) as err:
        m.map_out(_party(str(uuid.uuid4())))
    assert "max_length 20" in str(err.value)


def test_step_is_out_only_and_satisfies_the_mandatory_field(tmp_path: Path) -> None:
    path = _write(tmp_path, UNIQUE)
    m = load_mapping(path, profile=target_profile)
    assert "name" in m.vendor_fields("out") and "name" not in m.vendor_fields("in")
    assert set(m.owned_canonical_paths("out")) >= {"name.legal_zh", "party_id"}
    bad = _write(tmp_path, UNIQUE + "    direction: both\n")
    assert any("direction" in where for where, _, _ in _problems(bad))


def test_value_read_back_must_be_dropped(tmp_path: Path) -> None:
    reads_back = UNIQUE + """\
  - type: field
    vendor: name
    canonical: name.legal_zh
    direction: in
"""
    errs = [p for p in _problems(_write(tmp_path, reads_back)) if p[1] == "error"]
    assert errs and errs[0][0] == "steps[1]" and "drop_masked" in errs[0][2]
    dropped = reads_back.replace("    direction: in\n", "    direction: in\n    in: [drop_masked, trim]\n")
    m = load_mapping(_write(tmp_path, dropped), profile=target_profile)
    pid = str(uuid.uuid4())
    echoed = m.map_out(_party(pid))
    assert "name" not in m.map_in_partial({"_id": "x1", "party_id__c": pid, **echoed}).get("name", {})


def test_step_is_in_the_json_schema() -> None:
    schema = mapping_json_schema()
    assert "UniqueMaskedStep" in schema["$defs"] and "UniquePart" in schema["$defs"]
    published = json.loads((SAMPLES.parent / "mapping.schema.json").read_text(encoding="utf-8"))
    assert published == schema, "regenerate: crmbridge mapping schema > mappings/mapping.schema.json"
