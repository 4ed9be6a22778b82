"""Masking: one rule per value kind; birth dates, street detail and most digits never shown."""

from __future__ import annotations

import pytest

from crmbridge.canonical.masking import MASK_KINDS, mask


@pytest.mark.parametrize(("kind", "value", "expected"), [
    ("ric", "11010519491231002X", "1*************002X"),
    ("ric", "11010519491231002x ", "1*************002X"),
    ("ric", "110105491231002", "1***********002"),       # legacy 15 digits: no birth-date digit shown
    ("uscc", "91110000600037341L", "91************341L"),
    ("mobile", "+8613812345678", "+86138****5678"),
    ("mobile", "13812345678", "138****5678"),
    ("email", "zhang@example.com", "z***@example.com"),
    ("name", "张三", "张*"),
    ("name", "欧阳娜娜", "欧阳**"),
    ("name", "ZHANG San", "Z**** S**"),
    ("address", "北京市朝阳区建国门外大街1号", "北京市朝阳区****"),
    ("address", "上海市浦东新区世纪大道100号", "上海市浦东新区****"),
    ("account", "6228480402564890018", "622848*********0018"),
    ("amount", "1234567.89", "***"),
])
def test_mask_rules(kind: str, value: str, expected: str) -> None:
    assert mask(kind, value) == expected


def test_birth_date_never_visible_in_a_masked_ric() -> None:
    for value in ("11010519491231002X", "110105491231002"):
        masked = mask("ric", value)
        assert "19491231" not in masked and "491231" not in masked


def test_unknown_kind_is_an_error_and_none_is_empty() -> None:
    with pytest.raises(ValueError, match="unknown mask kind"):
        mask("nope", "x")
    assert mask("ric", None) == ""


@pytest.mark.parametrize("kind", sorted(MASK_KINDS))
def test_every_kind_hides_something(kind: str) -> None:
    value = "13812345678901234"
    assert mask(kind, value) != value
