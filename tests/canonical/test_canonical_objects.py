"""The canonical objects beside the party (Holding, Interaction, CampaignResponse): valid and invalid records, errors
that say what and where without values, classification of every field, canonical JSON and content hash."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from crmbridge.canonical.classification import (
    DataClass,
    Projection,
    field_policies,
    masked_dump,
    policy_for,
    unclassified_fields,
)
from crmbridge.canonical.model import ConsentPurpose
from crmbridge.canonical.objects import (
    CANONICAL_OBJECTS,
    ID_FIELDS,
    CampaignResponse,
    Holding,
    Interaction,
    object_classes,
    parse_object,
)
from crmbridge.core.errors import ValidationError

PID = "6f1c2b0e-8d2a-4c35-9e61-2b7f4a1d9c10"
ACCOUNT = "430202000100012345"
SUMMARY = "客户张三对年费扣收有异议，电话13812345678"


def holding(**kw: object) -> dict:
    return {"party_id": PID, "product_family": "DEPOSIT", "product_code": "TD12M", "product_name": "整存整取",
            "opened_on": "2024-03-01", "balance": {"amount": "200000.5", "currency": "CNY"},
            "account_number": ACCOUNT, **kw}


def interaction(**kw: object) -> dict:
    return {"party_id": PID, "kind": "COMPLAINT", "channel": "PHONE", "regulator_category": "PRICING_AND_FEES",
            "priority": "HIGH", "status": "OPEN", "opened_at": "2025-06-01T10:15:00+08:00",
            "due_at": "2025-06-16T10:15:00+08:00", "summary": SUMMARY, **kw}


def response(**kw: object) -> dict:
    return {"party_id": PID, "campaign_id": "CMP-1", "campaign_name": "二季度理财", "response": "INTERESTED",
            "channel": "SMS", "responded_at": "2025-06-02T11:30:00+08:00", **kw}


# --------------------------------------------------------------------------------------------------- classification

@pytest.mark.parametrize("model", [Holding, Interaction, CampaignResponse])
def test_every_leaf_field_of_the_new_objects_is_classified(model: type) -> None:
    assert unclassified_fields(model) == []
    policies = field_policies(model)
    assert {"party_id", "source_refs[].system_id", "party_source.system_id", ID_FIELDS[model.__name__]} <= set(
        policies)
    for path, pol in policies.items():
        assert pol.path == path
        if pol.data_class is DataClass.C2:
            assert pol.mask_kind or pol.mask_by, path


def test_personal_fields_of_the_objects_are_c2_and_never_pushed_in_clear() -> None:
    amount = policy_for("balance.amount", Holding)
    assert amount.is_personal and amount.encrypt and amount.crm is Projection.DERIVED
    assert policy_for("balance.band", Holding).data_class is DataClass.C1
    acct = policy_for("account_number", Holding)
    assert acct.is_personal and acct.blind_index and acct.crm is Projection.MASKED
    summary = policy_for("summary", Interaction)
    assert summary.is_personal and summary.encrypt and summary.crm is Projection.NEVER
    assert policy_for("regulator_category", Interaction).data_class is DataClass.C1
    assert all(not p.is_personal for p in field_policies(CampaignResponse).values())


def test_masked_dump_of_each_object_shows_no_personal_value() -> None:
    h = parse_object("Holding", holding())
    i = parse_object("Interaction", interaction())
    text = repr(masked_dump(h)) + repr(masked_dump(i))
    for secret in (ACCOUNT, "200000.50", "张三", "13812345678", SUMMARY):
        assert secret not in text
    assert masked_dump(h)["balance"]["band"] == "50K_500K"
    assert masked_dump(h)["account_number"].endswith("2345")


# --------------------------------------------------------------------------------------------------- Holding

def test_valid_holding_is_normalised() -> None:
    h = parse_object("Holding", holding())
    assert isinstance(h, Holding)
    assert h.balance is not None and h.balance.amount == Decimal("200000.50") and h.balance.band == "50K_500K"
    assert h.party_id == uuid.UUID(PID) and h.is_open()
    closed = parse_object("Holding", holding(status="CLOSED", closed_on="2025-01-02"))
    assert not closed.is_open() and closed.is_open(on=closed.opened_on)


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"status": "CLOSED"}, "closed_on", "missing_closed_on"),
    ({"closed_on": "2025-01-01"}, "closed_on", "closed_on_mismatch"),
    ({"status": "CLOSED", "closed_on": "2023-01-01"}, "closed_on", "invalid_date_range"),
    ({"product_family": "CRYPTO"}, "product_family", "enum"),
    ({"balance": {"amount": "-1", "currency": "CNY"}}, "balance.amount", "invalid_amount"),
    ({"balance": {"amount": "1.234", "currency": "CNY"}}, "balance.amount", "invalid_amount"),
    ({"balance": {"amount": "1", "currency": "RMB"}}, "balance.currency", "invalid_currency"),
    ({"party_id": None}, "party_id", "missing_party"),
    ({"product_code": ""}, "product_code", "string_too_short"),
    ({"colour": "red"}, "colour", "extra_forbidden"),
])
def test_invalid_holding_says_what_and_where(change: dict, field: str, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_object("Holding", holding(**change), where="test")
    assert (info.value.field, info.value.code) == (field, code)
    assert "Holding" in str(info.value) and ACCOUNT not in str(info.value)


def test_a_bad_account_number_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as info:
        parse_object("Holding", holding(account_number="6222!!0200123456789"))
    assert info.value.field == "account_number" and "6222" not in str(info.value)


def test_holding_waits_for_its_party_by_source_reference() -> None:
    h = parse_object("Holding", holding(party_id=None, party_source={"system": "FLEXCUBE", "system_id": "000001"}))
    assert h.party_id is None and h.party_source.system_id == "000001"


def test_holding_content_hash_ignores_bookkeeping_and_source_order() -> None:
    a = parse_object("Holding", holding(source_refs=[{"system": "FLEXCUBE", "system_id": "1"},
                                                     {"system": "T24", "system_id": "2"}], version=1))
    b = parse_object("Holding", holding(source_refs=[{"system": "T24", "system_id": "2", "etag": "x"},
                                                     {"system": "FLEXCUBE", "system_id": "1"}], version=7))
    assert a.content_hash() == b.content_hash()
    c = parse_object("Holding", holding(product_code="TD6M"))
    assert c.content_hash() != a.content_hash()
    assert a.content_hash(b"k") != a.content_hash()


# --------------------------------------------------------------------------------------------------- Interaction

def test_valid_interaction_derives_sla_breach_from_its_times() -> None:
    i = parse_object("Interaction", interaction())
    assert i.sla_breached is None and i.opened_at.tzinfo is not None and i.opened_at.hour == 2
    late = parse_object("Interaction", interaction(status="CLOSED", closed_at="2025-06-20T09:00:00+08:00"))
    assert late.sla_breached is True
    on_time = parse_object("Interaction", interaction(status="RESOLVED", closed_at="2025-06-02T09:00:00+08:00"))
    assert on_time.sla_breached is False
    said = parse_object("Interaction", interaction(status="CLOSED", closed_at="2025-06-20T09:00:00+08:00",
                                                   sla_breached=False))
    assert said.sla_breached is False          # the source's own SLA clock (business hours) is kept


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"kind": "SERVICE_CASE"}, "regulator_category", "category_mismatch"),
    ({"status": "CLOSED"}, "closed_at", "missing_closed_at"),
    ({"closed_at": "2025-06-02T00:00:00+08:00"}, "closed_at", "closed_at_mismatch"),
    ({"due_at": "2025-05-01T00:00:00+08:00"}, "due_at", "invalid_date_range"),
    ({"status": "CLOSED", "closed_at": "2025-05-01T00:00:00+08:00"}, "closed_at", "invalid_date_range"),
    ({"opened_at": "2025-06-01T10:15:00"}, "opened_at", "timezone_aware"),
    ({"channel": "PIGEON"}, "channel", "enum"),
    ({"summary": "x" * 4001}, "summary", "string_too_long"),
])
def test_invalid_interaction_says_what_and_where(change: dict, field: str, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_object("Interaction", interaction(**change))
    assert (info.value.field, info.value.code) == (field, code)
    assert "张三" not in str(info.value) and "13812345678" not in str(info.value)


def test_interaction_needs_its_opening_time() -> None:
    data = interaction()
    del data["opened_at"]
    with pytest.raises(ValidationError) as info:
        parse_object("Interaction", data)
    assert (info.value.field, info.value.code) == ("opened_at", "missing")


# --------------------------------------------------------------------------------------------------- CampaignResponse

@pytest.mark.parametrize(("channel", "withdrawn"), [
    ("SMS", {ConsentPurpose.MARKETING_SMS}),
    ("EMAIL", {ConsentPurpose.MARKETING_EMAIL}),
    ("CALL", {ConsentPurpose.MARKETING_CALL}),
    ("WECHAT", {ConsentPurpose.MARKETING_SMS, ConsentPurpose.MARKETING_CALL, ConsentPurpose.MARKETING_EMAIL}),
])
def test_opt_out_withdraws_the_channel_consent(channel: str, withdrawn: set) -> None:
    r = parse_object("CampaignResponse", response(response="OPTED_OUT", channel=channel))
    assert set(r.withdrawn_consents()) == withdrawn
    assert parse_object("CampaignResponse", response(channel=channel)).withdrawn_consents() == ()


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"response": "MAYBE"}, "response", "enum"),
    ({"campaign_id": ""}, "campaign_id", "string_too_short"),
    ({"responded_at": None}, "responded_at", "datetime_type"),
    ({"party_id": "not-a-uuid"}, "party_id", "uuid_parsing"),
])
def test_invalid_campaign_response_says_what_and_where(change: dict, field: str, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_object("CampaignResponse", response(**change))
    assert (info.value.field, info.value.code) == (field, code)


# --------------------------------------------------------------------------------------------------- registry

def test_registry_names_every_object_and_refuses_unknown_ones() -> None:
    assert set(CANONICAL_OBJECTS) == set(ID_FIELDS) == {"Party", "Holding", "Interaction", "CampaignResponse"}
    assert object_classes("Holding") == (Holding,)
    with pytest.raises(KeyError, match="known: Party, Holding"):
        object_classes("Lead")
    party = parse_object("Party", {"party_type": "ORGANISATION", "name": {"legal_zh": "某公司"}})
    assert party.party_type == "ORGANISATION"
