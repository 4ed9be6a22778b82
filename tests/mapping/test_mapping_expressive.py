"""More expressive mappings without code: select by a sibling field, format templates, number ↔ text, when:."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import check_mapping_file, load_mapping, mapping_json_schema
from crmbridge.canonical.model import parse_party
from crmbridge.canonical.transforms import TransformContext, TransformError, build_transform
from crmbridge.core.errors import ValidationError

SAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "samples"

CORE = """\
system: corebank_soap
object: Customer
version: 1
description: test
party_type: INDIVIDUAL
external_id: CUSTNO
steps:
"""

ZOHO = """\
system: zoho
object: Contacts
version: 1
description: test
party_type: INDIVIDUAL
external_id: id
key_field: Party_ID
steps:
  - {type: field, vendor: Last_Name, canonical: name.legal_zh, out_mask: name, direction: out}
"""


def _write(tmp_path: Path, header: str, steps: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(header + steps, encoding="utf-8")
    return p


def _problems(path: Path) -> list[str]:
    _, problems = check_mapping_file(path, profile=target_profile)
    return [str(p) for p in problems if p.severity == "error"]


def _party(**extra):
    data = json.loads((SAMPLES / "party_individual.json").read_text(encoding="utf-8"))
    data["party_id"] = str(uuid.UUID(int=7))
    data.update(extra)
    return parse_party(data)


SELECT = """\
  - type: select
    vendor: IDNO
    by: IDTYPE
    cases:
      "01": identifiers[scheme=CN_RIC].value
      "02": identifiers[scheme=PASSPORT].value
    transform: [trim, upper]
"""


def test_select_chooses_the_identifier_scheme_from_the_id_type_field(tmp_path: Path) -> None:
    m = load_mapping(_write(tmp_path, CORE, SELECT), profile=target_profile)
    canon = m.map_in({"CUSTNO": "1", "IDTYPE": "02", "IDNO": " e12345678 "})
    assert canon["identifiers"] == [{"scheme": "PASSPORT", "value": "E12345678"}]
    canon = m.map_in({"CUSTNO": "1", "IDTYPE": "01", "IDNO": "11010519491231002X"})
    assert canon["identifiers"][0]["scheme"] == "CN_RIC"
    with pytest.raises(ValidationError, match="IDTYPE value '09' has no case"):
        m.map_in({"CUSTNO": "1", "IDTYPE": "09", "IDNO": "X1"})
    # out: the case holding a value writes the value and its key (core banking: in clear)
    payload = m.map_out(_party(identifiers=[{"scheme": "PASSPORT", "value": "E12345678"}]))
    assert payload["IDNO"] == "E12345678" and payload["IDTYPE"] == "02"


def test_select_to_a_crm_masks_like_an_identifier_step(tmp_path: Path) -> None:
    steps = SELECT.replace("IDNO", "ID_No").replace("IDTYPE", "ID_Type") + "    direction: out\n"
    m = load_mapping(_write(tmp_path, ZOHO, steps), profile=target_profile)
    payload = m.map_out(_party(identifiers=[{"scheme": "CN_RIC", "value": "11010519491231002X"}]))
    assert payload["ID_Type"] == "01"
    assert payload["ID_No"] != "11010519491231002X" and payload["ID_No"].endswith("002X")


def test_select_with_an_unknown_scheme_is_located(tmp_path: Path) -> None:
    p = _write(tmp_path, CORE, SELECT.replace("PASSPORT", "PASPORT"))
    probs = _problems(p)
    assert len(probs) == 1
    assert probs[0].startswith(f"{p}:13: steps[0].cases.02:") and "PASPORT" in probs[0]


FORMAT = """\
  - type: format
    vendor: Display_Name
    template: "{name} ({key})"
    parts:
      name: {canonical: name.legal_zh, mask: name}
      key: {canonical: party_id, last: 8}
    direction: out
