"""The compiled mappings (canonical/mapping/compiled.py) give exactly what the step interpreter gives.

Every shipped mapping, on records generated from its sample (each field it reads kept, removed, emptied or replaced
by a valid, an invalid or an odd value): the same canonical record (same values, same provenance of each value, in
the same order), the same problems, the same validated party or the same error (message, field, code, problems and
canonical path). Out: the same payload or the same error for parties mapped in, as models and as dicts, with fields
removed and consents changed.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import load_mapping
from crmbridge.canonical.mapping.compiled import compile_get, compile_set
from crmbridge.canonical.synthetic import customer_at
from crmbridge.core.errors import CrmBridgeError
from crmbridge.core.paths import parse_path, path_get, path_set

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SAMPLES = MAPPINGS / "samples"
ALL = sorted(p.stem for p in MAPPINGS.glob("*.yaml") if p.name != "rules.yaml")   # rules.yaml: not a mapping
SAMPLE_OF = {"fxiaoke_accountobj": ["fxiaoke_accountobj", "fxiaoke_accountobj_individual"]}
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def mapping(name: str) -> Any:
    return load_mapping(MAPPINGS / f"{name}.yaml", profile=target_profile)


#: the mappings that read vendor records (each has a sample record); write-only ones (holdings out, the
#: complaint service, the core's consent write-back) take part as targets of what the others read
SHIPPED = [n for n in ALL if mapping(n).vendor_paths("in")]
WRITE_ONLY = [n for n in ALL if n not in SHIPPED]
TARGETS = ALL
#: mappings whose record the job completes before validation: Zoho keeps no response time, so the campaign-response
#: job stamps responded_at when it first reads the member (sync/engine/responses.py)
ENGINE_COMPLETES = {"zoho_campaign_members"}


def samples(name: str) -> list[dict[str, Any]]:
    return [json.loads((SAMPLES / f"{s}.json").read_text(encoding="utf-8")) for s in SAMPLE_OF.get(name, [name])]


def test_every_shipped_mapping_has_a_sample():
    assert SHIPPED and WRITE_ONLY, "no shipped mappings found"
    for name in SHIPPED:
        assert samples(name)


# -------------------------------------------------------------------------------------------- values to try
_people = [customer_at(i, seed=3) for i in range(40)]
_valid = [v for c in _people for v in (c.id_number, c.mobile, c.email, c.name) if v]
_odd: list[Any] = [
    None, "", "   ", "Y", "N", "y", " n ", "true", "false", True, False, 0, 1, 12.5, -3, [], {}, ["a", "b"],
    {"x": 1}, "not a date", "2024-02-30", "2023-07-01", "2023-07-01T08:30:00", "2023-07-01T08:30:00+08:00",
    "20230701", "１３８００１３８０００", "13800138000", "+86 138 0013 8000", "0086-13800138000", "12345678901",
    "95566", "021-64371234", "110101199003077777", "110101199003077778", "11010119900307777x", "110101900307777",
    "91350100M000100Y43", "91350100M000100Y44", "a@b.cn", "A@B.CN ", "not-an-email", "M", "F", "X", "MASS",
    "WEALTH", "affluent", "UNKNOWN", "LOW", "high", "I", "C", "B", "Z", "O", "1000000", "abc", "-5", "1e3",
    "张三", " 李四 ", "ＡＢＣ", "x" * 300, "\u3000", str(uuid.UUID(int=7)),
]
values = st.one_of(st.sampled_from(_odd), st.sampled_from(_valid), st.text(max_size=12),
                   st.integers(-10, 10**12))


def read_paths(m: Any) -> list[Any]:
    paths = {p.text: p for p in m.vendor_paths("in")}
    for st_ in m.spec.steps:
        for p in st_.when_vendor_paths():
            paths.setdefault(p.text, p)
    for p in (m._external, m._key, m._modified, m._deleted, m._type_rule):
        if p is not None:
            paths.setdefault(p.text, p)
    return list(paths.values())


@st.composite
def records(draw: Any, name: str) -> dict[str, Any]:
    m = mapping(name)
    raw = copy.deepcopy(draw(st.sampled_from(samples(name))))
    for p in read_paths(m):
        how = draw(st.sampled_from(["keep", "keep", "keep", "drop", "set"]))
        if how == "keep":
            continue
        if how == "drop":
            parent = path_get(raw, p.parent()) if len(p.ops) > 1 else raw
            if isinstance(parent, dict):
                parent.pop(getattr(p.ops[-1], "name", None), None)
            continue
        try:
            path_set(raw, p, draw(values))
        except (AttributeError, TypeError, IndexError):
            pass   # the sample has another shape there (a scalar where the path goes deeper)
    return raw


# ----------------------------------------------------------------------------------------------- comparing
_T0 = datetime.now(UTC)


def _stable(v: Any) -> Any:
    """``v`` with the consent capture time a record without a modification stamp gets (now) made comparable."""
    if isinstance(v, dict):
        return {k: _stable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_stable(x) for x in v]
    if isinstance(v, datetime) and v.tzinfo is not None and abs(v - _T0) < timedelta(hours=1):
        return "<now>"
    return v


def _error(exc: BaseException) -> tuple[Any, ...]:
    return (type(exc), str(exc), getattr(exc, "field", None), getattr(exc, "code", None),
            getattr(exc, "problems", None), getattr(exc, "canonical_path", None), getattr(exc, "where", None))


def outcome(fn: Any, *args: Any, **kw: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args, **kw)
    except CrmBridgeError as exc:
        return "error", _error(exc)


def _dump(party: Any) -> Any:
    return _stable(party.model_dump(mode="python")) if hasattr(party, "model_dump") else _stable(party)


def check_in(name: str, raw: dict[str, Any]) -> list[Any]:
    m = mapping(name)
    pid = uuid.UUID(int=42)
    ref = outcome(m._run_in, raw, pid, interpret=True)
    got = outcome(m._run_in, raw, pid)
    assert ref[0] == got[0]
    if ref[0] == "error":
        assert ref[1] == got[1]
        return []
    r, g = ref[1], got[1]
    assert _stable(g.canon) == _stable(r.canon)
    assert g.problems == r.problems
    assert _stable(list(g.provenance.items())) == _stable(list(r.provenance.items()))
    # the public entry points: the compiled path against the interpreter's record, validated the same way
    if r.problems:
        ref_party = outcome(m._raise, r.problems)
    else:   # validated through the discriminated union, as before the straight-to-model dispatch
        ref_party = outcome(m._validate, r, union=True)
    got_party = outcome(m.to_party, raw, party_id=pid)
    assert ref_party[0] == got_party[0]
    if ref_party[0] == "ok":
        assert _dump(got_party[1]) == _dump(ref_party[1])
        return [got_party[1]]
    assert ref_party[1] == got_party[1]
    return []


def check_out(name: str, party: Any) -> None:
    m = mapping(name)
    ref = outcome(m.trace_out, party)
    got = outcome(m.map_out, party)
    assert ref[0] == got[0], (ref, got)
    if ref[0] == "ok":
        assert got[1] == ref[1][0]
    else:
        assert got[1] == ref[1]


@pytest.mark.parametrize("name", SHIPPED)
def test_samples_map_the_same_both_ways(name):
    for raw in samples(name):
        parties = check_in(name, raw)
        if name in ENGINE_COMPLETES:
            continue   # the same refusal both ways (check_in compared them); the job supplies the rest
        assert parties, f"{name}: the sample itself does not map in"
        for out_name in TARGETS:
            check_out(out_name, parties[0])
            check_out(out_name, parties[0].canonical_dict(include_volatile=True))


@pytest.mark.parametrize("name", SHIPPED)
@FAST
@given(data=st.data())
def test_generated_records_map_in_the_same(name, data):
    raw = data.draw(records(name))
    parties = check_in(name, raw)
    for party in parties:   # what the record became goes out through every mapping the same way
        out_name = data.draw(st.sampled_from(TARGETS))
        check_out(out_name, party)


_CONSENT_STATUS = ["GRANTED", "DENIED", "WITHDRAWN"]


@pytest.mark.parametrize("name", TARGETS)
@FAST
@given(data=st.data())
def test_generated_parties_map_out_the_same(name, data):
    m = mapping(name)
    src = data.draw(st.sampled_from(SHIPPED))
    raw = data.draw(records(src))
    try:
        party = mapping(src).to_party(raw, party_id=uuid.UUID(int=9))
    except CrmBridgeError:
        return
    d = party.canonical_dict(include_volatile=True)
    for key in list(d):
        if data.draw(st.booleans()) and data.draw(st.booleans()):
            d.pop(key)
    for c in d.get("consents") or []:
        c["status"] = data.draw(st.sampled_from(_CONSENT_STATUS))
    if data.draw(st.booleans()):
        d["party_type"] = data.draw(st.sampled_from(["INDIVIDUAL", "ORGANISATION", "OTHER", None]))
    check_out(name, d)
    check_out(name, party)
    assert m.plan is m.plan   # compiled once


# ------------------------------------------------------------------------------------ the compiled paths alone
_PATHS = ["a", "a.b", "a.b.c", "a[0]", "a[1].b", "a[k=v].b", "a[k=v,j=true].b", "a[k=1]", "a.b[0].c[k=v].d",
          '["x.y"].z']
class _Kind(StrEnum):
    V = "v"
    X = "x"


class _Num(IntEnum):
    ONE = 1


_trees = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(0, 3), st.sampled_from(["v", "1", "true", "x"]),
              st.sampled_from([_Kind.V, _Kind.X, _Num.ONE])),   # a party dumped in python mode holds enums
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "k", "j", "x.y", "z"]), kids, max_size=4)),
    max_leaves=12)


@FAST
@given(tree=_trees, text=st.sampled_from(_PATHS))
def test_compiled_get_answers_as_path_get(tree, text):
    p = parse_path(text)
    assert compile_get(p)(tree) == path_get(tree, p)


@FAST
@given(tree=st.dictionaries(st.sampled_from(["a", "b", "x.y"]), _trees, max_size=3), text=st.sampled_from(_PATHS),
       value=st.integers())
def test_compiled_set_does_what_path_set_does(tree, text, value):
    p = parse_path(text)
    ref, got = copy.deepcopy(tree), copy.deepcopy(tree)
    try:
        loc_ref: Any = path_set(ref, p, value)
    except Exception as exc:  # noqa: BLE001 - the same failure is what is compared
        loc_ref = type(exc)
    try:
        loc_got: Any = compile_set(p)(got, value)
    except Exception as exc:  # noqa: BLE001
        loc_got = type(exc)
    assert loc_got == loc_ref
    assert got == ref


_ITEM_VALUES = st.sampled_from([_Kind.V, _Kind.X, _Num.ONE, "v", "x", "1", 1, True, "true", None, 1.0])


@FAST
@given(items=st.lists(st.dictionaries(st.sampled_from(["k", "j", "b"]), _ITEM_VALUES, max_size=3), max_size=5),
       text=st.sampled_from(["a[k=v].b", "a[k=1].b", "a[k=true]", "a[k=v,j=x].b", "a[k=x]"]), value=st.integers())
def test_selectors_compare_enum_text_and_numbers_as_cond_matches_does(items, text, value):
    p = parse_path(text)
    tree = {"a": items}
    assert compile_get(p)(tree) is path_get(tree, p)
    ref, got = copy.deepcopy(tree), copy.deepcopy(tree)
    assert compile_set(p)(got, value) == path_set(ref, p, value)
    assert got == ref
