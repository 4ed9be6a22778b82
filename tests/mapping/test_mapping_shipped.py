"""The shipped CRM mappings: they validate, their samples map in and round-trip out minimised, the schema holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import check_mapping_file, load_mapping, mapping_json_schema
from crmbridge.canonical.model import Individual, Organisation, parse_party
from crmbridge.core.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = MAPPINGS / "samples"
SHIPPED = ["zoho_contacts", "zoho_accounts", "fxiaoke_accountobj", "fxiaoke_contactobj"]
PARTY_SAMPLE = {"zoho_contacts": "party_individual", "fxiaoke_contactobj": "party_individual",
                "zoho_accounts": "party_organisation", "fxiaoke_accountobj": "party_organisation"}


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_mapping_has_no_problems(name):
    m, problems = check_mapping_file(MAPPINGS / f"{name}.yaml", profile=target_profile)
    assert m is not None and problems == []
    first = (MAPPINGS / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./mapping.schema.json"


@pytest.mark.parametrize("name", SHIPPED)
def test_sample_maps_in_and_round_trips_out(name):
    m = load_mapping(MAPPINGS / f"{name}.yaml", profile=target_profile)
    raw = sample(name)
    party = m.to_party(raw)
    assert isinstance(party, Individual if m.fixed_party_type == "INDIVIDUAL" else Organisation)
    assert str(party.party_id) == raw[m.spec.key_field]
    assert party.source_refs[0].system_id == m.external_id(raw)
    assert party.source_refs[0].source_updated_at == m.modified_at(raw)
    out = m.map_out(party)
    assert out[m.spec.key_field] == raw[m.spec.key_field]
    # every field the round trip writes was read from the sample, or is a constant, a default or a consent flag
    written_anyway = {"record_type", "Lifecycle_Stage", "lifecycle__c", "SMS_Opt_In", "consent_sms__c",
                      "consent_email__c", "consent_call__c", "party_type__c", "mobile_masked__c"}
    for field in out:
        assert field in raw or field in written_anyway, field
    # a second round is stable: mapping the minimised payload's source again gives the same payload
    assert m.map_out(m.to_party(raw)) == out


def test_zoho_contacts_round_trip_is_minimised():
    m = load_mapping(MAPPINGS / "zoho_contacts.yaml", profile=target_profile)
    raw = sample("zoho_contacts")
    party = m.to_party(raw)
    assert party.name.legal_zh == "张三"
    assert party.contact("MOBILE").value == "+8613812345678"
    assert party.contact("EMAIL").value == "zhang.san@example.com"
    assert party.date_of_birth.isoformat() == "1949-12-31"
    assert not party.has_consent("MARKETING_EMAIL", party.source_refs[0].source_updated_at)
    out = m.map_out(party)
    assert out["Last_Name"] == "张*"
    assert out["Mobile"] == "+86138****5678"            # no SMS consent: masked
    assert out["Email"] == "z***@example.com"
    assert out["Email_Opt_Out"] is True and out["SMS_Opt_In"] is False
    assert "Date_of_Birth" not in out and "Mailing_Street" not in out and "First_Name" not in out


def test_zoho_contacts_projection_of_a_core_party():
    m = load_mapping(MAPPINGS / "zoho_contacts.yaml", profile=target_profile)
    out = m.map_out(parse_party(sample("party_individual")))
    assert out == {
        "Party_ID": "6f1c2b0e-8d2a-4c35-9e61-2b7f4a1d9c10", "Last_Name": "张*",
        "ID_Number_Masked": "1*************002X",
        "Mobile": "+8613812345678",                      # SMS marketing consent granted: in clear
        "Email": "z***@example.com", "Email_Opt_Out": True, "SMS_Opt_In": True, "Customer_Segment": "Wealth",
        "AUM_Band": "500K_6M", "RM_Employee_ID": "E10086", "Home_Branch": "110105001", "Lifecycle_Stage": "ACTIVE"}
    text = json.dumps(out, ensure_ascii=False)
    for secret in ("11010519491231002X", "张三", "1234567.89", "建国门外大街", "zhang.san@"):
        assert secret not in text


@pytest.mark.parametrize("name", SHIPPED)
def test_core_party_projection_never_carries_clear_c2(name):
    m = load_mapping(MAPPINGS / f"{name}.yaml", profile=target_profile)
    party = parse_party(sample(PARTY_SAMPLE[name]))
    text = json.dumps(m.map_out(party), ensure_ascii=False)
    for secret in ("11010519491231002X", "1234567.89", "58000000", "建国门外大街", "zhang.san@", "LOW", "1949-12-31"):
        assert secret not in text


def test_fxiaoke_accountobj_holds_both_party_types():
    acc = load_mapping(MAPPINGS / "fxiaoke_accountobj.yaml", profile=target_profile)
    raw = sample("fxiaoke_accountobj")
    org = acc.to_party(raw)
    assert isinstance(org, Organisation) and org.uscc.value == "91110000600037341L"   # full-width input normalised
    ind = acc.to_party(sample("fxiaoke_accountobj_individual"))
    assert isinstance(ind, Individual) and ind.name.legal_zh == "张三" and ind.identifiers == []
    out = acc.map_out(parse_party(sample("party_organisation")))
    assert out["party_type__c"] == "ORGANISATION" and out["name"] == "北京示例科技有限公司"
    assert out["uniform_social_credit_code"] == "91110000600037341L"      # full USCC for a legal entity
    assert out["tel"] == "010 1234 5678" and out["email"] == "info@example.com"
    assert out["segment__c"] == "LARGE" and out["aum_band__c"] == ">30M" and out["record_type"] == "default__c"
    assert "id_masked__c" not in out and "consent_sms__c" not in out
    out = acc.map_out(parse_party(sample("party_individual")))
    assert out["party_type__c"] == "INDIVIDUAL" and out["name"] == "张*"
    assert out["id_masked__c"] == "1*************002X" and out["mobile_masked__c"] == "138****5678"
    assert "email" not in out and "tel" not in out                        # no e-mail/call consent: left out
    assert "uniform_social_credit_code" not in out
    assert out["consent_sms__c"] is True and out["consent_email__c"] is False
    assert acc.is_deleted({**raw, "life_status": "invalid"}) and not acc.is_deleted(raw)
    assert acc.vendor_fields("in")[:5] == ["_id", "last_modified_time", "life_status", "party_type__c", "party_id__c"]


def test_fxiaoke_contactobj_never_writes_masked_values_into_fields_that_flow_back():
    con = load_mapping(MAPPINGS / "fxiaoke_contactobj.yaml", profile=target_profile)
    p = con.to_party(sample("fxiaoke_contactobj"))
    assert (p.name.family_zh, p.name.given_zh) == ("欧阳", "娜娜")
    assert p.has_consent("MARKETING_SMS", p.source_refs[0].source_updated_at)
    out = con.map_out(p)
    assert out["name"] == "欧阳**" and out["mobile"] == "13812345678"    # SMS consent from consent_sms__c
    assert out["mobile_masked__c"] == "138****5678"
    assert "tel" not in out and "email" not in out                         # no call / e-mail consent
    # what flows back in never becomes canonical data in masked form: the contact details were written in clear
    # (or not at all) and the masked name is dropped, which leaves the record without a name: a located error
    back = {**sample("fxiaoke_contactobj"), **out}
    assert con.map_in({**back, "name": "欧阳娜娜"})["contact_points"][0]["value"] == "+8613812345678"
    with pytest.raises(ValidationError, match="name → name.legal_zh: required value missing"):
        con.map_in(back)


def test_zoho_contacts_masked_echo_is_not_imported():
    m = load_mapping(MAPPINGS / "zoho_contacts.yaml", profile=target_profile)
    echo = {**sample("zoho_contacts"), "Mobile": "+86138****5678", "Email": "z***@example.com"}
    canon = m.map_in(echo)
    assert [c["type"] for c in canon["contact_points"]] == ["LANDLINE"]
    with pytest.raises(ValidationError):
        m.to_party({**echo, "Last_Name": "张*", "First_Name": None})   # no real name left: located error


def test_zoho_read_fields_fit_the_api_limit():
    for name in ("zoho_contacts", "zoho_accounts"):
        fields = load_mapping(MAPPINGS / f"{name}.yaml", profile=target_profile).vendor_fields("in")
        assert "id" in fields and "Modified_Time" in fields and len(fields) <= 50


def test_published_schema_is_current_and_validates_shipped_yaml():
    import jsonschema

    published = json.loads((MAPPINGS / "mapping.schema.json").read_text(encoding="utf-8"))
    assert published == mapping_json_schema(), "regenerate: crmbridge mapping schema > mappings/mapping.schema.json"
    validator = jsonschema.Draft202012Validator(published)
    for path in sorted(p for p in MAPPINGS.glob("*.yaml") if p.name != "rules.yaml"):   # rules: own schema
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))
        assert errors == [], (path.name, [e.message for e in errors])
    broken = yaml.safe_load((MAPPINGS / "zoho_contacts.yaml").read_text(encoding="utf-8"))
    broken["steps"][0]["typo"] = 1
    assert list(validator.iter_errors(broken))
    broken = yaml.safe_load((MAPPINGS / "zoho_contacts.yaml").read_text(encoding="utf-8"))
    broken["steps"][3]["transform"] = ["trim", "phone_e165"]      # editors flag unknown transform names too
    assert list(validator.iter_errors(broken))
    broken["steps"][3]["transform"] = ["trim", {"name": "phone_e164", "format": "digits"}, "mask:mobile"]
    assert not list(validator.iter_errors(broken))


def test_committed_schema_is_what_the_command_prints():
    """mappings/mapping.schema.json, the whole document, equals ``crmbridge mapping schema`` (the installed script)."""
    import subprocess
    import sys

    res = subprocess.run([str(Path(sys.executable).parent / "crmbridge"), "mapping", "schema"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    committed = json.loads((MAPPINGS / "mapping.schema.json").read_text(encoding="utf-8"))
    assert json.loads(res.stdout) == committed, "regenerate: crmbridge mapping schema > mappings/mapping.schema.json"
