"""Two-way runs of the engine on two in-process memory systems: fields flowing both ways, echo suppression, a
conflict queued under the manual policy (see conftest.py for the world they run in)."""

from __future__ import annotations

import pytest
from conftest import CORE, CRM, OBJECT, World, person


@pytest.fixture
def two_way(world: World) -> World:
    return world.configure(direction="two_way", conflict_policy={"type": "manual"})


def synced(w: World, n: int) -> tuple[list[str], dict[str, dict]]:
    """``n`` core records synced to the CRM: their core ids, and the CRM record of each core id."""
    ids = w.add(w.core, *(person(i) for i in range(n)))
    first = w.run()
    assert first.outcomes["created"] == n, first.as_dict()
    with w.rt.store.transaction(read_only=True) as tx:
        party = {rid: tx.get_xref(CORE, OBJECT, rid) for rid in ids}
    crm = {r["party_id"]: r for r in w.crm.records(OBJECT)}
    return ids, {rid: crm[party[rid]] for rid in ids}


def test_our_own_writes_coming_back_are_echoes_and_cost_no_write(two_way: World) -> None:
    synced(two_way, 3)
    before = (two_way.writes(CORE), two_way.writes(CRM))
    again = two_way.run()
    assert again.status == "succeeded"
    assert not again.outcomes["created"] and not again.outcomes["updated"], again.as_dict()
    assert (two_way.writes(CORE), two_way.writes(CRM)) == before, "ping-pong: a run wrote back its own writes"
    assert sum(again.outcomes.values()) == again.read


def test_non_conflicting_changes_flow_both_ways_in_one_run(two_way: World) -> None:
    ids, crm = synced(two_way, 2)
    two_way.edit(two_way.core, ids[0], segment="WEALTH")            # the bank re-segments the customer
    two_way.edit(two_way.crm, crm[ids[0]]["id"], branch="310101001")  # the RM moves them to another branch
    report = two_way.run()
    assert report.status == "succeeded", report.as_dict()
    assert report.outcomes["updated"] >= 1 and not report.outcomes["conflict"]
    core_now, crm_now = two_way.core.record(OBJECT, ids[0]), two_way.crm.record(OBJECT, crm[ids[0]]["id"])
    assert (core_now["segment"], core_now["branch"]) == ("WEALTH", "310101001")
    assert (crm_now["segment"], crm_now["branch"]) == ("WEALTH", "310101001")
    untouched = two_way.core.record(OBJECT, ids[1])
    assert (untouched["segment"], untouched["branch"]) == ("MASS", "110105001")
    assert crm_now["name"] != core_now["name"] and crm_now["name"].endswith("*")   # still masked in the CRM
    settled = two_way.run()
    assert not settled.outcomes["updated"] and not settled.outcomes["created"], settled.as_dict()


def test_both_sides_changing_one_field_is_a_conflict_queued_under_the_manual_policy(two_way: World) -> None:
    ids, crm = synced(two_way, 2)
    two_way.edit(two_way.core, ids[1], segment="WEALTH")
    two_way.edit(two_way.crm, crm[ids[1]]["id"], segment="PRIVATE")
    writes = (two_way.writes(CORE), two_way.writes(CRM))
    report = two_way.run()
    assert report.outcomes["conflict"] >= 1, report.as_dict()
    assert report.status == "partial" and report.exit_code == 3
    assert two_way.core.record(OBJECT, ids[1])["segment"] == "WEALTH"      # neither side overwritten
    assert two_way.crm.record(OBJECT, crm[ids[1]]["id"])["segment"] == "PRIVATE"
    assert (two_way.writes(CORE), two_way.writes(CRM)) == writes
    with two_way.rt.store.transaction(read_only=True) as tx:
        conflicts = tx.list_conflicts("sync")
        party = tx.get_xref(CORE, OBJECT, ids[1])
    assert len(conflicts) == 1 and conflicts[0]["status"] == "open"
    assert conflicts[0]["party_id"] == party and list(conflicts[0]["field_paths"]) == ["segment.code"]
    assert b"WEALTH" not in bytes(conflicts[0]["source_value"]) and b"PRIVATE" not in bytes(
        conflicts[0]["target_value"]), "conflict values are kept sealed"
    assert sum(report.outcomes.values()) == report.read


def test_a_conflict_is_not_queued_twice_by_the_next_run(two_way: World) -> None:
    ids, crm = synced(two_way, 1)
    two_way.edit(two_way.core, ids[0], segment="WEALTH")
    two_way.edit(two_way.crm, crm[ids[0]]["id"], segment="PRIVATE")
    two_way.run()
    two_way.run()
    with two_way.rt.store.transaction(read_only=True) as tx:
        assert len(tx.list_conflicts("sync")) == 1
    assert two_way.crm.record(OBJECT, crm[ids[0]]["id"])["segment"] == "PRIVATE"


def test_under_source_of_truth_the_source_wins_a_field_both_changed(world: World) -> None:
    world.configure(direction="two_way")     # the default policy: unlisted fields belong to the job's source
    ids, crm = synced(world, 1)
    world.edit(world.core, ids[0], segment="WEALTH")
    world.edit(world.crm, crm[ids[0]]["id"], segment="PRIVATE")
    report = world.run()
    assert not report.outcomes["conflict"], report.as_dict()
    assert world.crm.record(OBJECT, crm[ids[0]]["id"])["segment"] == "WEALTH"
    assert world.core.record(OBJECT, ids[0])["segment"] == "WEALTH"
