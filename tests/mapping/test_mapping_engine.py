"""The mapping engine: paths and selectors, each step type, loading with located errors, record errors, hooks."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, date, datetime

import pytest

from crmbridge.adapters.base import FieldInfo
from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import (
    MappingLoadError,
    check_mapping_file,
    load_mapping,
    mapping_json_schema,
    mask_kind_for,
    parse_path,
    path_get,
    path_set,
    validate_against,
)
from crmbridge.canonical.model import Individual, Organisation, parse_party
from crmbridge.core.errors import MappingError, ValidationError

RIC = "11010519491231002X"
USCC = "91110000600037341L"
PID = uuid.UUID("6f1c2b0e-8d2a-4c35-9e61-2b7f4a1d9c10")

CORE = """\
system: corebank_soap
object: Customer
version: 3
description: FLEXCUBE-like customer for the tests
source_system: FLEXCUBE
party_type:
  vendor: CTYPE
  map: {I: INDIVIDUAL, C: ORGANISATION}
external_id: CUSTNO
modified_at:
  vendor: MAKERSTAMP
  transform: [{name: datetime, assume_tz: "+08:00"}]
deleted_when: {vendor: RECORD_STAT, values: [C]}
code_tables:
  seg:
    map: {"01": MASS, "02": AFFLUENT, "03": WEALTH, "04": PRIVATE, "05": SMALL, "06": LARGE}
    personal: false
  gender:
    map: {M: MALE, F: FEMALE}
steps:
  - type: field
    vendor: FULLNAME
    canonical: name.legal_zh
    transform: [trim]
    required: true
  - type: identifier
    vendor: Custpersonal.NATIONID
    scheme: CN_RIC
    transform: [fullwidth_to_halfwidth, trim, upper]
    attributes: {is_primary: true}
  - type: contact
    vendor: Custpersonal.MOBNUM
    contact_type: MOBILE
    transform: [phone_e164]
    attributes: {preferred: true}
  - type: field
    vendor: Custpersonal.DOB
    canonical: date_of_birth
    transform: ["date:%Y%m%d"]
  - type: code
    vendor: Custpersonal.SEX
    canonical: gender
    table: gender
    direction: in
  - type: code
    vendor: "UDFDETAILS[FLDNAM=SEGMENT].FLDVAL"
    canonical: segment.code
    table: seg
    direction: in
  - type: field
    vendor: Custpersonal.ADDR.CITY
    canonical: addresses[type=RESIDENTIAL].city
  - type: consent
    vendor: Custpersonal.SMS_OK
    purpose: MARKETING_SMS
    granted: Y
    denied: N
  - type: constant
    canonical: lifecycle_stage
    value: ACTIVE
    direction: in
  - type: constant
    vendor: SOURCE
    value: CRMBRIDGE
    direction: out
