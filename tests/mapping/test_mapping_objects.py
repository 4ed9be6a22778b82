"""Mappings of canonical objects beside the party (``canonical: Holding`` ...): the shipped core-side samples, paths,
classes and code tables checked against the declared object, errors located by line, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import check_mapping_file, load_mapping
from crmbridge.canonical.objects import CampaignResponse, Holding, Interaction, parse_object
from crmbridge.cli import mapping_cmd
from crmbridge.core.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = MAPPINGS / "samples"
SHIPPED = {"corebank_soap_holding": Holding, "corebank_soap_interaction": Interaction,
           "corebank_soap_campaign_response": CampaignResponse}

app = typer.Typer()
mapping_cmd.register(app)
runner = CliRunner()
PARTY_ID = "6f1c2b0e-8d2a-4c35-9e61-2b7f4a1d9c10"
ACCOUNT = "430202000100012345"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    _, problems = check_mapping_file(path, display="m.yaml", profile=target_profile)
    return [str(p) for p in problems if p.severity == "error"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_object_mapping_is_clean_and_maps_its_sample(name: str) -> None:
    m, problems = check_mapping_file(MAPPINGS / f"{name}.yaml", profile=target_profile)
    assert m is not None and problems == []
    assert m.canonical == SHIPPED[name].__name__ and m.fixed_party_type is None
    raw = sample(name)
    obj = m.to_party(raw)
    assert isinstance(obj, SHIPPED[name])
    assert obj.party_source.system == "FLEXCUBE" and obj.party_source.system_id == raw["CUSTNO"]
    assert obj.source_refs[0].system_id == m.external_id(raw)
    owned = m.owned_canonical_paths("in")
    assert "party_type" not in owned and "source_refs[system=FLEXCUBE].system_id" in owned
    assert "party_source.system_id" in owned


@pytest.mark.parametrize("name", ["corebank_soap_interaction", "corebank_soap_campaign_response"])
def test_two_way_object_mapping_round_trips_with_its_own_id_as_key(name: str) -> None:
    m = load_mapping(MAPPINGS / f"{name}.yaml", profile=target_profile)
    raw = sample(name)
    obj = m.to_party(raw)
    assert str(obj.object_id) == raw[m.spec.key_field] and m.id_field != "party_id"
    out = m.map_out(obj)
    for key, value in out.items():
        assert value == raw[key] or key.endswith("DT"), key      # times go out with their offset
    assert m.map_out(parse_object(m.canonical, obj.model_dump())) == out


def test_holding_sample_keeps_the_balance_exact_and_banded() -> None:
    m = load_mapping(MAPPINGS / "corebank_soap_holding.yaml", profile=target_profile)
    h = m.to_party(sample("corebank_soap_holding"))
    assert str(h.balance.amount) == "200000.00" and h.balance.band == "50K_500K"
    assert h.product_family == "DEPOSIT" and h.status == "ACTIVE" and h.closed_on is None


def test_an_object_record_error_names_vendor_field_and_canonical_path_without_the_value() -> None:
    m = load_mapping(MAPPINGS / "corebank_soap_holding.yaml", profile=target_profile)
    raw = {**sample("corebank_soap_holding"), "ACSTAT": "C"}          # closed without a closing date
    with pytest.raises(ValidationError) as info:
        m.to_party(raw)
    assert "closed_on" in str(info.value) and "CLOSED holding needs closed_on" in str(info.value)
    raw = {**sample("corebank_soap_holding"), "CURBAL": "-5.00"}
    with pytest.raises(ValidationError) as info:
        m.to_party(raw)
    assert info.value.field == "CURBAL" and "5.00" not in str(info.value)


HOLDING = """\
canonical: Holding
system: corebank_soap
object: Account
version: 1
description: test
external_id: ACC
code_tables:
  family:
    map: {TD: DEPOSIT, XX: CRYPTO}
steps:
  - type: field
    vendor: CUSTNO
    canonical: party_source.system_id
  - type: code
    vendor: PRODTYPE
    canonical: product_family
    table: family
    direction: in
  - type: field
    vendor: NAME
    canonical: name.legal_zh
