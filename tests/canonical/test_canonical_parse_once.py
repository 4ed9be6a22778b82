"""Work done once per record (issue 19) without weaker checks: the phone the phone_e164 transform parsed is not
parsed again by the model, C3 data is found per node shape with the same answers, and an invalid identifier or
phone is still refused with a clear, masked error."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical import phones
from crmbridge.canonical.c3 import _carries_data, c3_rule, find_c3
from crmbridge.canonical.mapping import load_mapping
from crmbridge.canonical.phones import normalise_phone
from crmbridge.canonical.transforms import TransformContext, TransformError, build_transform
from crmbridge.core.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
CTX = TransformContext(code_tables={})
NUMBERS = ["13812345678", "+86 138 1234 5678", "１３８１２３４５６７８", "010-12345678", "021 6437 1234",
           "400-812-3123", "+852 9123 4567", "+852 2123 4567", "0085291234567", "+1 212 555 0100",
           "+44 20 7946 0958", "+39 06 6982 0000", "17012345678"]


@pytest.mark.parametrize("raw", NUMBERS)
def test_the_phone_the_transform_parsed_is_what_a_fresh_parse_gives(raw: str) -> None:
    e164 = build_transform("phone_e164").to_canonical(raw, CTX)
    assert e164 in phones._PARSED           # remembered by the transform
    reused = normalise_phone(e164)
    phones._PARSED.clear()
    fresh = normalise_phone(e164)            # parsed from scratch
    assert reused == fresh


def test_an_invalid_phone_is_refused_whatever_was_parsed_before() -> None:
    for raw in NUMBERS:
        build_transform("phone_e164").to_canonical(raw, CTX)
    for bad in ("12345678901", "+8612345678901", "95566"):
        with pytest.raises(ValidationError) as exc:
            normalise_phone(bad)
        assert exc.value.code in ("invalid_phone", "unparsable_phone")
        assert bad[-8:] not in str(exc.value)   # masked


def test_the_remembered_phones_stay_bounded() -> None:
    t = build_transform("phone_e164")
    for i in range(phones._PARSED_MAX + 50):
        t.to_canonical(f"138{i:08d}", CTX)
    assert len(phones._PARSED) <= phones._PARSED_MAX


def test_an_invalid_id_number_is_still_refused_with_a_clear_error() -> None:
    m = load_mapping(ROOT / "mappings" / "corebank_soap_customer.yaml", profile=target_profile)
    raw = json.loads((ROOT / "mappings" / "samples" / "corebank_soap_customer.json").read_text(encoding="utf-8"))
    good = raw["Custpersonal"]["NATIONID"]
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    raw["Custpersonal"]["NATIONID"] = bad
    with pytest.raises(ValidationError) as exc:
        m.to_party(raw, party_id=uuid.uuid4())
    err = exc.value
    assert err.code == "invalid_checksum"
    assert err.field == "Custpersonal.NATIONID"
    assert "identifiers[scheme=CN_RIC].value" in str(err)
    assert bad not in str(err) and bad[6:14] not in str(err)   # the value, and its birth date, masked


# --------------------------------------------------------------------------------------- C3 per node shape
def _find_c3_walking_every_value(record: Any) -> list[tuple[str, str]]:
    """find_c3 as it was before the per-shape plan (every key classified at every node): the oracle."""
    from crmbridge.canonical.c3 import PAIR_NAME_KEYS, PAIR_VALUE_KEYS

    def pair(node: Mapping[Any, Any]) -> tuple[str, str, str] | None:
        names = [k for k in node if str(k).lower() in PAIR_NAME_KEYS and isinstance(node[k], str)]
        values = [k for k in node if str(k).lower() in PAIR_VALUE_KEYS]
        for n in names:
            rule = c3_rule(node[n])
            if rule is None:
                continue
            for v in values:
                if _carries_data(node[v]):
                    return str(v), f"{n}={node[n]}", rule
        return None

    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            p = pair(node)
            if p is not None:
                found.append((f"{path}.{p[0]}" if path else p[0], f"pair {p[1]}: {p[2]}"))
            for key, value in node.items():
                sub = f"{path}.{key}" if path else str(key)
                rule = c3_rule(str(key))
                if rule is not None and _carries_data(value):
                    found.append((sub, rule))
                else:
                    walk(value, sub)
        elif isinstance(node, Sequence) and not isinstance(node, str | bytes | bytearray):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(record, "")
    return found


_KEYS = st.sampled_from(["FLDNAM", "FLDVAL", "name", "value", "CARD_PIN", "password", "cvv2", "NAME", "MOBNUM",
                         "pinyin", "track 2", "Key", "UDF", 1, True])
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(0, 9999),
                    st.sampled_from(["", " ", "1234", "CARD_PIN", "PASSWORD", "AUM_AMOUNT", "cvv2", "x",
                                     "[C3 data withheld]", "pin"]))
_RECORDS = st.recursive(_LEAVES, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(_KEYS, kids, max_size=5)), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(record=st.dictionaries(_KEYS, _RECORDS, max_size=6))
def test_c3_per_shape_finds_what_walking_every_value_finds(record: dict[Any, Any]) -> None:
    assert find_c3(record) == _find_c3_walking_every_value(record)


def _half_char_by_char(s: str) -> str:
    """fullwidth_to_halfwidth as it was (a loop over the characters): the oracle of the translation table."""
    out = []
    for ch in s:
        o = ord(ch)
        if 0xFF01 <= o <= 0xFF5E:
            out.append(chr(o - 0xFEE0))
        elif o == 0x3000:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.one_of(st.characters(min_codepoint=0xFEF0, max_codepoint=0xFF70),
                                       st.sampled_from("\u3000 a1X张"), st.characters()), max_size=30))
def test_fullwidth_to_halfwidth_translates_as_the_character_loop_did(text: str) -> None:
    assert build_transform("fullwidth_to_halfwidth").to_canonical(text, CTX) == _half_char_by_char(text)


@pytest.mark.parametrize("fmt", ["national", "international", "digits"])
def test_a_number_parsed_once_formats_out_as_a_fresh_parse_does(fmt: str) -> None:
    import phonenumbers

    t = build_transform({"name": "phone_e164", "format": fmt})
    for raw in NUMBERS:
        e164 = t.to_canonical(raw, CTX)
        fresh = phonenumbers.parse(e164, "CN")
        want = (phonenumbers.national_significant_number(fresh) if fmt == "digits" else phonenumbers.format_number(
            fresh, phonenumbers.PhoneNumberFormat.NATIONAL if fmt == "national"
            else phonenumbers.PhoneNumberFormat.INTERNATIONAL))
        assert t.to_vendor(e164, CTX) == want
        assert t.to_vendor(e164, CTX) == want   # asked again (a second field from the same value)
    for _ in range(2):   # a refusal is never remembered as a number
        with pytest.raises(TransformError):
            t.to_vendor("+8612345678901", CTX)
