"""``mapping validate --against``: a nested vendor path is checked member by member against the WSDL's fields."""

from __future__ import annotations

from pathlib import Path

from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import load_mapping, validate_against

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "corebank_soap_customer.yaml"


def test_a_nested_member_typo_is_reported_at_its_line(fcubs: CorebankSoapAdapter, tmp_path: Path) -> None:
    text = MAPPING.read_text(encoding="utf-8")
    assert "vendor: Custpersonal.MOBNUM" in text
    broken = tmp_path / "corebank.yaml"
    broken.write_text(text.replace("vendor: Custpersonal.MOBNUM", "vendor: Custpersonal.MOBILE"), encoding="utf-8")
    line = next(i for i, ln in enumerate(broken.read_text(encoding="utf-8").splitlines(), 1)
                if "Custpersonal.MOBILE" in ln)
    problems = validate_against(load_mapping(broken, profile=target_profile), fcubs.describe("Customer"))
    assert [(p.line, p.message.split(" (members:")[0]) for p in problems] == [
        (line, "Custpersonal has no member 'MOBILE'")]
    assert "MOBNUM" in problems[0].message     # the members it does have are listed
    # the shipped mapping's nested paths all exist
    assert validate_against(load_mapping(MAPPING, profile=target_profile), fcubs.describe("Customer")) == []
