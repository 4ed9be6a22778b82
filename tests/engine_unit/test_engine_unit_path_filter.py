"""path_filter (two-way echo hashes, merges) decides each flat path once per set of paths, as it always decided."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crmbridge.sync.engine import path_filter

_PARTS = st.sampled_from(["name", "legal_zh", "contact_points[type=MOBILE]", "contact_points", "value", "addresses",
                          "addresses[type=HOME]", "city", "consents[purpose=MARKETING_SMS]", "status", "segment",
                          "code", "name_en", "x"])
_PATHS = st.lists(_PARTS, min_size=1, max_size=3).map(".".join)


def _covered_by_rule(path: str, paths: list[str]) -> bool:
    return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in paths)


@settings(max_examples=300, deadline=None)
@given(owned=st.lists(_PATHS, max_size=6), flat=st.lists(_PATHS, max_size=12))
def test_path_filter_answers_by_the_prefix_rule_every_time(owned: list[str], flat: list[str]) -> None:
    covered = path_filter(owned)
    for _ in range(2):   # asked again (a second record of the same shape): the same answers
        assert [covered(p) for p in flat] == [_covered_by_rule(p, owned) for p in flat]


def test_a_path_covered_for_one_mapping_is_not_covered_for_another() -> None:
    a, b = path_filter(["name.legal_zh"]), path_filter(["segment.code"])
    assert a("name.legal_zh") and not b("name.legal_zh")
    assert b("segment.code") and not a("segment.code")
    assert not a("name.legal_zh_x") and a("contact_points") is False
