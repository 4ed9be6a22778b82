"""Every named transform of the mapping language, both directions and bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from crmbridge.canonical.transforms import (
    TRANSFORMS,
    CodeTable,
    TransformContext,
    TransformError,
    build_transform,
    parse_transform_spec,
    run_chain,
    transform_names,
)
from crmbridge.core.errors import MappingError

CTX = TransformContext(code_tables={
    "seg": CodeTable(map={"Mass": "MASS", "VIP": "WEALTH", "Wealth": "WEALTH"}, out={"WEALTH": "Wealth"}),
    "yn": CodeTable(map={"Y": "GRANTED", "N": "DENIED"}),
})


def fwd(spec, value):
    return build_transform(spec, code_tables=CTX.code_tables).to_canonical(value, CTX)


def back(spec, value):
    return build_transform(spec, code_tables=CTX.code_tables).to_vendor(value, CTX)


# ---------------------------------------------------------------------------------------------- registry and specs

def test_registry_names_are_the_documented_set():
    assert set(transform_names()) >= {
        "trim", "upper", "lower", "fullwidth_to_halfwidth", "phone_e164", "email", "date", "datetime", "epoch_ms",
        "date_array", "decimal", "money", "bool", "split_name", "join_name", "mask", "aum_band", "default", "code",
        "first", "drop_masked"}
    assert transform_names() == sorted(TRANSFORMS)


def test_unknown_transform_lists_known_names():
    with pytest.raises(MappingError) as exc:
        build_transform("trimm")
    assert "unknown transform 'trimm'" in str(exc.value)
    assert "trim" in str(exc.value) and "phone_e164" in str(exc.value)


def test_spec_forms():
    assert parse_transform_spec("trim") == ("trim", {})
    assert parse_transform_spec("date:%Y%m%d") == ("date", {"format": "%Y%m%d"})
    assert parse_transform_spec({"name": "mask", "kind": "ric"}) == ("mask", {"kind": "ric"})
    with pytest.raises(MappingError, match="no short form"):
        parse_transform_spec("trim:x")
    with pytest.raises(MappingError, match="needs a 'name'"):
        parse_transform_spec({"kind": "ric"})
    with pytest.raises(MappingError):
        parse_transform_spec(42)


def test_bad_parameters_are_mapping_errors():
    with pytest.raises(MappingError, match="transform 'date'"):
        build_transform({"name": "date", "fromat": "%Y"})
    with pytest.raises(MappingError, match="unknown mask kind"):
        build_transform("mask:nope")
    with pytest.raises(MappingError, match="time zone"):
        build_transform({"name": "datetime", "offset": "Mars/Base"})
    with pytest.raises(MappingError, match="out direction only"):
        build_transform("mask:ric", direction="in")
    with pytest.raises(MappingError, match="unknown code table"):
        build_transform("code:nope", code_tables=CTX.code_tables)


def test_chain_passes_none_except_to_default():
    chain = [(build_transform("trim"), "in"), (build_transform("upper"), "in")]
    assert run_chain(chain, None, CTX) is None
    assert run_chain([*chain, (build_transform("default:X"), "in")], "   ", CTX) == "X"
    assert run_chain(chain, "  ab ", CTX) == "AB"


# ---------------------------------------------------------------------------------------------- strings

def test_trim_upper_lower_fullwidth():
    assert fwd("trim", "\u3000 张三 \t") == "张三"
    assert fwd("trim", "   ") is None
    assert back("trim", " x ") == "x"
    assert fwd("upper", "x") == back("upper", "x") == "X"
    assert fwd("lower", "X") == back("lower", "X") == "x"
    assert fwd("fullwidth_to_halfwidth", "９１１１００００６０００３７３４１Ｌ\u3000＠") == "91110000600037341L @"
    assert back("fullwidth_to_halfwidth", "９") == "９"
    assert fwd("upper", 5) == 5  # not a string: untouched


def test_phone_e164_in_and_out():
    for raw in ("13812345678", "+86 138 1234 5678", "008613812345678", "１３８１２３４５６７８", "138-1234-5678"):
        assert fwd("phone_e164", raw) == "+8613812345678"
    assert fwd("phone_e164", "010-12345678") == "+861012345678"
    assert back("phone_e164", "+8613812345678") == "+8613812345678"
    assert back({"name": "phone_e164", "format": "digits"}, "+8613812345678") == "13812345678"
    assert back({"name": "phone_e164", "format": "national"}, "+861012345678") == "010 1234 5678"
    assert back({"name": "phone_e164", "format": "international"}, "+8613812345678") == "+86 138 1234 5678"
    assert fwd("phone_e164:US", "(201) 555-0123") == "+12015550123"


@pytest.mark.parametrize("bad", ["12345678901", "95566", "abc", "+86"])
def test_phone_e164_rejects_invalid_numbers_without_echoing_them(bad):
    with pytest.raises(TransformError) as exc:
        fwd("phone_e164", bad)
    assert bad not in str(exc.value)


def test_phone_mobile_only():
    with pytest.raises(TransformError, match="not a mobile"):
        fwd({"name": "phone_e164", "mobile_only": True}, "010-12345678")
    assert fwd({"name": "phone_e164", "mobile_only": True}, "13812345678") == "+8613812345678"


def test_email():
    assert fwd("email", " Zhang.San@Example.COM ") == "zhang.san@example.com"
    assert fwd("email", "ｚ＠ｅｘａｍｐｌｅ．ｃｏｍ") == "z@example.com"
    assert back("email", "a@b.cn") == "a@b.cn"
    for bad in ("zhang", "a@b", "a b@c.com", "@example.com"):
        with pytest.raises(TransformError):
            fwd("email", bad)


# ---------------------------------------------------------------------------------------------- dates and times

def test_date_formats():
    assert fwd("date", "1949-12-31") == date(1949, 12, 31)
    assert fwd("date:%Y%m%d", "19491231") == date(1949, 12, 31)
    assert fwd({"name": "date", "format": "%Y%m%d", "formats": ["%Y-%m-%d"]}, "1949-12-31") == date(1949, 12, 31)
    assert back("date:%Y%m%d", date(1949, 12, 31)) == "19491231"
    assert back("date", "1949-12-31") == "1949-12-31"
    assert fwd("date", datetime(2020, 1, 2, 3, 4, tzinfo=UTC)) == date(2020, 1, 2)
    for bad in ("1949-02-30", "31/12/1949", "yesterday"):
        with pytest.raises(TransformError, match="not a date"):
            fwd("date", bad)
    with pytest.raises(TransformError):
        back("date", 12)


def test_datetime_offsets_to_aware_utc():
    got = fwd("datetime", "2019-03-22T11:10:55+05:30")
    assert got == datetime(2019, 3, 22, 5, 40, 55, tzinfo=UTC) and got.tzinfo is UTC
    assert fwd("datetime", "2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(TransformError, match="without a UTC offset"):
        fwd("datetime", "2024-01-01T08:00:00")
    assert fwd({"name": "datetime", "assume_tz": "Asia/Shanghai"}, "2024-01-01T08:00:00") == datetime(
        2024, 1, 1, tzinfo=UTC)
    assert fwd({"name": "datetime", "format": "%y%m%d%H%M", "assume_tz": "+08:00"}, "2401010800") == datetime(
        2024, 1, 1, tzinfo=UTC)
    with pytest.raises(TransformError, match="not a date-time"):
        fwd("datetime", "not a time")


def test_datetime_out_uses_offset_to_the_second():
    dt = datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert back("datetime:+08:00", dt) == "2024-01-01T08:00:00+08:00"
    assert back("datetime", dt) == "2024-01-01T00:00:00+00:00"
    with pytest.raises(TransformError):
        back("datetime", datetime(2024, 1, 1))  # naive


def test_epoch_ms():
    got = fwd("epoch_ms", 1610699820445)
    assert got == datetime(2021, 1, 15, 8, 37, 0, 445000, tzinfo=UTC)
    assert fwd("epoch_ms", "1610699820445") == got
    assert back("epoch_ms", got) == 1610699820445
    assert back({"name": "epoch_ms", "as_string": True}, got) == "1610699820445"
    assert back("epoch_ms", got.astimezone(timezone(timedelta(hours=8)))) == 1610699820445
    for bad in ("soon", True, [1]):
        with pytest.raises(TransformError):
            fwd("epoch_ms", bad)


def test_date_array():
    assert fwd("date_array", [2013, 1, 1]) == date(2013, 1, 1)
    assert back("date_array", date(1990, 5, 17)) == [1990, 5, 17]
    for bad in ([2013, 2, 30], [2013, 1], "2013-01-01", [2013, "1", 1]):
        with pytest.raises(TransformError):
            fwd("date_array", bad)


# ---------------------------------------------------------------------------------------------- numbers, bools

def test_decimal_and_money():
    assert fwd("decimal", "100.01") == Decimal("100.01")
    assert fwd("decimal", 3) == Decimal(3)
    assert fwd("decimal:2", "1.005") == Decimal("1.01")
    assert back({"name": "decimal", "output": "string"}, Decimal("100.01")) == "100.01"
    assert back("decimal", Decimal("100.50")) == 100.5
    assert back("decimal", Decimal("7")) == 7
    assert fwd("money", "¥1,234.5") == Decimal("1234.50")
    assert fwd("money", "1234.50 CNY") == Decimal("1234.50")
    assert fwd("money", "1,234元") == Decimal("1234.00")
    for bad in ("abc", "NaN", "Infinity", True, [1]):
        with pytest.raises(TransformError):
            fwd("decimal", bad)


def test_bool():
    for t in (True, "true", "Y", "y", "1", 1, "是", "yes"):
        assert fwd("bool", t) is True
    for f in (False, "false", "N", "0", 0, "否"):
        assert fwd("bool", f) is False
    yn = {"name": "bool", "true": "Y", "false": "N"}
    assert back(yn, True) == "Y" and back(yn, False) == "N"
    assert fwd(yn, "y") is True
    with pytest.raises(TransformError):
        fwd("bool", "maybe")
    with pytest.raises(TransformError):
        fwd("bool", 2)


def test_first():
    assert fwd("first", ["FSUID_1", "FSUID_2"]) == "FSUID_1"
    assert fwd("first", []) is None
    assert back("first", "FSUID_1") == ["FSUID_1"]


# ---------------------------------------------------------------------------------------------- names

def test_split_and_join_names():
    assert fwd("split_name:family", "张三") == "张"
    assert fwd("split_name:given", "张三丰") == "三丰"
    assert fwd("split_name:family", "欧阳娜娜") == "欧阳"
    assert fwd("split_name:given", "欧阳娜娜") == "娜娜"
    assert fwd("split_name:family", "ZHANG San") == "ZHANG"
    assert fwd("split_name:family", "San Zhang") == "Zhang"
    assert back("split_name:family", "张三") == "张三"
    assert fwd("join_name", ["张", "三"]) == "张三"
    assert fwd("join_name", ["张三", None]) == "张三"
    assert fwd("join_name", ["Zhang", "San"]) == "San Zhang"
    assert fwd("join_name", [None, None]) is None
    assert back("join_name", "欧阳娜娜") == ["欧阳", "娜娜"]
    with pytest.raises(TransformError):
        fwd("join_name", "张三")
    with pytest.raises(MappingError):
        build_transform("split_name:middle")


# ---------------------------------------------------------------------------------------------- minimisation etc.

def test_mask_out_only():
    assert back("mask:ric", "11010519491231002X") == "1*************002X"
    assert back("mask:mobile", "13812345678") == "138****5678"
    assert back("mask:name", "欧阳娜娜") == "欧阳**"
    with pytest.raises(TransformError):
        fwd("mask:ric", "11010519491231002X")


def test_aum_band_defaults_follow_the_model():
    from crmbridge.canonical.model import aum_band

    for amount in ("0", "49999.99", "50000", "499999", "500000", "5999999", "6000000", "29999999", "30000000"):
        assert fwd("aum_band", amount) == back("aum_band", Decimal(amount)) == aum_band(Decimal(amount))
    custom = {"name": "aum_band", "bands": [{"below": 100, "code": "S"}, {"below": None, "code": "L"}]}
    assert fwd(custom, 99) == "S" and fwd(custom, 100) == "L"
    with pytest.raises(TransformError, match="negative"):
        fwd("aum_band", "-1")
    with pytest.raises(MappingError, match="below: null"):
        build_transform({"name": "aum_band", "bands": [{"below": 100, "code": "S"}]})
    with pytest.raises(MappingError, match="ascending"):
        build_transform({"name": "aum_band", "bands": [{"below": 100, "code": "S"}, {"below": 50, "code": "T"},
                                                       {"below": None, "code": "U"}]})


def test_default():
    assert fwd("default:CN", None) == "CN"
    assert fwd("default:CN", "") == "CN"
    assert fwd("default:CN", "HK") == "HK"
    assert back({"name": "default", "value": 0}, None) == 0


def test_code_lookup_both_directions():
    assert fwd("code:seg", "VIP") == "WEALTH"
    assert back("code:seg", "WEALTH") == "Wealth"   # 'out' settles the ambiguity
    assert back("code:seg", "MASS") == "Mass"
    assert fwd("code:yn", "Y") == "GRANTED"
    with pytest.raises(TransformError, match="code table 'seg'") as exc:
        fwd("code:seg", "Gold")
    assert "Gold" not in str(exc.value)   # the engine adds the (masked) value, not the transform
    with pytest.raises(TransformError, match="out direction"):
        back("code:seg", "PRIVATE")


def test_code_table_stringifies_yaml_scalars():
    t = CodeTable(map={True: "GRANTED", False: "DENIED"}, vendor_values=[True, False])
    assert t.map == {"true": "GRANTED", "false": "DENIED"} and t.vendor_values == ["true", "false"]
    assert t.to_canonical(True) == "GRANTED" and t.to_vendor("DENIED") == "false"
    assert CodeTable(map={1: "X"}).to_canonical(1) == "X"
    inv, ambiguous = CodeTable(map={"A": "X", "B": "X"}).inverse()
    assert ambiguous == {"X"}


def test_drop_masked():
    assert fwd("drop_masked", "张*") is None
    assert fwd("drop_masked", "+86138****5678") is None
    assert fwd("drop_masked", "张＊") is None
    assert fwd("drop_masked", ["张*", "三"]) is None
    assert fwd("drop_masked", "张三") == "张三"
    assert fwd({"name": "drop_masked", "marker": "#"}, "a#b") is None
    assert back("drop_masked", "张*") == "张*"