"""


def record(**over):
    rec = {
        "CUSTNO": "000123", "CTYPE": "I", "FULLNAME": " 张三 ", "MAKERSTAMP": "2026-11-20T10:15:30",
        "RECORD_STAT": "O",
        "Custpersonal": {"NATIONID": "11010519491231002x", "MOBNUM": "138 1234 5678", "DOB": "19491231", "SEX": "F",
                         "ADDR": {"CITY": "北京市"}, "SMS_OK": "Y"},
        "UDFDETAILS": [{"FLDNAM": "RISK", "FLDVAL": "L"}, {"FLDNAM": "SEGMENT", "FLDVAL": "03"}],
    }
    rec.update(over)
    return rec


@pytest.fixture
def write(tmp_path):
    def _write(text: str, name: str = "m.yaml"):
        p = tmp_path / name
        p.write_text(textwrap.dedent(text), encoding="utf-8")
        return p
    return _write


@pytest.fixture
def core(write):
    return load_mapping(write(CORE), profile=target_profile)


# ---------------------------------------------------------------------------------------------- paths

def test_parse_path_forms():
    p = parse_path("identifiers[scheme=CN_RIC].value")
    assert p.template() == "identifiers[].value" and p.selector_value("scheme") == "CN_RIC" and p.head == "identifiers"
    assert parse_path('["SHORT.NAME"][0]').head == "SHORT.NAME"
    assert parse_path("a[type=MOBILE,preferred=true].value").selector_value("preferred") == "true"
    for bad in ("", "a..b", "a.", "a[", "a[=x]", "a]b"):
        with pytest.raises(ValueError):
            parse_path(bad)


def test_selectors_find_on_get_and_create_on_set():
    doc: dict = {}
    loc = path_set(doc, parse_path("identifiers[scheme=CN_RIC].value"), RIC)
    path_set(doc, parse_path("identifiers[scheme=PASSPORT].value"), "E12345678")
    path_set(doc, parse_path("identifiers[scheme=CN_RIC].is_primary"), True)
    assert loc == ("identifiers", 0, "value")
    assert doc == {"identifiers": [{"scheme": "CN_RIC", "value": RIC, "is_primary": True},
                                   {"scheme": "PASSPORT", "value": "E12345678"}]}
    assert path_get(doc, parse_path("identifiers[scheme=PASSPORT].value")) == "E12345678"
    assert path_get(doc, parse_path("identifiers[scheme=TW_PERMIT].value")) is None
    assert path_get(doc, parse_path("identifiers[1].value")) == "E12345678"
    assert path_get(doc, parse_path("identifiers[5].value")) is None
    assert path_get(doc, parse_path("identifiers[scheme=CN_RIC,is_primary=true].value")) == RIC


def test_vendor_paths_with_indexes_are_created():
    doc: dict = {}
    path_set(doc, parse_path("data.addresses[1].city"), "北京市")
    assert doc == {"data": {"addresses": [None, {"city": "北京市"}]}}
    assert path_get({"owner": ["FSUID_1"]}, parse_path("owner[0]")) == "FSUID_1"
    assert path_get({"a": "x"}, parse_path("a.b")) is None


def test_mask_kinds_follow_the_classification():
    assert mask_kind_for("identifiers[scheme=CN_RIC].value") == "ric"
    assert mask_kind_for("identifiers[scheme=PASSPORT].value") == "passport"
    assert mask_kind_for("contact_points[type=MOBILE].value") == "mobile"
    assert mask_kind_for("contact_points[type=EMAIL].value") == "email"
    assert mask_kind_for("name.legal_zh", "INDIVIDUAL") == "name"
    assert mask_kind_for("name.legal_zh", "ORGANISATION") is None
    assert mask_kind_for("segment.code") is None
    assert mask_kind_for("aum.amount") == "amount"


# ---------------------------------------------------------------------------------------------- in direction

def test_map_in_every_step_type(core):
    canon = core.map_in(record(), party_id=PID)
    assert canon["party_type"] == "INDIVIDUAL" and canon["party_id"] == PID
    assert canon["source_refs"] == [{"system": "FLEXCUBE", "system_id": "000123",
                                     "source_updated_at": datetime(2026, 11, 20, 2, 15, 30, tzinfo=UTC)}]
    assert canon["name"] == {"legal_zh": "张三"}
    assert canon["identifiers"] == [{"scheme": "CN_RIC", "value": RIC, "is_primary": True}]
    assert canon["contact_points"] == [{"type": "MOBILE", "value": "+8613812345678", "preferred": True}]
    assert canon["date_of_birth"] == date(1949, 12, 31)
    assert canon["gender"] == "FEMALE"
    assert canon["segment"] == {"code": "WEALTH"}
    assert canon["addresses"] == [{"type": "RESIDENTIAL", "city": "北京市"}]
    assert canon["consents"][0]["purpose"] == "MARKETING_SMS" and canon["consents"][0]["status"] == "GRANTED"
    assert canon["consents"][0]["captured_at"] == datetime(2026, 11, 20, 2, 15, 30, tzinfo=UTC)
    assert canon["lifecycle_stage"] == "ACTIVE"
    party = core.to_party(record(), party_id=PID)
    assert isinstance(party, Individual)
    assert party.primary_identifier("CN_RIC").value == RIC
    assert party.has_consent("MARKETING_SMS")


def test_header_helpers(core):
    assert core.external_id(record()) == "000123"
    assert core.modified_at(record()) == datetime(2026, 11, 20, 2, 15, 30, tzinfo=UTC)
    assert core.is_deleted(record()) is False
    assert core.is_deleted(record(RECORD_STAT="C")) is True
    with pytest.raises(ValidationError, match="no id"):
        core.external_id(record(CUSTNO=None))
    with pytest.raises(ValidationError, match="MAKERSTAMP"):
        core.modified_at(record(MAKERSTAMP="yesterday"))
    assert len(core.version_hash) == 64


def test_vendor_fields_and_owned_paths(core):
    assert core.vendor_fields("in") == ["CUSTNO", "MAKERSTAMP", "RECORD_STAT", "CTYPE", "FULLNAME", "Custpersonal",
                                        "UDFDETAILS"]
    assert core.vendor_fields("out") == ["CTYPE", "FULLNAME", "Custpersonal", "SOURCE"]
    owned = core.owned_canonical_paths("in")
    assert "identifiers[scheme=CN_RIC].value" in owned and "segment.code" in owned and "party_type" in owned
    assert "segment.code" not in core.owned_canonical_paths("out")


def test_party_type_rule(core):
    with pytest.raises(ValidationError, match="unknown party type code 'X'") as exc:
        core.map_in(record(CTYPE="X"))
    assert exc.value.field == "CTYPE"


def test_record_errors_are_located_and_masked(core):
    bad = record(Custpersonal={"NATIONID": RIC, "MOBNUM": "12345678901", "DOB": "19491231", "SEX": "Q"},
                 UDFDETAILS=[{"FLDNAM": "SEGMENT", "FLDVAL": "99"}])
    with pytest.raises(ValidationError) as exc:
        core.map_in(bad)
    msg = str(exc.value)
    assert exc.value.field == "Custpersonal.MOBNUM"
    assert "Custpersonal.MOBNUM → contact_points[type=MOBILE].value: not a valid phone number" in msg
    assert "123****8901" in msg and "12345678901" not in msg
    assert "code table 'gender'" in msg and "code table 'seg'" in msg and "'99'" in msg   # codes are not personal
    assert len(exc.value.problems) == 3


def test_model_errors_point_at_the_vendor_field(core):
    bad = record(Custpersonal={**record()["Custpersonal"], "NATIONID": "110105194912310021"})
    with pytest.raises(ValidationError) as exc:
        core.to_party(bad)
    assert exc.value.field == "Custpersonal.NATIONID"
    assert exc.value.code == "invalid_checksum"
    assert "identifiers[scheme=CN_RIC].value" in str(exc.value)
    assert "110105194912310021" not in str(exc.value) and "1*************0021" in str(exc.value)
    bad = record(Custpersonal={**record()["Custpersonal"], "DOB": "19500101"})
    with pytest.raises(ValidationError) as exc:
        core.to_party(bad)
    assert exc.value.field == "Custpersonal.DOB" and "1950" not in str(exc.value)


def test_required_field_missing(core):
    with pytest.raises(ValidationError, match="FULLNAME → name.legal_zh: required value missing"):
        core.map_in(record(FULLNAME="  "))


def test_consent_values(core):
    rec = record(Custpersonal={**record()["Custpersonal"], "SMS_OK": "N"})
    assert core.map_in(rec)["consents"][0]["status"] == "DENIED"
    rec = record(Custpersonal={**record()["Custpersonal"], "SMS_OK": "maybe"})
    with pytest.raises(ValidationError, match="expected 'Y' or 'N'"):
        core.map_in(rec)


def test_key_field_supplies_party_id(write):
    m = load_mapping(write(ZOHO_MIN), profile=target_profile)
    assert m.map_in({"id": "1", "Last_Name": "张三", "Party_ID": str(PID)})["party_id"] == PID
    with pytest.raises(ValidationError, match="not a crmbridge party id"):
        m.map_in({"id": "1", "Last_Name": "张三", "Party_ID": "nope"})
    with pytest.raises(ValidationError, match="JSON object"):
        m.map_in(["not", "a", "record"])


# ---------------------------------------------------------------------------------------------- out direction

def test_map_out_core_in_clear_with_type_code(core):
    party = core.to_party(record(), party_id=PID)
    out = core.map_out(party)
    assert out == {"CTYPE": "I", "FULLNAME": "张三",
                   "Custpersonal": {"NATIONID": RIC, "MOBNUM": "+8613812345678", "DOB": "19491231", "SMS_OK": "Y",
                                    "ADDR": {"CITY": "北京市"}},
                   "SOURCE": "CRMBRIDGE"}


ZOHO_MIN = """\
system: zoho
object: Contacts
version: 1
description: minimal
party_type: INDIVIDUAL
external_id: id
key_field: Party_ID
steps:
  - type: field
    vendor: [Last_Name, First_Name]
    canonical: name.legal_zh
    in: [join_name]
    direction: in
  - type: field
    vendor: Last_Name
    canonical: name.legal_zh
    out_mask: name
    required: true
    direction: out
  - type: identifier
    vendor: RIC_Masked
    scheme: CN_RIC
    direction: out
  - type: contact
    vendor: Mobile
    contact_type: MOBILE
    transform: [phone_e164]
    when_consent: MARKETING_SMS
  - type: contact
    vendor: Email
    contact_type: EMAIL
    transform: [email]
