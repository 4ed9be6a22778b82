"""Canonical extensions: typed party fields declared in configuration, classified, mapped, masked, refused as C3."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.classification import iter_classified_values, masked_dump, policy_for
from crmbridge.canonical.extensions import declare_extensions, declared_extensions
from crmbridge.canonical.mapping import check_mapping_file, load_mapping
from crmbridge.canonical.masking import canonical_kind
from crmbridge.canonical.model import PARTY_CLASSES, parse_party
from crmbridge.config import load_config
from crmbridge.core.errors import ConfigurationError, ValidationError

SAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "samples"

CONFIG = """\
keys:
  master_key: env:CRMBRIDGE_TEST_MASTER_KEY
canonical:
  extensions:
    relationship_start_date:
      type: date
      class: C2
      treatment: [encrypt, mask]
      mask: date
      description: Date the customer relationship began (FLEXCUBE CIFCREATIONDT)
    loyalty_tier:
      type: enum
      values: [BRONZE, SILVER, GOLD]
      class: C1
      description: Loyalty programme tier
"""

CORE = """\
system: corebank_soap
object: Customer
version: 1
description: test
party_type: INDIVIDUAL
external_id: CUSTNO
steps:
  - {type: field, vendor: FULLNAME, canonical: name.legal_zh}
  - {type: field, vendor: CIFCREATIONDT, canonical: extensions.relationship_start_date, transform: ["date:%Y-%m-%d"]}
  - {type: field, vendor: TIER, canonical: extensions.loyalty_tier, transform: [upper]}
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
  - {type: field, vendor: Customer_Since, canonical: extensions.relationship_start_date, transform: [date],
     out_mask: date, direction: out}
  - {type: field, vendor: Loyalty_Tier, canonical: extensions.loyalty_tier}
