"""Every canonical field is classified, and the policies match docs/canonical.md §3."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from crmbridge.canonical.classification import (
    DataClass,
    Projection,
    Treatment,
    classified,
    field_policies,
    iter_classified_values,
    masked_dump,
    policy_for,
    template_path,
    unclassified_fields,
)
from crmbridge.canonical.model import PARTY_CLASSES, Individual, Organisation, parse_party
from crmbridge.canonical.objects import CampaignResponse, Holding, Interaction
from crmbridge.canonical.synthetic import generate_customers

E, B, M = Treatment.ENCRYPT, Treatment.BLIND_INDEX, Treatment.MASK


@pytest.mark.parametrize("model", [Individual, Organisation, Holding, Interaction, CampaignResponse])
def test_every_leaf_field_is_classified(model: type[BaseModel]) -> None:
    assert unclassified_fields(model) == []
    policies = field_policies(model)
    assert len(policies) > (60 if model in PARTY_CLASSES else 20)
    for path, pol in policies.items():
        assert pol.path == path
        if pol.data_class is DataClass.C2:
            assert pol.mask_kind or pol.mask_by, path


def test_an_unclassified_field_is_detected() -> None:
    class Leaky(BaseModel):
        ok: str = classified("x", cls="C1")
        secret_note: str = "oops"

    assert unclassified_fields(Leaky) == ["secret_note"]
    with pytest.raises(TypeError, match="secret_note"):
        field_policies(Leaky)


def test_classified_rejects_bad_declarations() -> None:
    with pytest.raises(ValueError):
        classified(None, cls="C3")
    with pytest.raises(ValueError):
        classified(None, cls="C2", treat="E")  # a C2 field needs a display mask
    with pytest.raises(ValueError):
        classified(None, cls="C1", treat="PE")


@pytest.mark.parametrize(("path", "cls", "treat"), [
    ("identifiers[].value", "C2", {E, B, M}),
    ("contact_points[].value", "C2", {E, B, M}),
    ("name.legal_zh", "C2", {E, B, M}),
    ("date_of_birth", "C2", {E}),
    ("gender", "C2", {E}),
    ("nationality", "C2", {E}),
    ("addresses[].street", "C2", {E}),
    ("addresses[].adr_lines[]", "C2", {E}),
    ("addresses[].district", "C2", {Treatment.PLAIN}),
    ("aum.amount", "C2", {E}),
    ("aum.band", "C1", {Treatment.PLAIN}),
    ("segment.code", "C1", {Treatment.PLAIN}),
    ("relationship_manager.employee_id", "C1", {Treatment.PLAIN}),
    ("home_branch.cnaps_code", "C1", {Treatment.PLAIN}),
    ("kyc.risk_rating", "C2", {Treatment.PLAIN}),
    ("consents[].status", "C1", {Treatment.PLAIN}),
    ("party_id", "C1", {Treatment.PLAIN}),
    ("version", "C1", {Treatment.PLAIN}),
])
def test_individual_policies_follow_canonical_table(path: str, cls: str, treat: set[Treatment]) -> None:
    pol = policy_for(path, Individual)
    assert pol.data_class == cls
    assert set(pol.treatments) == treat


def test_organisation_specific_policies() -> None:
    pols = field_policies(Organisation)
    assert pols["legal_representative.name"].data_class is DataClass.C2
    assert pols["legal_representative.identifier.value"].blind_index
    assert pols["beneficial_owners[].ownership_pct"].encrypt
    # registered capital is public registration data: the parent declaration overrides Money's C2 amount
    assert pols["registered_capital.amount"].data_class is DataClass.C1
    assert pols["registered_capital.amount"].plain
    assert pols["name.legal_zh"].data_class is DataClass.C1


def test_projection_hints() -> None:
    assert policy_for("aum.amount", PARTY_CLASSES).crm is Projection.DERIVED
    assert policy_for("identifiers[].value", PARTY_CLASSES).crm is Projection.MASKED
    assert policy_for("kyc.pep", PARTY_CLASSES).crm is Projection.NEVER
    assert policy_for("aum.band", PARTY_CLASSES).crm is Projection.PUSH


def test_policy_for_accepts_indices_and_rejects_unknown() -> None:
    assert template_path("identifiers[3].value") == "identifiers[].value"
    assert policy_for("identifiers[3].value", PARTY_CLASSES).path == "identifiers[].value"
    assert policy_for("legal_form", PARTY_CLASSES).path == "legal_form"  # found on Organisation
    with pytest.raises(KeyError):
        policy_for("no_such.field", PARTY_CLASSES)


def test_identifier_mask_kind_follows_scheme() -> None:
    data = {
        "party_type": "INDIVIDUAL", "name": {"legal_zh": "欧阳修"},
        "identifiers": [{"scheme": "CN_RIC", "value": "11010519491231002X"},
                        {"scheme": "PASSPORT", "value": "E12345678"},
                        {"scheme": "HK_MO_PERMIT", "value": "H12345678"}],
        "contact_points": [{"type": "MOBILE", "value": "13812345678"}, {"type": "EMAIL", "value": "a@example.com"}],
    }
    found = {path: (value, pol) for path, value, pol in iter_classified_values(parse_party(data))}
    assert found["identifiers[0].value"][1].mask_kind == "ric"
    assert found["identifiers[1].value"][1].mask_kind == "passport"
    assert found["identifiers[2].value"][1].mask_kind == "permit"
    assert found["identifiers[0].value"][1].index_by == "scheme"
    assert found["contact_points[0].value"][1].mask_kind == "mobile"
    assert found["contact_points[1].value"][1].mask_kind == "email"
    assert found["identifiers[0].value"][1].mask(found["identifiers[0].value"][0]) == "1*************002X"
    assert found["name.legal_zh"][1].mask("欧阳修") == "欧阳*"
    # None values are not yielded
    assert "date_of_birth" in found and "occupation" not in found


def test_masked_dump_hides_every_personal_value() -> None:
    customers = [c for c in generate_customers(40, seed=3) if c.should_validate]
    for c in customers:
        party = parse_party(c.to_party_dict())
        text = json.dumps(masked_dump(party), ensure_ascii=False)
        personal_name = c.name if c.is_individual else c.legal_rep_name  # an organisation's own name is C1
        secrets = [v for v in (personal_name, c.id_number, c.email, c.address.street, c.legal_rep_id, str(c.aum))
                   if v]
        secrets.append(party.contact("MOBILE").value)  # type: ignore[union-attr]
        for secret in secrets:
            assert secret not in text, secret
        # C1 data stays readable
        assert c.cif in text and c.segment in text
