"""Three-way merge: example cases and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from crmbridge.sync.merge import ConflictPolicy, diff, flatten, three_way_merge, unflatten

MANUAL = ConflictPolicy(type="manual")
CORE_OWNS = ConflictPolicy(type="source_of_truth", default_owner=None,
                           owners={"name.*": "source", "identifiers*": "source",
                                   "contact_points*": "target", "consents*": "target"})

RECORD = {
    "party_type": "INDIVIDUAL",
    "name": {"legal_zh": "张三", "pinyin": "ZHANG San"},
    "identifiers": [{"scheme": "CN_RIC", "value": "11010519491231002X"}],
    "contact_points": [{"type": "MOBILE", "value": "+8613812345678"},
                       {"type": "EMAIL", "value": "z@example.com"}],
    "consents": [{"purpose": "MARKETING_SMS", "status": "GRANTED"}],
}


def test_flatten_uses_natural_keys_and_round_trips() -> None:
    flat = flatten(RECORD)
    assert flat["contact_points[type=MOBILE].value"] == "+8613812345678"
    assert flat["identifiers[scheme=CN_RIC].value"] == "11010519491231002X"
    assert unflatten(flat) == RECORD


def test_list_order_does_not_make_a_change() -> None:
    reordered = {**RECORD, "contact_points": list(reversed(RECORD["contact_points"]))}
    assert diff(flatten(RECORD), flatten(reordered)) == {}


def test_one_sided_changes_flow_to_the_other_side() -> None:
    base = flatten(RECORD)
    source = {**base, "name.pinyin": "ZHANG Sanfeng"}
    target = {**base, "contact_points[type=EMAIL].value": "new@example.com"}
    r = three_way_merge(base, source, target, MANUAL)
    assert r.to_target == {"name.pinyin": "ZHANG Sanfeng"}
    assert r.to_source == {"contact_points[type=EMAIL].value": "new@example.com"}
    assert not r.conflicts


def test_both_changed_is_a_conflict_under_manual_policy() -> None:
    base = flatten(RECORD)
    source = {**base, "contact_points[type=MOBILE].value": "+8613900000000"}
    target = {**base, "contact_points[type=MOBILE].value": "+8613700000000"}
    r = three_way_merge(base, source, target, MANUAL)
    assert [c.path for c in r.conflicts] == ["contact_points[type=MOBILE].value"]
    assert r.to_target == {} and r.to_source == {}


def test_system_of_record_settles_and_protects_golden_fields() -> None:
    base = flatten(RECORD)
    source = {**base, "contact_points[type=MOBILE].value": "+8613900000000"}
    target = {**base, "contact_points[type=MOBILE].value": "+8613700000000", "name.legal_zh": "张四"}
    r = three_way_merge(base, source, target, CORE_OWNS)
    # the CRM owns contact points: its mobile wins and flows back to core
    assert r.to_source == {"contact_points[type=MOBILE].value": "+8613700000000"}
    # the CRM edited a golden field the core owns: a proposal for review, not applied
    assert [(c.path, c.reason) for c in r.conflicts] == [("name.legal_zh", "not_owner")]
    assert r.merged["name.legal_zh"] == "张三"


def test_last_writer_wins_respects_clock_tolerance() -> None:
    base = flatten(RECORD)
    source = {**base, "name.pinyin": "A"}
    target = {**base, "name.pinyin": "B"}
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lww = ConflictPolicy(type="last_writer_wins", clock_tolerance_seconds=5)
    later = three_way_merge(base, source, target, lww, source_modified=t0 + timedelta(seconds=60),
                            target_modified=t0)
    assert later.to_target == {"name.pinyin": "A"}
    close = three_way_merge(base, source, target, lww, source_modified=t0 + timedelta(seconds=2),
                            target_modified=t0)
    assert [c.reason for c in close.conflicts] == ["clock_tolerance"]


values = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["a", "b", "c"]))
flat_records = st.dictionaries(st.sampled_from(["f1", "f2", "f3", "g.h", "g.i"]), values, max_size=5)


@given(flat_records, flat_records)
def test_merge_with_an_unchanged_side_takes_the_other(base, other) -> None:  # type: ignore[no-untyped-def]
    present = {k: v for k, v in other.items() if v is not None}  # None and absent are the same value
    r = three_way_merge(base, other, base, MANUAL)
    assert r.merged == present and not r.conflicts and r.to_source == {}
    r2 = three_way_merge(base, base, other, MANUAL)
    assert r2.merged == present and not r2.conflicts and r2.to_target == {}


@given(flat_records, flat_records, flat_records)
def test_merge_properties(base, source, target) -> None:  # type: ignore[no-untyped-def]
    r = three_way_merge(base, source, target, MANUAL)
    conflicted = {c.path for c in r.conflicts}
    for path in base.keys() | source.keys() | target.keys():
        # None and absent are the same value
        s_changed = source.get(path) != base.get(path)
        t_changed = target.get(path) != base.get(path)
        # a conflict exactly where both sides changed the field to different values
        assert (path in conflicted) == (s_changed and t_changed and source.get(path) != target.get(path))
        # nothing is written to a side that already holds the value
        if path in r.to_target:
            assert r.to_target[path] != target.get(path)
        if path in r.to_source:
            assert r.to_source[path] != source.get(path)
    # applying the writes makes both sides agree on every non-conflicted field
    new_target = {**target, **r.to_target}
    new_source = {**source, **r.to_source}
    for path in (source.keys() | target.keys()) - conflicted:
        assert new_target.get(path) == new_source.get(path)


@given(flat_records, flat_records, flat_records)
def test_merge_is_symmetric(base, source, target) -> None:  # type: ignore[no-untyped-def]
    a = three_way_merge(base, source, target, MANUAL)
    b = three_way_merge(base, target, source, MANUAL)
    assert a.to_target == b.to_source and a.to_source == b.to_target
    assert {c.path for c in a.conflicts} == {c.path for c in b.conflicts}
