"""Identifier validation: real valid/invalid numbers per scheme, python-stdnum traps, legacy 15-digit, full-width."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.iso7064 import mod_11_2

from crmbridge.canonical.gb2260 import area_code, is_area_code
from crmbridge.canonical.identifiers import (
    IdentifierScheme,
    NormalisedId,
    is_valid_identifier,
    normalise_identifier,
    org_code_check_digit,
    ric_birth_date,
    ric_check_digit,
    ric_gender,
    uscc_check_digit,
)
from crmbridge.core.errors import ValidationError

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _code(scheme: str, raw: str) -> str | None:
    try:
        normalise_identifier(scheme, raw)
    except ValidationError as exc:
        return exc.code
    return None


# ------------------------------------------------------------------------------------------------ RIC


def test_standard_example_ric_is_valid() -> None:
    # GB 11643-1999 example; S = 167, 167 mod 11 = 2 -> X (docs/canonical.md §5)
    assert ric_check_digit("11010519491231002") == "X"
    assert normalise_identifier("CN_RIC", "11010519491231002X") == NormalisedId("11010519491231002X", ())


def test_stdnum_doc_example_ric_is_valid() -> None:
    assert normalise_identifier("CN_RIC", "360426199101010071").value == "360426199101010071"


def test_bad_checksum_ric_is_rejected_with_masked_message() -> None:
    with pytest.raises(ValidationError) as err:
        normalise_identifier("CN_RIC", "110105194912310021")
    assert err.value.code == "invalid_checksum"
    assert err.value.field == "identifiers[].value"
    assert "110105194912310021" not in str(err.value)
    assert "19491231" not in str(err.value)  # the birth date is never shown
    assert "1*************0021" in str(err.value)


def test_lowercase_x_is_upper_cased() -> None:
    assert normalise_identifier("CN_RIC", "11010519491231002x").value == "11010519491231002X"


def test_spaces_and_fullwidth_characters_are_normalised() -> None:
    assert normalise_identifier("CN_RIC", "１１０１０５１９４９１２３１００２Ｘ").value == "11010519491231002X"
    assert normalise_identifier("CN_RIC", " 110105 19491231 002x\u3000").value == "11010519491231002X"
    assert normalise_identifier("CN_USCC", "９１１１００００６０００３７３４１ｌ").value == "91110000600037341L"


def _ric(area: str, born: str, seq: str = "001") -> str:
    body = f"{area}{born}{seq}"
    return body + ric_check_digit(body)


@pytest.mark.parametrize("area", ["000000", "990101", "999999", "110199", "123456", "830000"])
def test_area_code_that_never_was_a_gb2260_division_is_refused(area: str) -> None:
    # these numbers have a correct check character and a real birth date: only the area code is impossible.
    # 110199 is the city-level code python-stdnum raised KeyError('county') for; 830000 is a residence-permit code,
    # not a GB/T 2260 division, and is only accepted under HMT_RESIDENCE_PERMIT (flag hmt_area on CN_RIC).
    number = _ric(area, "19900101")
    if area == "830000":
        assert normalise_identifier("CN_RIC", number).flags == ("hmt_area",)
        return
    with pytest.raises(ValidationError) as err:
        normalise_identifier("CN_RIC", number)
    assert err.value.code == "invalid_area_code"
    assert err.value.field == "identifiers[].value"
    assert number not in str(err.value) and "19900101" not in str(err.value)  # masked, birth date hidden
    assert _code("CN_TEMP_RIC", number) == "invalid_area_code"


def test_legacy_15_digit_number_gets_the_same_area_check() -> None:
    assert _code("CN_RIC", "000000900101001") == "invalid_area_code"
    assert _code("CN_RIC", "990101900101001") == "invalid_area_code"
    with pytest.raises(ValidationError) as err:
        normalise_identifier("CN_RIC", "999999900101001")
    assert "999999900101001" not in str(err.value) and "900101" not in str(err.value)
    # a 15-digit number under a county abolished in 1982 (昌平县 110201): historical code, accepted
    assert normalise_identifier("CN_RIC", "110201600101001").flags == ("legacy15",)


def test_bad_checksum_is_reported_before_the_area_code() -> None:
    number = _ric("000000", "19900101")
    wrong = next(c for c in "0123456789X" if c != number[17])
    assert _code("CN_RIC", number[:17] + wrong) == "invalid_checksum"


@pytest.mark.parametrize(("area", "born"), [
    ("110105", "19491231"),   # 北京市朝阳区, current
    ("360426", "19910101"),   # 德安县, current
    ("440304", "20050615"),   # 深圳市福田区, current
    ("110100", "19860101"),   # 北京市市辖区: a city-level code is a GB/T 2260 division too
])
def test_current_area_codes_are_accepted(area: str, born: str) -> None:
    assert normalise_identifier("CN_RIC", _ric(area, born)).flags == ()
    assert is_area_code(area) and area_code(area).current  # type: ignore[union-attr]


@pytest.mark.parametrize(("area", "born", "name"), [
    ("110104", "19800101", "宣武区"),   # merged into 西城区 in 2010
    ("120107", "19750101", "塘沽区"),   # merged into 滨海新区 in 2009
    ("110221", "19700101", "昌平县"),   # county 1982-1999, became 昌平区: a 1970 birth registered in the 1980s
    ("110201", "19600101", "昌平县"),   # county code of the 1980 edition, abolished 1982
])
def test_historical_only_area_codes_are_accepted(area: str, born: str, name: str) -> None:
    # the number keeps the code of its issuing year, whatever the birth year (python-stdnum wants the birth year)
    entry = area_code(area)
    assert entry is not None and not entry.current and entry.name == name
    result = normalise_identifier("CN_RIC", _ric(area, born))
    assert result.flags == ()


def test_code_abolished_before_the_birth_year_is_a_flag_not_a_rejection() -> None:
    # 110201 was abolished in 1982; a 1990 birth under it is odd (the office kept the old code?) but not refused
    assert normalise_identifier("CN_RIC", _ric("110201", "19900101")).flags == ("area_retired_before_birth",)


def test_area_check_does_not_follow_the_birth_year() -> None:
    # 360426 (德安县) is in GB/T 2260 from 1983: a 1949 birth got its number later, under that code
    assert normalise_identifier("CN_RIC", _ric("360426", "19490101")).flags == ()


def _china_today() -> dt.date:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()


@pytest.mark.parametrize("birth", ["19490230", "19491301", "19490000"])
def test_impossible_birth_dates_are_rejected(birth: str) -> None:
    with pytest.raises(ValidationError) as err:
        normalise_identifier("CN_RIC", _ric("110105", birth, "002"))
    assert err.value.code == "invalid_birth_date"


@pytest.mark.parametrize("days", [1, 400])
def test_future_birth_date_is_rejected_with_its_own_code(days: int) -> None:
    future = _china_today() + dt.timedelta(days=days)
    assert _code("CN_RIC", _ric("110105", f"{future:%Y%m%d}", "002")) == "birth_date_in_future"


def test_birth_today_in_china_is_accepted() -> None:
    assert normalise_identifier("CN_RIC", _ric("110105", f"{_china_today():%Y%m%d}")).flags == ()


@pytest.mark.parametrize("born", ["18700101", "18991231"])
def test_age_over_150_is_refused_and_below_is_not(born: str) -> None:
    today = _china_today()
    number = _ric("110105", born, "002")
    if dt.date(int(born[:4]), int(born[4:6]), int(born[6:])) < today.replace(year=today.year - 150):
        assert _code("CN_RIC", number) == "implausible_age"
    else:
        assert normalise_identifier("CN_RIC", number).flags == ()


def test_age_limit_is_150_years_to_the_day() -> None:
    today = _china_today()
    if today.month == 2 and today.day == 29:  # pragma: no cover - leap day
        today -= dt.timedelta(days=1)
    limit = today.replace(year=today.year - 150)
    assert _code("CN_RIC", _ric("110105", f"{limit - dt.timedelta(days=1):%Y%m%d}")) == "implausible_age"
    assert _code("CN_RIC", _ric("110105", f"{limit:%Y%m%d}")) is None


@pytest.mark.parametrize("raw", ["11010519491231002", "1101051949123100211", "11010519491231002Y",
                                 "1101051949123100XX", "ABCDEFGHIJKLMNOPQR", "1101"])
def test_malformed_rics_are_invalid_format(raw: str) -> None:
    assert _code("CN_RIC", raw) == "invalid_format"


def test_legacy_15_digit_ric_is_converted_and_flagged() -> None:
    result = normalise_identifier("CN_RIC", "110105491231002")
    assert result == NormalisedId("11010519491231002X", ("legacy15",))


def test_legacy_15_digit_with_impossible_date_is_rejected() -> None:
    assert _code("CN_RIC", "110105490230002") == "invalid_birth_date"


def test_ric_helpers() -> None:
    assert ric_birth_date("11010519491231002X") == dt.date(1949, 12, 31)
    assert ric_gender("11010519491231002X") == "FEMALE"  # sequence 002: even
    assert ric_gender("360426199101010071") == "MALE"    # sequence 007: odd
    assert ric_gender("110105491231003") == "MALE"       # legacy 15: sequence is the last digit
    with pytest.raises(ValueError):
        ric_check_digit("1101051949123100")


def test_temp_ric_uses_ric_rules() -> None:
    assert normalise_identifier("CN_TEMP_RIC", "11010519491231002X").value == "11010519491231002X"
    assert _code("CN_TEMP_RIC", "110105194912310021") == "invalid_checksum"


def test_hmt_residence_permit() -> None:
    for area in ("810000", "820000", "830000"):
        body = f"{area}19900101001"
        assert normalise_identifier("HMT_RESIDENCE_PERMIT", body + ric_check_digit(body)).flags == ()
    body = "11010519900101001"
    assert _code("HMT_RESIDENCE_PERMIT", body + ric_check_digit(body)) == "invalid_area_code"
    assert _code("HMT_RESIDENCE_PERMIT", "810000199001010010") == "invalid_checksum"


@settings(deadline=None, database=None)
@given(st.from_regex(r"\A[0-9]{17}\Z"))
def test_ric_check_digit_matches_iso7064(body: str) -> None:
    check = ric_check_digit(body)
    assert check == mod_11_2.calc_check_digit(body)  # independent implementation (python-stdnum)
    wrong = next(c for c in "0123456789X" if c != check)
    assert _code("CN_RIC", body + wrong) == "invalid_checksum"  # checksum is checked before the date


@settings(deadline=None, database=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date.today()), st.integers(0, 999))
def test_ric_round_trip(born: dt.date, seq: int) -> None:
    body = f"110105{born:%Y%m%d}{seq:03d}"
    number = body + ric_check_digit(body)
    result = normalise_identifier("CN_RIC", number.lower())
    assert result.value == number
    assert ric_birth_date(result.value) == born
    assert ric_gender(result.value) == ("MALE" if seq % 2 else "FEMALE")


# ------------------------------------------------------------------------------------------------ USCC


def test_uscc_examples() -> None:
    # 91110000600037341L: sum 538, 538 mod 31 = 11, 31 - 11 = 20 -> L (docs/canonical.md §5)
    assert uscc_check_digit("91110000600037341") == "L"
    assert normalise_identifier("CN_USCC", "91110000600037341L").value == "91110000600037341L"
    assert normalise_identifier("CN_USCC", "911000001000013428").value == "911000001000013428"  # Bank of China


def test_uscc_bad_check_is_rejected_masked() -> None:
    with pytest.raises(ValidationError) as err:
        normalise_identifier("CN_USCC", "91110000600037341M")
    assert err.value.code == "invalid_checksum"
    assert "91110000600037341M" not in str(err.value)


@pytest.mark.parametrize("prefix", ["N2", "Y1", "A1", "51"])
def test_letter_prefixed_uscc_is_valid(prefix: str) -> None:
    # python-stdnum's uscc.validate rejects these (it wants 8 leading digits); our own check accepts them
    from stdnum.cn import uscc as stdnum_uscc
    from stdnum.exceptions import ValidationError as StdnumError

    body = f"{prefix}110105MA01ABCD3"
    code = body + uscc_check_digit(body)
    assert normalise_identifier("CN_USCC", code).value == code
    if not prefix.isdigit():
        with pytest.raises(StdnumError):
            stdnum_uscc.validate(code)


@pytest.mark.parametrize("raw", ["91110000600037341", "9111000060003734IL", "911100006000373410L",
                                 "91AB0000600037341L", "O1110000600037341L"])
def test_malformed_uscc(raw: str) -> None:
    assert _code("CN_USCC", raw) == "invalid_format"


@settings(deadline=None, database=None)
@given(st.text(alphabet=USCC_ALPHABET, min_size=2, max_size=2), st.from_regex(r"\A[0-9]{6}\Z"),
       st.text(alphabet=USCC_ALPHABET, min_size=9, max_size=9))
def test_uscc_check_digit_round_trip(head: str, admin: str, org: str) -> None:
    body = head + admin + org
    code = body + uscc_check_digit(body)
    assert normalise_identifier("CN_USCC", code).value == code
    wrong = next(c for c in USCC_ALPHABET if c != code[-1])
    assert _code("CN_USCC", body + wrong) == "invalid_checksum"


# ------------------------------------------------------------------------------------------------ other schemes


def test_org_code() -> None:
    # the organisation codes embedded in the two real USCCs above
    assert org_code_check_digit("60003734") == "1"
    assert org_code_check_digit("10000134") == "2"
    assert normalise_identifier("ORG_CODE", "60003734-1").value == "600037341"
    assert _code("ORG_CODE", "60003734-2") == "invalid_checksum"
    assert _code("ORG_CODE", "6000373") == "invalid_format"


def test_business_licence() -> None:
    assert normalise_identifier("BUSINESS_LICENCE", "911000001000013428").flags == ()
    assert normalise_identifier("BUSINESS_LICENCE", "110000000012345").flags == ("legacy_regno",)
    assert _code("BUSINESS_LICENCE", "91110000600037341M") == "invalid_checksum"
    assert _code("BUSINESS_LICENCE", "1100000") == "invalid_format"


@pytest.mark.parametrize(("scheme", "good", "bad"), [
    ("PASSPORT", "E12345678", "E123"),
    ("PASSPORT", "EA1234567", "E-123456"),
    ("HK_MO_PERMIT", "H12345678", "C12345678"),
    ("HK_MO_PERMIT", "M1234567801", "H1234567"),
    ("TW_PERMIT", "12345678", "1234567"),
    ("TW_PERMIT", "1234567890(B)", "A1234567"),
    ("FOREIGN_PR_ID", "USA110085061502", "US1100850615"),
    ("FOREIGN_PR_ID", "911001198001010012", "811001198001010012"),
    ("CIF", "8000000123", "CIF 12/3"),
])
def test_format_only_schemes(scheme: str, good: str, bad: str) -> None:
    assert is_valid_identifier(scheme, good)
    assert _code(scheme, bad) == "invalid_format"


def test_passport_is_upper_cased_and_compacted() -> None:
    assert normalise_identifier("PASSPORT", " e 1234 5678 ").value == "E12345678"


def test_unknown_scheme_and_empty_value() -> None:
    assert _code("SSN", "123") == "unknown_scheme"
    assert _code("CN_RIC", "   ") == "empty_value"
    assert _code("CN_RIC", 110105194912310021) == "invalid_format"  # type: ignore[arg-type]


def test_every_scheme_has_a_rule() -> None:
    for scheme in IdentifierScheme:
        # a rule exists: garbage is refused with a format/other code, never a KeyError
        assert _code(scheme.value, "!!") in ("invalid_format",)


def test_legacy_15_digit_errors_hide_every_birth_date_digit() -> None:
    with pytest.raises(ValidationError) as err:
        normalise_identifier("CN_RIC", "110105490230002")
    assert "490230" not in str(err.value) and "0230002" not in str(err.value) and "30002" not in str(err.value)