"""


def line_of(text: str, needle: str) -> int:
    return next(i for i, t in enumerate(text.splitlines(), 1) if needle in t)


def test_object_mapping_paths_and_code_values_are_checked_against_the_object(tmp_path: Path) -> None:
    errors = problems_of(tmp_path, HOLDING)
    assert any(e.startswith(f"m.yaml:{line_of(HOLDING, 'XX: CRYPTO')}: code_tables.family.map.XX: 'CRYPTO' is "
                            "not a valid product_family") for e in errors), errors
    assert any(e.startswith(f"m.yaml:{line_of(HOLDING, 'name.legal_zh')}: steps[2].canonical:")
               and "Holding has no field 'name'" in e for e in errors), errors
    assert len(errors) == 2, errors


def test_the_same_steps_are_fine_for_the_party(tmp_path: Path) -> None:
    """The declared object decides: name.legal_zh is a party path, product_family is not."""
    text = HOLDING.replace("canonical: Holding\n", "party_type: INDIVIDUAL\n")
    errors = problems_of(tmp_path, text)
    assert any("steps[1].canonical" in e and "has no field 'product_family'" in e for e in errors), errors
    assert not any("steps[2]" in e for e in errors), errors


def test_unknown_canonical_object_is_located(tmp_path: Path) -> None:
    errors = problems_of(tmp_path, HOLDING.replace("canonical: Holding", "canonical: Lead"))
    assert any(e.startswith("m.yaml:1: canonical:") and "'Party', 'Holding', 'Interaction'" in e for e in errors), \
        errors


def test_party_type_is_refused_on_an_object_and_required_on_a_party(tmp_path: Path) -> None:
    errors = problems_of(tmp_path, HOLDING.replace("object: Account\n", "object: Account\nparty_type: INDIVIDUAL\n"))
    assert any(e.startswith("m.yaml:4: party_type: party_type applies to Party mappings") for e in errors), errors
    errors = problems_of(tmp_path, HOLDING.replace("canonical: Holding\n", "canonical: Party\n"))
    assert any(e.startswith("m.yaml:1: party_type: required key 'party_type' is missing") for e in errors), errors
    step_type = HOLDING.replace("    canonical: party_source.system_id\n",
                                "    canonical: party_source.system_id\n    party_type: INDIVIDUAL\n")
    errors = problems_of(tmp_path, step_type)
    assert len(errors) == 3, errors    # party_type, CRYPTO, name.legal_zh: party_source still checked as a Holding path
    where = f"m.yaml:{line_of(step_type, '    party_type:')}: steps[0].party_type: "
    assert any(e.startswith(where + "party_type applies to Party mappings") for e in errors), errors


def test_object_key_field_carries_the_object_id(tmp_path: Path) -> None:
    text = (HOLDING.replace("external_id: ACC\n", "external_id: ACC\nkey_field: REF\n")
            .replace("XX: CRYPTO", "LN: LOAN").replace("steps:\n", "steps:\n  - {type: constant, canonical: "
                                                                   "party_source.system, value: FLEXCUBE}\n")
            .replace("    vendor: NAME\n    canonical: name.legal_zh\n",
                                                       "    vendor: CODE\n    canonical: product_code\n"))
    path = tmp_path / "ok.yaml"
    path.write_text(text, encoding="utf-8")
    m = load_mapping(path, profile=target_profile)
    raw = {"ACC": "1", "REF": "0b6f2a51-3c1e-4d7e-9a43-5e2c8f1d7a20", "CUSTNO": "9", "PRODTYPE": "LN", "CODE": "M1"}
    h = m.to_party(raw)
    assert str(h.holding_id) == raw["REF"] and h.party_id is None and h.party_source.system_id == "9"
    with pytest.raises(ValidationError, match="not a crmbridge holding id"):
        m.map_in({**raw, "REF": "nope"})
    assert m.map_out(h)["REF"] == raw["REF"]


# --------------------------------------------------------------------------------------------------- CLI

def test_cli_validate_and_preview_an_object_mapping_masked(tmp_path: Path) -> None:
    res = runner.invoke(app, ["mapping", "validate", *(str(MAPPINGS / f"{n}.yaml") for n in SHIPPED)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.output.count("ok: ") == 3
    res = runner.invoke(app, ["mapping", "preview", str(MAPPINGS / "corebank_soap_interaction.yaml"),
                              "--record", str(SAMPLES / "corebank_soap_interaction.json")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "valid Interaction" in res.output and "regulator_category" in res.output
    assert sample("corebank_soap_interaction")["DESCRIPTION"] not in res.output
    assert "shown masked (text)" in res.output
    res = runner.invoke(app, ["mapping", "preview", str(MAPPINGS / "corebank_soap_holding.yaml"),
                              "--record", str(SAMPLES / "corebank_soap_holding.json")], catch_exceptions=False)
    assert res.exit_code == 0 and "200000" not in res.output and "430202000100012345" not in res.output
    assert "external id AR-TD-2024-000731" in res.output      # an arrangement reference, never the account number


def test_cli_preview_out_parses_the_declared_object(tmp_path: Path) -> None:
    m = load_mapping(MAPPINGS / "corebank_soap_campaign_response.yaml", profile=target_profile)
    obj = m.to_party(sample("corebank_soap_campaign_response"))
    rec = tmp_path / "resp.json"
    rec.write_text(obj.model_dump_json(), encoding="utf-8")
    res = runner.invoke(app, ["mapping", "preview", str(MAPPINGS / "corebank_soap_campaign_response.yaml"),
                              "--record", str(rec), "--direction", "out"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "RESPCODE" in res.output and "OPT" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(rec.read_text()), "response": "MAYBE"}), encoding="utf-8")
    res = runner.invoke(app, ["mapping", "preview", str(MAPPINGS / "corebank_soap_campaign_response.yaml"),
                              "--record", str(bad), "--direction", "out"], catch_exceptions=False)
    assert res.exit_code == 3 and "response" in res.output


def test_cli_validate_reports_a_broken_object_mapping_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "holding.yaml"
    shutil.copy(MAPPINGS / "corebank_soap_holding.yaml", path)
    path.write_text(path.read_text(encoding="utf-8").replace("canonical: maturity_on", "canonical: matures"),
                    encoding="utf-8")
    res = runner.invoke(app, ["mapping", "validate", str(path)], catch_exceptions=False)
    assert res.exit_code == 2
    line = next(i for i, t in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "matures" in t)
    assert f"holding.yaml:{line}: steps[" in res.output and "matures" in res.output


CRM_CASES = """\
canonical: Interaction
system: zoho
object: Cases
version: 1
description: test
external_id: id
key_field: Crmb_Ref
steps:
  - {type: constant, canonical: party_source.system, value: ZOHO}
  - {type: field, vendor: Contact_Id, canonical: party_source.system_id}
  - {type: field, vendor: Description, canonical: summary}
