"""The change filter's boundary: Zoho does not document whether If-Modified-Since keeps records modified AT the given
second. ``since_boundary`` (default ``unknown``) must lose nothing when the server is exclusive, even when records
sharing one second straddle a page boundary and a run stopped between the two pages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from zoho_helpers import make_adapter

from crmbridge.adapters.base import WriteItem


def _seed(sim, stamps: list[int]) -> list[str]:  # type: ignore[no-untyped-def]
    """One record per entry of ``stamps`` (the second its Modified_Time falls in); their keys."""
    adapter = make_adapter(sim)
    keys = []
    for i, second in enumerate(stamps):
        sim.clock = lambda s=second: float(s)
        key = f"party-{i:03d}"
        adapter.write("Contacts", [WriteItem(key=key, payload={"Last_Name": "郑"}, key_field="Party_ID")])
        keys.append(key)
    return keys


@pytest.mark.parametrize(("cfg", "loses"), [
    ({}, False),                                                # the shipped defaults
    ({"overlap_seconds": 0}, False),                            # no overlap: since_boundary unknown still safe
    ({"overlap_seconds": 0, "since_boundary": "exclusive"}, False),
    ({"overlap_seconds": 0, "since_boundary": "inclusive"}, True),  # configured wrongly against this server
])
def test_no_record_lost_across_a_page_boundary_with_an_exclusive_server(zoho_sim, cfg: dict, loses: bool) -> None:  # type: ignore[no-untyped-def,type-arg]
    sim = zoho_sim(records=0, extra={"ims_boundary": "exclusive"})
    a, b = 1767225600, 1767225660                     # two seconds a minute apart
    keys = _seed(sim, [a] * 3 + [b] * 6)              # page 1: a a a b b | page 2: b b b b
    adapter = make_adapter(sim, page_size=5, **cfg)
    pages = adapter.extract("Contacts", fields=["Party_ID", "Modified_Time"])
    first = next(pages)                               # the run stops after its first page
    assert len(first.records) == 5 and first.next_state is not None
    cursor = max(r.modified_at for r in first.records)
    assert cursor == datetime.fromtimestamp(b, UTC)
    seen = {r.data["Party_ID"] for r in first.records}
    again = [r for p in adapter.extract("Contacts", since=cursor, fields=["Party_ID", "Modified_Time"])
             for r in p.records]                      # the next run, from the committed cursor
    seen |= {r.data["Party_ID"] for r in again}
    missing = set(keys) - seen
    assert bool(missing) is loses, f"lost {sorted(missing)}"
    if not loses:
        assert len(again) >= 6, "every record of the cursor's second comes back"


def test_since_header_goes_one_second_earlier_unless_inclusive(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    since = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert make_adapter(sim)._since_header(since) == "2026-01-01T00:00:04+00:00"        # 5 s overlap + 1 s
    assert make_adapter(sim, overlap_seconds=0)._since_header(since) == "2026-01-01T00:00:09+00:00"
    assert make_adapter(sim, overlap_seconds=0, since_boundary="inclusive")._since_header(since) == \
        "2026-01-01T00:00:10+00:00"