"""


def test_format_builds_a_minimised_name_from_a_template(tmp_path: Path) -> None:
    m = load_mapping(_write(tmp_path, ZOHO, FORMAT), profile=target_profile)
    payload = m.map_out(_party(name={"legal_zh": "张三"}))
    assert payload["Display_Name"] == "张* (00000007)"


def test_format_problems_are_located(tmp_path: Path) -> None:
    p = _write(tmp_path, ZOHO, FORMAT.replace("{name} ({key})", "{name} ({id})").replace(", mask: name", ""))
    probs = _problems(p)
    assert any(":12: steps[1].template: placeholder {id} is not a part" in x for x in probs), probs
    assert any(":14: steps[1].parts.name.canonical:" in x and "mask: name" in x for x in probs), probs
    assert any("steps[1].parts.key: part 'key' is not used" in x for x in probs), probs


def test_number_text_transforms() -> None:
    ctx = TransformContext(code_tables={})
    integer = build_transform({"name": "integer", "output": "string", "width": 6})
    assert integer.to_canonical("0042", ctx) == 42 and integer.to_vendor(42, ctx) == "000042"
    with pytest.raises(TransformError):
        integer.to_canonical("4.5", ctx)
    to_text = build_transform("to_text:2")
    assert to_text.to_canonical(12.5, ctx) == "12.50"
    assert to_text.to_vendor("0101", ctx) == 101
    with pytest.raises(TransformError):
        to_text.to_vendor("A1", ctx)


def test_number_to_text_in_a_mapping(tmp_path: Path) -> None:
    steps = "  - {type: field, vendor: BRN, canonical: home_branch.branch_code, transform: [to_text]}\n"
    m = load_mapping(_write(tmp_path, CORE, steps), profile=target_profile)
    assert m.map_in({"CUSTNO": "1", "BRN": 101})["home_branch"] == {"branch_code": "101"}
    assert m.map_out(_party(home_branch={"branch_code": "0101"}))["BRN"] == 101
    assert Decimal("1") == 1


WHEN = """\
  - type: identifier
    vendor: IDNO
    scheme: PASSPORT
    direction: in
    when: {vendor: IDTYPE, in: ["02", 3]}
  - type: field
    vendor: VIP
    canonical: segment.tier
    when: {canonical: segment.code, equals: PRIVATE}
"""


def test_when_runs_a_step_only_if_the_value_matches(tmp_path: Path) -> None:
    m = load_mapping(_write(tmp_path, CORE, WHEN), profile=target_profile)
    assert "identifiers" not in m.map_in({"CUSTNO": "1", "IDTYPE": "01", "IDNO": "X"})
    assert m.map_in({"CUSTNO": "1", "IDTYPE": "3", "IDNO": "E1"})["identifiers"][0]["value"] == "E1"
    assert "IDTYPE" in m.vendor_fields("in")
    assert m.map_out(_party(segment={"code": "PRIVATE", "tier": "T1"}))["VIP"] == "T1"
    assert "VIP" not in m.map_out(_party(segment={"code": "MASS", "tier": "T1"}))


def test_when_problems_are_located(tmp_path: Path) -> None:
    bad = WHEN.replace("equals: PRIVATE", "equals: PRIVAT").replace("{vendor: IDTYPE, ", "{vendor: IDTYPE, equals: 1, ")
    p = _write(tmp_path, CORE, bad)
    probs = _problems(p)
    assert any(":12: steps[0].when: when: needs exactly one of equals, in" in x for x in probs), probs
    assert any(":16: steps[1].when.equals: 'PRIVAT' is not a valid segment.code" in x for x in probs), probs


def test_schema_covers_the_new_steps_and_transforms() -> None:
    schema = mapping_json_schema()
    defs = schema["$defs"]
    assert {"SelectStep", "FormatStep", "StepCondition"} <= set(defs)
    assert "when" in defs["FieldStep"]["properties"]
    assert {"integer", "to_text"} <= set(defs["TransformCall"]["properties"]["name"]["enum"])


def test_when_present_and_not_in(tmp_path: Path) -> None:
    steps = """\
  - {type: constant, canonical: segment.tier, value: VIP, when: {vendor: VIPFLAG, present: true}}
  - {type: field, vendor: BRN, canonical: home_branch.branch_code, when: {vendor: STATUS, not_in: [C, X]}}
"""
    m = load_mapping(_write(tmp_path, CORE, steps), profile=target_profile)
    canon = m.map_in({"CUSTNO": "1", "VIPFLAG": "Y", "BRN": "0101"})
    assert canon["segment"] == {"tier": "VIP"} and canon["home_branch"] == {"branch_code": "0101"}
    canon = m.map_in({"CUSTNO": "1", "VIPFLAG": " ", "BRN": "0101", "STATUS": "C"})
    assert "segment" not in canon and "home_branch" not in canon


def test_an_extension_path_without_declarations_says_how_to_load_them(tmp_path: Path) -> None:
    p = _write(tmp_path, CORE, "  - {type: field, vendor: CIFCREATIONDT, canonical: extensions.since}\n")
    (msg,) = _problems(p)
    assert "none are declared" in msg and "mapping validate -c CONFIG" in msg
