"""The canonical party model: validation, discriminated union, canonical JSON and content hash."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from crmbridge.canonical.model import (
    ConsentPurpose,
    ContactType,
    Gender,
    Identifier,
    IdentifierScheme,
    Individual,
    Money,
    Organisation,
    PartyType,
    parse_party,
    record_error,
)
from crmbridge.core.errors import ValidationError

UTC = dt.UTC
RIC = "11010519491231002X"  # GB 11643 example: born 1949-12-31, female


def individual(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "party_type": "INDIVIDUAL",
        "party_id": "6f1c1e0a-3d7b-4b8e-9a51-2c4f5d6e7f80",
        "name": {"family_zh": "张", "given_zh": "三丰", "pinyin": "ZHANG Sanfeng"},
        "identifiers": [{"scheme": "CN_RIC", "value": RIC.lower(), "is_primary": True, "issuing_country": "cn"},
                        {"scheme": "CIF", "value": "800000001", "is_primary": True}],
        "contact_points": [{"type": "MOBILE", "value": "138 1234 5678", "preferred": True},
                           {"type": "EMAIL", "value": "Zhang.SanFeng@Example.com"}],
        "addresses": [{"type": "RESIDENTIAL", "province": "北京市", "city": "北京市", "district": "朝阳区",
                       "adcode": "110105", "street": "建国路88号", "postcode": "100020"}],
        "segment": {"code": "AFFLUENT"},
        "aum": {"amount": "823456.7", "currency": "CNY", "as_of": "2026-10-31"},
        "relationship_manager": {"employee_id": "E100101", "branch_code": "110501"},
        "home_branch": {"branch_code": "110501", "cnaps_code": "999110500010"},
        "kyc": {"risk_rating": "LOW", "last_review": "2025-01-01", "next_review": "2028-01-01"},
        "consents": [
            {"purpose": "MARKETING_SMS", "status": "GRANTED", "captured_at": "2024-03-01T10:00:00+08:00"},
            {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "GRANTED", "legal_basis": "PIPL13_2_CONTRACT",
             "captured_at": "2024-03-01T10:00:00+08:00"},
        ],
        "source_refs": [{"system": "FLEXCUBE", "system_id": "800000001", "record_version": "3",
                         "last_seen_at": "2026-11-01T00:00:00Z"}],
        "created_at": "2020-05-01T09:30:00+08:00",
        "updated_at": "2026-11-01T00:00:00Z",
    }
    data.update(over)
    return data


def organisation(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "party_type": "ORGANISATION",
        "name": {"legal_zh": "中国银行股份有限公司", "en": "Bank of China Limited", "short": "中国银行"},
        "identifiers": [{"scheme": "CN_USCC", "value": "911000001000013428", "is_primary": True}],
        "legal_form": "JOINT_STOCK",
        "registered_capital": {"amount": "294387791241", "currency": "CNY"},
        "industry": "J6621",
        "size_class": "LARGE",
        "segment": {"code": "STRATEGIC"},
        "legal_representative": {"name": "李四", "identifier": {"scheme": "CN_RIC", "value": "360426199101010071"}},
        "beneficial_owners": [{"name": "王五", "ownership_pct": "25.5"}],
    }
    data.update(over)
    return data


def rejected(data: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        parse_party(data)
    return err.value


# ------------------------------------------------------------------------------------------------ parsing


def test_individual_parses_and_normalises() -> None:
    p = parse_party(individual())
    assert isinstance(p, Individual)
    assert p.party_type is PartyType.INDIVIDUAL
    assert p.identifiers[0].value == RIC
    assert p.identifiers[0].issuing_country == "CN"
    assert p.contact(ContactType.MOBILE).value == "+8613812345678"  # type: ignore[union-attr]
    assert p.contact("EMAIL").value == "zhang.sanfeng@example.com"  # type: ignore[union-attr]
    assert p.name.legal_zh == "张三丰"
    assert p.aum is not None and p.aum.amount == Decimal("823456.70") and p.aum.band == "500K_6M"
    # filled from the RIC
    assert p.date_of_birth == dt.date(1949, 12, 31)
    assert p.gender is Gender.FEMALE


def test_organisation_parses() -> None:
    p = parse_party(organisation())
    assert isinstance(p, Organisation)
    assert p.uscc is not None and p.uscc.value == "911000001000013428"
    assert p.legal_representative is not None and p.legal_representative.identifier is not None
    assert str(p.beneficial_owners[0].ownership_pct) == "25.5000"


def test_discriminated_union_round_trip() -> None:
    for data in (individual(), organisation()):
        p = parse_party(data)
        again = parse_party(json.loads(p.model_dump_json()))
        assert type(again) is type(p)
        assert again == p
        assert again.content_hash() == p.content_hash()


def test_unknown_party_type_and_extra_keys_are_refused() -> None:
    assert rejected(individual(party_type="ROBOT")).code == "union_tag_invalid"
    err = rejected(individual(password_hint="x"))
    assert err.code == "extra_forbidden" and err.field == "password_hint"
    assert rejected(individual(name={"legal_zh": "张三", "nickname": "x"})).field == "name.nickname"


def test_bad_ric_is_located_and_masked() -> None:
    data = individual()
    data["identifiers"][0]["value"] = "110105194912310021"
    err = rejected(data)
    assert err.code == "invalid_checksum"
    assert err.field == "identifiers[0].value"
    assert "110105194912310021" not in str(err) and "19491231" not in str(err)


def test_pydantic_errors_never_echo_input() -> None:
    data = individual()
    data["contact_points"][0]["value"] = "12345678901"
    data["aum"] = {"amount": "1.234", "currency": "CNY"}
    with pytest.raises(pydantic.ValidationError) as err:
        Individual.model_validate(data)
    text = str(err.value)
    assert "12345678901" not in text and "input_value" not in text
    converted = record_error(err.value)
    assert converted.code == "invalid_phone" and converted.field == "contact_points[0].value"
    assert "aum.amount" in converted.message and "12345678901" not in converted.message


def test_legacy15_flag_lands_on_the_identifier() -> None:
    data = individual()
    data["identifiers"][0]["value"] = "110105491231002"
    p = parse_party(data)
    assert p.identifiers[0].value == RIC
    assert p.identifiers[0].flags == ("legacy15",)


@pytest.mark.parametrize(("value", "code"), [
    ("000000199001010018", "invalid_area_code"),   # correct check character, impossible area code
    ("999999199001010016", "invalid_area_code"),
    ("000000900101001", "invalid_area_code"),      # legacy 15-digit, same area check
])
def test_impossible_area_code_is_a_record_error_not_a_party(value: str, code: str) -> None:
    # these reached both CRMs before: the area code was only a data-quality flag
    data = individual()
    data["identifiers"][0]["value"] = value
    data.pop("date_of_birth", None)
    with pytest.raises(ValidationError) as err:
        parse_party(data)
    assert err.value.code == code
    assert err.value.field is not None and err.value.field.startswith("identifiers[0].value")
    assert value not in str(err.value)


def test_birth_date_in_the_future_is_its_own_record_error() -> None:
    from crmbridge.canonical.identifiers import ric_check_digit

    future = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date() + dt.timedelta(days=30)
    body = f"110105{future:%Y%m%d}002"
    data = individual()
    data["identifiers"][0]["value"] = body + ric_check_digit(body)
    data.pop("date_of_birth", None)
    with pytest.raises(ValidationError) as err:
        parse_party(data)
    assert err.value.code == "birth_date_in_future"


def test_fullwidth_ric_is_accepted() -> None:
    data = individual()
    data["identifiers"][0]["value"] = "１１０１０５１９４９１２３１００２ｘ"
    assert parse_party(data).identifiers[0].value == RIC


def test_missing_name() -> None:
    for name in (None, {}, {"pinyin": "ZHANG San"}):
        data = individual()
        if name is None:
            del data["name"]
        else:
            data["name"] = name
        err = rejected(data)
        assert err.code == "missing_name", name
        assert err.field.startswith("name")
    assert rejected(organisation(name={"short": "中行"})).code == "missing_name"


def test_name_parts_must_agree() -> None:
    assert rejected(individual(name={"legal_zh": "李四", "family_zh": "张", "given_zh": "三"})).code == \
        "name_inconsistent"
    ok = parse_party(individual(name={"legal_zh": "买买提·艾力", "family_zh": "买买提", "given_zh": "艾力"}))
    assert ok.name.legal_zh == "买买提·艾力"  # type: ignore[union-attr]


def test_birth_date_and_gender_must_match_ric() -> None:
    err = rejected(individual(date_of_birth="1950-01-01"))
    assert (err.code, err.field) == ("birth_date_mismatch", "date_of_birth")
    err = rejected(individual(gender="MALE"))
    assert (err.code, err.field) == ("gender_mismatch", "gender")
    assert parse_party(individual(gender="FEMALE", date_of_birth="1949-12-31")).gender is Gender.FEMALE


def test_identifier_scheme_must_suit_party_type() -> None:
    data = individual()
    data["identifiers"].append({"scheme": "CN_USCC", "value": "91110000600037341L"})
    err = rejected(data)
    assert (err.code, err.field) == ("scheme_not_allowed", "identifiers[2].scheme")


def test_duplicate_identifiers_and_primaries() -> None:
    data = individual()
    data["identifiers"].append({"scheme": "CN_RIC", "value": RIC})
    assert rejected(data).code == "duplicate_identifier"
    data = individual()
    data["identifiers"].append({"scheme": "CN_RIC", "value": "360426199101010071", "is_primary": True})
    assert rejected(data).code == "duplicate_primary"


def test_segment_must_suit_party_type() -> None:
    assert rejected(individual(segment={"code": "LARGE"})).code == "segment_mismatch"
    assert rejected(organisation(segment={"code": "PRIVATE"})).code == "segment_mismatch"


def test_lifecycle_rules() -> None:
    assert rejected(individual(lifecycle_stage="MERGED")).code == "merged_into_mismatch"
    merged = parse_party(individual(lifecycle_stage="MERGED", merged_into=str(uuid.uuid4())))
    assert merged.merged_into is not None
    assert rejected(individual(lifecycle_stage="DISSOLVED")).code == "invalid_stage"
    assert rejected(organisation(lifecycle_stage="DECEASED")).code == "invalid_stage"


def test_cnaps_and_adcode_patterns() -> None:
    assert rejected(individual(home_branch={"branch_code": "1", "cnaps_code": "12345"})).field == \
        "home_branch.cnaps_code"
    data = individual()
    data["addresses"][0]["adcode"] = "11010"
    assert rejected(data).field == "addresses[0].adcode"


def test_contact_point_type_mismatch_is_flagged_not_refused() -> None:
    data = individual(contact_points=[{"type": "MOBILE", "value": "010-12345678"}])
    cp = parse_party(data).contact_points[0]
    assert cp.kind == "LANDLINE" and cp.flags == ("type_mismatch",)


def test_wechat_openid() -> None:
    ok = individual(contact_points=[{"type": "WECHAT_OPENID", "value": "oAbC-123_xyz"}])
    assert parse_party(ok).contact_points[0].value == "oAbC-123_xyz"
    assert rejected(individual(contact_points=[{"type": "WECHAT_OPENID", "value": "a b"}])).code == \
        "invalid_format"


# ------------------------------------------------------------------------------------------------ money, time


def test_money_is_decimal_and_quantised() -> None:
    m = Money(amount="1234.5", currency="cny")  # type: ignore[arg-type]
    assert m.amount == Decimal("1234.50") and str(m.amount) == "1234.50" and m.currency == "CNY"
    assert Money(amount=Decimal("100"), currency="JPY").amount == Decimal("100")
    assert str(Money(amount="1.5", currency="KWD").amount) == "1.500"  # type: ignore[arg-type]
    assert isinstance(Money(amount=0.1, currency="USD").amount, Decimal)  # type: ignore[arg-type]


@pytest.mark.parametrize(("amount", "currency", "code"), [
    ("1.234", "CNY", "invalid_amount"), ("1.5", "JPY", "invalid_amount"), ("1", "RMB", "invalid_currency"),
    ("1", "cnh", "invalid_currency"), ("NaN", "CNY", "finite_number"), ("abc", "CNY", "decimal_parsing"),
])
def test_bad_money(amount: str, currency: str, code: str) -> None:
    err = rejected(individual(aum={"amount": amount, "currency": currency}))
    assert err.code == code
    assert err.field.startswith("aum")


def test_negative_aum_refused_and_band_derived() -> None:
    assert rejected(individual(aum={"amount": "-1"})).code == "invalid_amount"
    assert parse_party(individual(aum={"amount": "30000000"})).aum.band == "GE_30M"  # type: ignore[union-attr]
    assert parse_party(individual(aum={"amount": "10", "currency": "USD"})).aum.band is None  # type: ignore


def test_datetimes_must_be_aware_and_become_utc() -> None:
    p = parse_party(individual())
    assert p.created_at == dt.datetime(2020, 5, 1, 1, 30, tzinfo=UTC)
    assert p.created_at.utcoffset() == dt.timedelta(0)  # type: ignore[union-attr]
    err = rejected(individual(created_at="2020-05-01T09:30:00"))
    assert (err.code, err.field) == ("timezone_aware", "created_at")


# ------------------------------------------------------------------------------------------------ consents


def test_consent_rules() -> None:
    def consent(**c: Any) -> dict[str, Any]:
        base = {"purpose": "MARKETING_SMS", "status": "GRANTED", "captured_at": "2024-01-01T00:00:00Z"}
        return individual(consents=[{**base, **c}])

    assert rejected(consent(legal_basis="PIPL13_2_CONTRACT")).code == "invalid_legal_basis"
    assert rejected(consent(purpose="CROSS_BORDER")).code == "separate_consent_required"
    assert parse_party(consent(purpose="CROSS_BORDER", separate_consent=True)).consents
    assert rejected(consent(status="WITHDRAWN")).code == "missing_withdrawn_at"
    assert rejected(consent(status="WITHDRAWN", withdrawn_at="2023-01-01T00:00:00Z")).code == "invalid_date_range"


def test_has_consent_over_time() -> None:
    p = parse_party(individual(consents=[
        {"purpose": "MARKETING_SMS", "status": "GRANTED", "captured_at": "2024-01-01T00:00:00Z"},
        {"purpose": "MARKETING_SMS", "status": "WITHDRAWN", "captured_at": "2024-06-01T00:00:00Z",
         "withdrawn_at": "2024-06-01T00:00:00Z"},
        {"purpose": "MARKETING_EMAIL", "status": "DENIED", "captured_at": "2024-01-01T00:00:00Z"},
    ]))
    at = lambda s: dt.datetime.fromisoformat(s)  # noqa: E731
    assert not p.has_consent("MARKETING_SMS", at("2023-12-31T00:00:00+00:00"))
    assert p.has_consent(ConsentPurpose.MARKETING_SMS, at("2024-03-01T00:00:00+00:00"))
    assert not p.has_consent("MARKETING_SMS", at("2024-07-01T00:00:00+00:00"))
    assert not p.has_consent("MARKETING_SMS")  # now
    assert not p.has_consent("MARKETING_EMAIL")
    assert not p.has_consent("PROFILING")
    with pytest.raises(ValueError):
        p.has_consent("MARKETING_SMS", dt.datetime(2024, 1, 1))


def test_primary_identifier_and_contact_helpers() -> None:
    data = individual()
    data["identifiers"].insert(0, {"scheme": "PASSPORT", "value": "E12345678"})
    data["contact_points"].insert(0, {"type": "MOBILE", "value": "13900001111"})
    p = parse_party(data)
    assert p.primary_identifier(IdentifierScheme.CN_RIC).value == RIC  # type: ignore[union-attr]
    assert p.primary_identifier("PASSPORT").value == "E12345678"  # type: ignore[union-attr]
    assert p.primary_identifier("HK_MO_PERMIT") is None
    assert p.contact("MOBILE").value == "+8613812345678"  # type: ignore[union-attr]  (the preferred one)
    assert p.contact("LANDLINE") is None


# ------------------------------------------------------------------------------------------------ canonical JSON


def test_canonical_json_is_sorted_compact_utf8() -> None:
    p = parse_party(individual())
    body = p.canonical_json()
    assert body.decode("utf-8") == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"),
                                              ensure_ascii=False)
    assert "张三丰".encode() in body
    assert b'"amount":"823456.70"' in body  # Decimal as a string
    assert b'"created_at":"2020-05-01T01:30:00Z"' in body
    for volatile in (b'"version"', b'"updated_at"', b'"synced_at"', b'"last_seen_at"', b'"record_version"'):
        assert volatile not in body
    assert b'"record_version"' in p.canonical_json(include_volatile=True)


def test_content_hash_stable_across_key_and_list_order() -> None:
    a = individual()
    b = dict(reversed(list(copy.deepcopy(a).items())))
    b["identifiers"] = list(reversed(b["identifiers"]))
    b["contact_points"] = list(reversed(b["contact_points"]))
    b["name"] = dict(reversed(list(b["name"].items())))
    pa, pb = parse_party(a), parse_party(b)
    assert pa.content_hash() == pb.content_hash()
    assert len(pa.content_hash()) == 64


def test_content_hash_ignores_volatile_and_sees_changes() -> None:
    base = parse_party(individual()).content_hash()
    assert parse_party(individual(version=7, updated_at="2030-01-01T00:00:00Z",
                                  synced_at={"zoho": "2030-01-01T00:00:00Z"})).content_hash() == base
    changed = individual()
    changed["contact_points"][1]["value"] = "other@example.com"
    assert parse_party(changed).content_hash() != base
    assert parse_party(individual(aum={"amount": "823456.71"})).content_hash() != base
    assert parse_party(individual(deleted_at="2026-01-01T00:00:00Z")).content_hash() != base
    # equal amounts written differently hash the same
    assert parse_party(individual(aum={"amount": "823456.700", "as_of": "2026-10-31"})).content_hash() == base


def test_content_hash_keyed() -> None:
    import hashlib
    import hmac

    p = parse_party(individual())
    key = b"k" * 32
    assert p.content_hash(key) == hmac.new(key, p.canonical_json(), hashlib.sha256).hexdigest()
    assert p.content_hash(key) != p.content_hash() != p.content_hash(b"other")
    # the engine hashes the canonical dict it already holds: the same value
    from crmbridge.canonical.model import hash_canonical
    assert hash_canonical(p.canonical_dict(), key) == p.content_hash(key)
    assert hash_canonical(p.canonical_dict()) == p.content_hash()
    assert hash_canonical(p.canonical_dict(include_volatile=True), key) != p.content_hash(key)
    assert p.content_hash() == hashlib.sha256(p.canonical_json()).hexdigest()


def test_identifier_model_directly() -> None:
    ident = Identifier(scheme="CN_RIC", value="110105491231002")  # type: ignore[arg-type]
    assert ident.value == RIC and ident.flags == ("legacy15",)
    with pytest.raises(pydantic.ValidationError) as err:
        Identifier(scheme="CN_RIC", value="110105194912310021")  # type: ignore[arg-type]
    assert err.value.errors()[0]["type"] == "invalid_checksum"
    assert "110105194912310021" not in str(err.value)


def test_parse_party_accepts_a_party_and_reports_organisation_paths() -> None:
    p = parse_party(individual())
    assert parse_party(p) == p
    data = organisation()
    data["legal_representative"]["identifier"]["value"] = "360426199101010072"
    err = rejected(data)
    assert (err.code, err.field) == ("invalid_checksum", "legal_representative.identifier.value")
    assert "360426199101010072" not in str(err)