"""


def _party(**over):
    data = {"party_id": str(PID), "party_type": "INDIVIDUAL", "name": {"legal_zh": "张三"},
            "identifiers": [{"scheme": "CN_RIC", "value": RIC}],
            "contact_points": [{"type": "MOBILE", "value": "+8613812345678"},
                               {"type": "EMAIL", "value": "zhang.san@example.com"}]}
    data.update(over)
    return parse_party(data)


def test_crm_minimisation_masks_by_default_and_honours_consent(write):
    m = load_mapping(write(ZOHO_MIN), profile=target_profile)
    out = m.map_out(_party())
    assert out == {"Party_ID": str(PID), "Last_Name": "张*", "RIC_Masked": "1*************002X",
                   "Mobile": "+86138****5678", "Email": "z***@example.com"}
    granted = _party(consents=[{"purpose": "MARKETING_SMS", "status": "GRANTED",
                                "captured_at": "2026-01-01T00:00:00+08:00"}])
    assert m.map_out(granted)["Mobile"] == "+8613812345678"
    withdrawn = _party(consents=[
        {"purpose": "MARKETING_SMS", "status": "GRANTED", "captured_at": "2026-01-01T00:00:00+08:00"},
        {"purpose": "MARKETING_SMS", "status": "WITHDRAWN", "captured_at": "2026-02-01T00:00:00+08:00",
         "withdrawn_at": "2026-02-01T00:00:00+08:00"}])
    assert m.map_out(withdrawn)["Mobile"] == "+86138****5678"


def test_map_out_rejects_the_wrong_party_type_and_missing_mandatory(write):
    m = load_mapping(write(ZOHO_MIN), profile=target_profile)
    org = parse_party({"party_type": "ORGANISATION", "name": {"legal_zh": "示例有限公司"}})
    with pytest.raises(ValidationError, match="for INDIVIDUAL parties"):
        m.map_out(org)
    with pytest.raises(ValidationError, match="Last_Name → name.legal_zh: the vendor field is mandatory"):
        m.map_out({"party_id": str(PID), "party_type": "INDIVIDUAL", "name": {"en": "San Zhang"}})


def test_trace_rows_record_what_went_where(core):
    _, rows = core.trace_in(record())
    by_vendor = {r.vendor: r for r in rows}
    assert by_vendor["Custpersonal.NATIONID"].canonical == "identifiers[scheme=CN_RIC].value"
    assert by_vendor["Custpersonal.NATIONID"].mask_kind == "ric"
    _, rows = core.trace_out(core.to_party(record()))
    assert any(r.vendor == "FULLNAME" and r.vendor_value == "张三" for r in rows)


# ---------------------------------------------------------------------------------------------- load errors

def _problems(write, text):
    _, problems = check_mapping_file(write(text), profile=target_profile)
    return [(p.line, p.path, p.message) for p in problems if p.severity == "error"]


def test_unknown_transform_is_located(write):
    probs = _problems(write, CORE.replace("transform: [phone_e164]", "transform: [phone_e165]"))
    assert len(probs) == 1
    line, path, msg = probs[0]
    assert CORE.splitlines()[line - 1].strip() == "transform: [phone_e164]"
    assert path == "steps[2].transform[0]" and "unknown transform 'phone_e165'" in msg and "phone_e164" in msg


def test_unknown_canonical_path_and_selector_value(write):
    text = CORE.replace("canonical: date_of_birth", "canonical: date_of_brith").replace(
        "addresses[type=RESIDENTIAL].city", "addresses[type=HOME].city")
    probs = _problems(write, text)
    assert [(p, m.split(":")[0]) for _, p, m in probs] == [
        ("steps[3].canonical", "unknown canonical path 'date_of_brith'"),
        ("steps[6].canonical", "unknown canonical path 'addresses[type=HOME].city'")]
    assert "RESIDENTIAL" in probs[1][2]   # lists the valid address types
    assert CORE.splitlines()[probs[0][0] - 1].strip() == "canonical: date_of_birth"


def test_structure_errors_all_reported_with_lines(write):
    text = CORE.replace("    required: true\n", "    required: true\n    requird: true\n", 1).replace(
        "  - type: constant\n    canonical: lifecycle_stage", "  - type: konstant\n    canonical: lifecycle_stage")
    text = text.replace("transform: [phone_e164]", "transform: [nope]")
    probs = _problems(write, text)
    paths = {p: m for _, p, m in probs}
    assert "unknown key 'requird'" in paths["steps[0].requird"]
    assert "unknown step type 'konstant'" in paths["steps[8]"]
    assert "unknown transform 'nope'" in paths["steps[2].transform[0]"]   # well-formed steps still checked


def test_yaml_syntax_error_is_located(write):
    probs = _problems(write, "system: zoho\nobject: Contacts\nsteps:\n  - type: field\n    vendor: [a\n  - x: 1\n")
    assert len(probs) == 1 and probs[0][0] == 6 and "YAML syntax error" in probs[0][2]


def test_duplicate_keys_and_missing_header(write):
    probs = _problems(write, "system: zoho\nsystem: fxiaoke\nsteps: []\n")
    messages = " | ".join(f"{line}:{p}:{m}" for line, p, m in probs)
    assert "2:system:duplicate key" in messages
    assert "required key 'external_id' is missing" in messages


def test_load_mapping_raises_with_every_problem(write):
    path = write(CORE.replace("[phone_e164]", "[x1]").replace('"date:%Y%m%d"', "x2"))
    with pytest.raises(MappingLoadError) as exc:
        load_mapping(path, profile=target_profile)
    assert isinstance(exc.value, MappingError)
    assert len(exc.value.problems) == 2
    assert str(exc.value).startswith(f"{path}:")


def test_code_table_coverage_and_values(write):
    text = CORE.replace("    table: gender\n    direction: in\n", "    table: gender\n")  # gender both ways
    probs = _problems(write, text)
    assert any(p == "steps[4].table" and "does not cover UNKNOWN" in m for _, p, m in probs)
    text = CORE.replace("    table: seg\n    direction: in\n", "    table: seg\n")  # both party types
    probs = _problems(write, text)
    assert any(p == "steps[5].table" and "does not cover MEDIUM, MICRO, STRATEGIC" in m for _, p, m in probs)
    text = CORE.replace('"04": PRIVATE', '"04": PRIVAT')
    probs = _problems(write, text)
    assert any(p == "code_tables.seg.map.04" and "'PRIVAT' is not a valid segment.code" in m for _, p, m in probs)
    text = CORE.replace("    personal: false\n", "    vendor_values: [\"01\", \"07\"]\n")
    probs = _problems(write, text)
    assert any("vendor value '07' is not covered" in m for _, _, m in probs)


def test_ambiguous_inverse_needs_out(write):
    text = ZOHO_MIN + textwrap.dedent("""\
      - type: code
        vendor: Segment
        canonical: segment.code
        table: seg
    code_tables:
      seg:
        map: {Mass: MASS, Mass2: MASS, Affluent: AFFLUENT, Wealth: WEALTH, Private: PRIVATE}
    """)
    probs = _problems(write, text)
    assert any("'MASS' comes from several vendor values" in m for _, _, m in probs)
    text = text.replace("Private: PRIVATE}", "Private: PRIVATE}\n    out: {MASS: Mass}")
    assert _problems(write, text) == []


def test_minimisation_rules_for_crm_mappings(write):
    extra = textwrap.dedent("""\
      - {type: field, vendor: DOB, canonical: date_of_birth, transform: [date]}
      - {type: field, vendor: AUM, canonical: aum.amount, transform: [decimal]}
      - {type: field, vendor: Name2, canonical: name.legal_zh, direction: out}
      - {type: field, vendor: AUM_Band, canonical: aum.amount, out: [aum_band], direction: out}
      - {type: contact, vendor: Phone, contact_type: LANDLINE, out_mask: none}
    """)
    probs = {p: m for _, p, m in _problems(write, ZOHO_MIN + textwrap.indent(extra, "  "))}
    assert "never pushed to a CRM" in probs["steps[5].canonical"]
    assert "derived value" in probs["steps[6].canonical"]
    assert "personal data (C2)" in probs["steps[7].canonical"]
    assert "steps[8].canonical" not in probs     # aum_band derives the band
    assert "personal data (C2)" in probs["steps[9].contact_type"]


def test_mandatory_vendor_field_and_key_field(write):
    text = ZOHO_MIN.replace("key_field: Party_ID\n", "").replace("    vendor: Last_Name\n", "    vendor: Nom\n")
    probs = {p: m for _, p, m in _problems(write, text)}
    assert "mandatory zoho Contacts field 'Last_Name'" in probs["steps"]
    assert "key_field" in probs


def test_unknown_system_and_bad_constant(write):
    text = CORE.replace("system: corebank_soap", "system: sap").replace("value: ACTIVE", "value: ALIVE")
    probs = {p: m for _, p, m in _problems(write, text)}
    assert "unknown system 'sap'" in probs["system"]
    assert "'ALIVE' is not a valid lifecycle_stage" in probs["steps[8].value"]


# ---------------------------------------------------------------------------------------------- validate_against

def test_validate_against_vendor_metadata(write):
    m = load_mapping(write(ZOHO_MIN + "  - {type: code, vendor: Segment, canonical: segment.code, table: seg}\n"
                           "code_tables:\n  seg: {map: {Mass: MASS, Affluent: AFFLUENT, Wealth: WEALTH, "
                           "Private: PRIVATE}}\n"), profile=target_profile)
    fields = [FieldInfo("Last_Name", "text", required=True), FieldInfo("First_Name", "text"),
              FieldInfo("Party_ID", "text"), FieldInfo("Mobile", "phone", read_only=True),
              FieldInfo("Email", "email"), FieldInfo("Owner", "ownerlookup", required=True),
              FieldInfo("Segment", "picklist", picklist=("Mass", "Affluent", "Wealth", "VIP"))]
    probs = [f"{p.path}: {p.message}" for p in validate_against(m, fields)]
    assert any("no field 'RIC_Masked'" in p for p in probs)
    assert any("'Mobile' is read-only" in p for p in probs)
    assert any("requires 'Owner'" in p for p in probs)
    assert any("'Private' (for PRIVATE) is not a Segment picklist value" in p for p in probs)
    assert any("picklist value 'VIP' is not covered" in p for p in probs)
    assert not any("Last_Name" in p for p in probs)


def test_json_schema_is_valid_and_names_the_step_types():
    import jsonschema

    schema = mapping_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    text = str(schema)
    for t in ("field", "code", "identifier", "contact", "consent", "constant"):
        assert f"'{t}'" in text


def test_organisation_mapping_and_uscc_in_clear(write):
    text = """\
    system: fxiaoke
    object: AccountObj
    version: 1
    description: t
    party_type: ORGANISATION
    external_id: _id
    key_field: party_id__c
    steps:
      - {type: field, vendor: name, canonical: name.legal_zh, required: true}
      - {type: identifier, vendor: uscc__c, scheme: CN_USCC, transform: [upper]}
    """
    m = load_mapping(write(text), profile=target_profile)
    party = m.to_party({"_id": "x", "name": "示例有限公司", "uscc__c": USCC.lower()}, party_id=PID)
    assert isinstance(party, Organisation) and party.uscc.value == USCC
    assert m.map_out(party) == {"party_id__c": str(PID), "name": "示例有限公司", "uscc__c": USCC}


def test_public_surface_is_pinned():
    import crmbridge.canonical.mapping as mapping_mod
    import crmbridge.canonical.transforms as transforms_mod

    for mod in (mapping_mod, transforms_mod):
        assert mod.__all__ == sorted(mod.__all__)
        assert all(hasattr(mod, n) for n in mod.__all__)
    assert {"load_mapping", "Mapping", "mapping_json_schema", "validate_against", "check_mapping_file"} <= set(
        mapping_mod.__all__)


def test_step_party_type_runs_only_for_that_type(write):
    text = """\
    system: fxiaoke
    object: AccountObj
    version: 1
    description: both kinds
    party_type: {vendor: kind, map: {P: INDIVIDUAL, C: ORGANISATION}}
    external_id: _id
    key_field: party_id__c
    steps:
      - {type: field, party_type: ORGANISATION, vendor: name, canonical: name.legal_zh, required: true}
      - {type: field, party_type: INDIVIDUAL, vendor: name, canonical: name.legal_zh, required: true,
         in: [drop_masked], out_mask: name}
      - {type: identifier, party_type: ORGANISATION, vendor: uscc, scheme: CN_USCC}
      - {type: contact, party_type: INDIVIDUAL, vendor: email, contact_type: EMAIL, transform: [email],
         when_consent: MARKETING_EMAIL, when_consent_else: omit}
    """
    m = load_mapping(write(text), profile=target_profile)
    org = m.to_party({"_id": "1", "kind": "C", "name": "示例有限公司", "uscc": USCC}, party_id=PID)
    ind = m.to_party({"_id": "2", "kind": "P", "name": "张三", "uscc": USCC, "email": "a@b.cn"}, party_id=PID)
    assert isinstance(org, Organisation) and isinstance(ind, Individual) and ind.identifiers == []
    assert m.map_out(org) == {"party_id__c": str(PID), "kind": "C", "name": "示例有限公司", "uscc": USCC}
    assert m.map_out(ind) == {"party_id__c": str(PID), "kind": "P", "name": "张*"}   # e-mail omitted: no consent
    with pytest.raises(ValidationError, match="name → name.legal_zh: required value missing"):
        m.map_in({"_id": "3", "kind": "P", "name": "张*"})     # our own masked echo is not a name
    # a step for the other party type in a fixed-type mapping is a mapping error
    probs = _problems(write, ZOHO_MIN + "  - {type: field, party_type: ORGANISATION, vendor: X, "
                                        "canonical: industry, direction: in}\n")
    assert any(p == "steps[5].party_type" and "for INDIVIDUAL parties only" in msg for _, p, msg in probs)
