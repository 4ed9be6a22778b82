"""Masking fails closed: the canonical layer knows no vendor; a system gets personal (C2) data in clear only when its
adapter class declares it a system of record. A CRM adapter registered today, on no list, gets the minimised
projection."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from crmbridge.adapters.registry import adapter_class, adapter_names, target_profile
from crmbridge.canonical.mapping import MappingLoadError, TargetProfile, check_mapping_file, load_mapping
from crmbridge.canonical.model import parse_party

SAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "samples"
RIC = "11010519491231002X"
MOBILE = "+8613812345678"

NEWCRM = """\
system: newcrm
object: Person
version: 1
description: a CRM registered after the canonical layer was written
party_type: INDIVIDUAL
external_id: id
key_field: Party_ID
steps:
  - type: identifier
    vendor: NationalId
    scheme: CN_RIC
  - type: contact
    vendor: Mobile
    contact_type: MOBILE
"""

#: the mandatory FullName, pushed masked
MASKED_NAME = """\
  - type: field
    vendor: FullName
    canonical: name.legal_zh
    out_mask: name
"""

#: a step pushing the legal name with no mask and no reason: only a system of record may receive it
CLEAR_NAME = """\
  - type: field
    vendor: LegalName
    canonical: name.legal_zh
"""

ADAPTER_MODULE = '''\
from crmbridge.adapters.base import Adapter


class NewCrmAdapter(Adapter):
    name = "newcrm"
    mandatory_fields = {"Person": ("FullName",)}
    source_system = "NEWCRM"
'''


@pytest.fixture
def newcrm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A third-party CRM adapter installed as a distribution with a ``crmbridge.adapters`` entry point."""
    (tmp_path / "newcrm_adapter.py").write_text(ADAPTER_MODULE, encoding="utf-8")
    dist = tmp_path / "newcrm_adapter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: newcrm-adapter\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[crmbridge.adapters]\nnewcrm = newcrm_adapter:NewCrmAdapter\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "newcrm_adapter", raising=False)
    return "newcrm"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "newcrm_person.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def _party():  # type: ignore[no-untyped-def]
    return parse_party(json.loads((SAMPLES / "party_individual.json").read_text(encoding="utf-8")))


def test_a_newly_registered_crm_gets_c2_masked_with_no_list_updated(newcrm: str, tmp_path: Path) -> None:
    assert newcrm in adapter_names() and adapter_class(newcrm).__name__ == "NewCrmAdapter"
    profile = target_profile(newcrm, "Person")
    assert profile == TargetProfile(role="crm", mandatory_fields=("FullName",), source_system="NEWCRM")
    m = load_mapping(_write(tmp_path, NEWCRM + MASKED_NAME), profile=target_profile)
    out = m.map_out(_party())
    assert set(out) == {"NationalId", "Mobile", "FullName", "Party_ID"} and out["FullName"] == "张*"
    assert out["NationalId"] == "1*************002X"
    assert out["Mobile"] != MOBILE and "*" in out["Mobile"]
    assert m.source_system == "NEWCRM"


def test_a_crm_is_refused_a_clear_name_and_its_mandatory_field_is_checked(newcrm: str, tmp_path: Path) -> None:
    _, problems = check_mapping_file(_write(tmp_path, NEWCRM), profile=target_profile)
    assert [p.message for p in problems] == [
        "mandatory newcrm Person field 'FullName' is not mapped in the out direction"]
    with pytest.raises(MappingLoadError, match="name.legal_zh is personal data"):
        load_mapping(_write(tmp_path, NEWCRM + MASKED_NAME + CLEAR_NAME), profile=target_profile)


def test_without_a_profile_a_system_is_treated_as_a_crm(tmp_path: Path) -> None:
    out = load_mapping(_write(tmp_path, NEWCRM)).map_out(_party())
    assert out["NationalId"] != RIC and out["Mobile"] != MOBILE
    with pytest.raises(MappingLoadError, match="name.legal_zh is personal data"):
        load_mapping(_write(tmp_path, NEWCRM + CLEAR_NAME))


def test_a_system_of_record_gets_clear_values(tmp_path: Path) -> None:
    core = TargetProfile(role="system_of_record")
    out = load_mapping(_write(tmp_path, NEWCRM + CLEAR_NAME), profile=core).map_out(_party())
    assert out["NationalId"] == RIC and out["Mobile"] == MOBILE and out["LegalName"] == "张三"


def test_an_unregistered_system_is_reported(tmp_path: Path) -> None:
    _, problems = check_mapping_file(_write(tmp_path, NEWCRM), profile=target_profile)
    assert any(p.path == "system" and "unknown system 'newcrm'" in p.message for p in problems)