"""


@pytest.fixture(autouse=True)
def _no_extensions_after() -> Iterator[None]:
    yield
    declare_extensions({})


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    p = tmp_path / "crmbridge.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _mapping(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_declared_extension_maps_in_from_core_and_out_to_zoho(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path))
    assert set(cfg.canonical.declared()) == {"relationship_start_date", "loyalty_tier"}
    assert set(declared_extensions()) == {"relationship_start_date", "loyalty_tier"}
    core = load_mapping(_mapping(tmp_path, "core.yaml", CORE), profile=target_profile)
    raw = {"CUSTNO": "1", "FULLNAME": "林宁婷", "CIFCREATIONDT": "2021-09-12", "TIER": "gold"}
    party = core.to_party(raw, party_id=uuid.UUID(int=5))
    assert party.extensions == {"relationship_start_date": dt.date(2021, 9, 12), "loyalty_tier": "GOLD"}
    # stored form round-trips with its type
    again = parse_party(json.loads(party.model_dump_json()))
    assert again.extensions["relationship_start_date"] == dt.date(2021, 9, 12)

    zoho = load_mapping(_mapping(tmp_path, "zoho.yaml", ZOHO), profile=target_profile)
    payload = zoho.map_out(party)
    assert payload["Loyalty_Tier"] == "GOLD"                      # C1: as is
    assert payload["Customer_Since"] != "2021-09-12"              # C2: only the masked form reaches the CRM
    assert "*" in payload["Customer_Since"]


def test_extension_is_classified_and_masked_like_a_builtin_field(tmp_path: Path) -> None:
    load_config(_config(tmp_path))
    pol = policy_for("extensions.relationship_start_date", PARTY_CLASSES)
    assert pol.is_personal and pol.encrypt and pol.keep_masked and pol.mask_kind == "date"
    assert canonical_kind("extensions.relationship_start_date") == "date"
    assert canonical_kind("extensions.loyalty_tier") is None
    data = json.loads((SAMPLES / "party_individual.json").read_text(encoding="utf-8"))
    data["extensions"] = {"relationship_start_date": "2021-09-12", "loyalty_tier": "SILVER"}
    party = parse_party(data)
    values = {p: (v, pol.data_class.value) for p, v, pol in iter_classified_values(party)}
    assert values["extensions.relationship_start_date"] == (dt.date(2021, 9, 12), "C2")
    dumped = masked_dump(party)["extensions"]
    assert dumped["loyalty_tier"] == "SILVER" and dumped["relationship_start_date"] != "2021-09-12"


def test_a_c2_extension_pushed_in_clear_to_a_crm_is_a_mapping_error(tmp_path: Path) -> None:
    load_config(_config(tmp_path))
    p = _mapping(tmp_path, "zoho.yaml", ZOHO.replace("out_mask: date, ", ""))
    _, problems = check_mapping_file(p, profile=target_profile)
    assert any(pr.line == 10 and "personal data (C2)" in pr.message for pr in problems), problems


def test_undeclared_extension_in_a_mapping_or_a_party_is_refused(tmp_path: Path) -> None:
    load_config(_config(tmp_path, CONFIG.split("    loyalty_tier:")[0]))   # loyalty_tier removed
    p = _mapping(tmp_path, "core.yaml", CORE)
    _, problems = check_mapping_file(p, profile=target_profile)
    errors = [str(pr) for pr in problems if pr.severity == "error"]
    assert errors == [f"{p}:10: steps[2].canonical: unknown canonical path 'extensions.loyalty_tier': 'loyalty_tier' "
                      "is not a declared canonical extension (declared: relationship_start_date); declare it under "
                      "canonical.extensions in the configuration, or remove this step"]
    data = json.loads((SAMPLES / "party_individual.json").read_text(encoding="utf-8"))
    data["extensions"] = {"loyalty_tier": "GOLD"}
    with pytest.raises(ValidationError, match="not a declared canonical extension"):
        parse_party(data)
    data["extensions"] = {"relationship_start_date": "not a date"}
    with pytest.raises(ValidationError, match="declared date") as exc:
        parse_party(data)
    assert "not a date" not in str(exc.value)


def test_c3_and_bad_declarations_are_located_config_errors(tmp_path: Path) -> None:
    text = CONFIG.replace("      class: C1\n", "      class: C3\n").replace("      mask: date\n", "")
    path = _config(tmp_path, text)
    with pytest.raises(ConfigurationError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert f"{path}:5: canonical.extensions.relationship_start_date: a C2 field" in msg, msg
    assert f"{path}:10: canonical.extensions.loyalty_tier: class C3 (authentication data" in msg, msg


def test_extensions_file_is_loaded_and_its_errors_located(tmp_path: Path) -> None:
    ext = tmp_path / "extensions.yaml"
    ext.write_text("extensions:\n  branch_rank:\n    type: integer\n    class: C1\n    description: rank\n"
                   "  branch_note:\n    type: string\n    class: C3\n    description: hint\n", encoding="utf-8")
    path = _config(tmp_path, "keys:\n  master_key: env:X\ncanonical:\n  extensions_file: extensions.yaml\n")
    with pytest.raises(ConfigurationError, match=rf"{ext}:6: extensions.branch_note: class C3"):
        load_config(path)
    ext.write_text("extensions:\n  branch_rank:\n    type: integer\n    class: C1\n    description: rank\n",
                   encoding="utf-8")
    load_config(path)
    assert set(declared_extensions()) == {"branch_rank"}


def test_an_extension_named_like_authentication_data_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, CONFIG.replace("    loyalty_tier:", "    card_pin:"))
    with pytest.raises(ConfigurationError, match=rf"{path}:11: canonical.extensions.card_pin: the name looks like "
                                                 r"authentication data \(C3"):
        load_config(path)


def test_preview_masks_an_extension_by_its_class(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from crmbridge.cli import mapping_cmd

    app = typer.Typer()
    mapping_cmd.register(app)
    cfg = _config(tmp_path)
    mapping = _mapping(tmp_path, "core.yaml", CORE)
    record = tmp_path / "rec.json"
    record.write_text(json.dumps({"CUSTNO": "1", "FULLNAME": "林宁婷", "CIFCREATIONDT": "2021-09-12",
                                  "TIER": "gold"}, ensure_ascii=False), encoding="utf-8")
    res = CliRunner().invoke(app, ["mapping", "preview", str(mapping), "--record", str(record), "-c", str(cfg)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    row = next(ln for ln in res.output.splitlines() if "extensions.relationship_start_date" in ln)
    assert "2021-09-12" not in row and "shown masked (date)" in row
    tier = next(ln for ln in res.output.splitlines() if "extensions.loyalty_tier" in ln)
    assert "GOLD" in tier and "masked" not in tier


def test_a_party_without_extension_values_serialises_as_before(tmp_path: Path) -> None:
    load_config(_config(tmp_path))
    data = json.loads((SAMPLES / "party_individual.json").read_text(encoding="utf-8"))
    plain = parse_party(data)
    assert "extensions" not in plain.model_dump() and b"extensions" not in plain.canonical_json()
    extended = parse_party({**data, "extensions": {"loyalty_tier": "GOLD"}})
    assert extended.canonical_dict()["extensions"] == {"loyalty_tier": "GOLD"}
    assert extended.content_hash() != plain.content_hash()
