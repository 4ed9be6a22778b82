"""Phone and e-mail normalisation (docs/canonical.md §6 examples)."""

from __future__ import annotations

import pytest

from crmbridge.canonical.phones import PhoneKind, normalise_email, normalise_phone
from crmbridge.core.errors import ValidationError


@pytest.mark.parametrize("raw", ["13812345678", "+86 138 1234 5678", "008613812345678", "138-1234-5678",
                                 "１３８１２３４５６７８", " +86-13812345678 "])
def test_mobile_forms_give_one_e164(raw: str) -> None:
    phone = normalise_phone(raw)
    assert phone.e164 == "+8613812345678"
    assert phone.kind is PhoneKind.MOBILE
    assert phone.region == "CN"
    assert phone.is_mobile


def test_beijing_landline() -> None:
    phone = normalise_phone("010-12345678")
    assert phone.e164 == "+861012345678"
    assert phone.kind is PhoneKind.LANDLINE
    assert not phone.is_mobile


def test_400_number_is_shared_cost() -> None:
    assert normalise_phone("400-812-3123").kind is PhoneKind.SHARED_COST


def test_foreign_number_with_country_code() -> None:
    phone = normalise_phone("+852 9123 4567")
    assert phone.e164 == "+85291234567"
    assert phone.region == "HK"


@pytest.mark.parametrize("raw", ["12345678901", "95566", "1381234567", "138123456789"])
def test_possible_but_invalid_numbers_are_refused(raw: str) -> None:
    # 12345678901 is "possible" but not valid: is_valid_number is what counts
    import phonenumbers

    if raw == "12345678901":
        assert phonenumbers.is_possible_number(phonenumbers.parse(raw, "CN"))
    with pytest.raises(ValidationError) as err:
        normalise_phone(raw)
    assert err.value.code == "invalid_phone"
    assert raw not in str(err.value)  # masked


@pytest.mark.parametrize("raw", ["n/a", "", "   ", "电话"])
def test_unparsable_phones(raw: str) -> None:
    with pytest.raises(ValidationError) as err:
        normalise_phone(raw)
    assert err.value.code == "unparsable_phone"


def test_error_message_is_masked_and_located() -> None:
    with pytest.raises(ValidationError) as err:
        normalise_phone("13812345", field="contact_points[2].value")
    assert err.value.field == "contact_points[2].value"
    assert "13812345" not in err.value.message


def test_email_lower_cased() -> None:
    assert normalise_email("  Zhang.San@Example.COM ") == "zhang.san@example.com"
    assert normalise_email("ｚｈａｎｇ@example.com") == "zhang@example.com"


@pytest.mark.parametrize("raw", ["zhang", "zhang@", "@example.com", "zhang@example", "zhang san@example.com",
                                 "zhang@@example.com", "zhang@exa_mple.com"])
def test_invalid_emails(raw: str) -> None:
    with pytest.raises(ValidationError) as err:
        normalise_email(raw)
    assert err.value.code == "invalid_email"
    if "@" in raw and raw.split("@")[0]:
        assert raw not in err.value.message