"""

CRM_HOLDINGS = """\
canonical: Holding
system: zoho
object: Holdings
version: 1
description: test
external_id: id
key_field: Holding_ID
steps:
  - {type: constant, canonical: party_source.system, value: ZOHO}
  - {type: field, vendor: Contact, canonical: party_source.system_id}    # the parent's Zoho id (cross-reference)
  - {type: field, vendor: Product, canonical: product_code}
  - {type: constant, canonical: product_family, value: DEPOSIT}
  - {type: field, vendor: Account, canonical: account_number, direction: out, out_mask: account_short}
  - {type: field, vendor: Band, canonical: balance.band, direction: out}
"""


def test_a_crm_mapping_of_an_object_is_minimised_by_the_objects_classes(tmp_path: Path) -> None:
    errors = problems_of(tmp_path, CRM_CASES)
    assert any(f"m.yaml:{line_of(CRM_CASES, 'summary')}: steps[2].canonical: summary is never pushed to a CRM" in e
               for e in errors), errors
    unmasked = CRM_HOLDINGS.replace(", out_mask: account_short", "")
    errors = problems_of(tmp_path, unmasked)
    assert any(f"m.yaml:{line_of(unmasked, 'Account')}: steps[4].canonical: account_number is personal data (C2)"
               in e for e in errors), errors
    path = tmp_path / "h.yaml"
    path.write_text(CRM_HOLDINGS, encoding="utf-8")
    m = load_mapping(path, profile=target_profile)
    h = parse_object("Holding", {"holding_id": "0b6f2a51-3c1e-4d7e-9a43-5e2c8f1d7a20", "party_id": PARTY_ID,
                                 "party_source": {"system": "ZOHO", "system_id": "5725767000000419001"},
                                 "product_family": "DEPOSIT", "product_code": "TD", "account_number": ACCOUNT,
                                 "balance": {"amount": "900000.00"}})
    out = m.map_out(h)
    assert out == {"Holding_ID": "0b6f2a51-3c1e-4d7e-9a43-5e2c8f1d7a20", "Contact": "5725767000000419001",
                   "Product": "TD", "Account": "**************2345", "Band": "500K_6M"}
