"""One-way runs of the engine on two in-process memory systems: create, update, no-op, dry run, refusals, dead
letters, cursor, accounting (see conftest.py for the world they run in)."""

from __future__ import annotations

import pytest
from conftest import CORE, CRM, OBJECT, World, person

from crmbridge.adapters.simulator import Fault
from crmbridge.core.errors import LeaseHeldError
from crmbridge.sync.engine import JobRunner
from crmbridge.sync.report import OUTCOMES

CURSOR = f"{CORE}.{OBJECT}"   # the job's cursor is kept per source system and object


def crm_by_core_id(w: World) -> dict[str, dict | None]:
    """The CRM record of each core record (through the source cross-reference the engine keeps)."""
    with w.rt.store.transaction(read_only=True) as tx:
        out = {}
        for rid in w.core.ids(OBJECT):
            party = tx.get_xref(CORE, OBJECT, rid)
            out[rid] = next((r for r in w.crm.records(OBJECT) if r.get("party_id") == party), None)
    return out


def assert_accounted(report) -> None:  # type: ignore[no-untyped-def]
    assert set(report.outcomes) <= set(OUTCOMES)
    assert sum(report.outcomes.values()) == report.read, (report.read, dict(report.outcomes))


def test_new_records_are_created_once_each_with_the_masked_projection(world: World) -> None:
    people = [person(i) for i in range(3)]
    world.add(world.core, *people)
    report = world.run()
    assert report.status == "succeeded", report.as_dict()
    assert report.read == 3 and report.outcomes == {"created": 3}
    crm = world.crm.records(OBJECT)
    assert len(crm) == 3
    assert len({r["party_id"] for r in crm}) == 3
    names = {r["name"] for r in crm}
    assert not names & {p["name"] for p in people}, "a CRM received a name in clear"
    assert all(n.endswith("*") and "*" in n for n in names)
    assert {r["segment"] for r in crm} == {"MASS"} and all("ric" not in r for r in crm)
    assert_accounted(report)


def test_a_rerun_with_nothing_changed_writes_nothing(world: World) -> None:
    world.add(world.core, *(person(i) for i in range(4)))
    world.run()
    before = world.writes(CRM)
    assert before >= 1        # the first run's upserts were counted: the counter sees writes
    again = world.run()
    assert again.status == "succeeded"
    assert world.writes(CRM) == before, "an unchanged source cost a write call"
    assert not again.outcomes["created"] and not again.outcomes["updated"]
    assert again.api_calls.get(CRM, 0) == 0
    assert world.crm.count(OBJECT) == 4
    assert_accounted(again)


def test_a_changed_source_field_updates_only_that_record(world: World) -> None:
    ids = world.add(world.core, *(person(i) for i in range(3)))
    world.run()
    versions = {r["party_id"]: r["version"] for r in world.crm.records(OBJECT)}
    world.edit(world.core, ids[1], segment="WEALTH")
    report = world.run()
    assert report.outcomes["updated"] == 1 and not report.outcomes["created"], report.as_dict()
    crm = crm_by_core_id(world)
    assert crm[ids[1]]["segment"] == "WEALTH"
    assert {crm[i]["segment"] for i in (ids[0], ids[2])} == {"MASS"}
    assert int(crm[ids[1]]["version"]) == int(versions[crm[ids[1]]["party_id"]]) + 1
    assert all(crm[i]["version"] == versions[crm[i]["party_id"]] for i in (ids[0], ids[2]))
    assert_accounted(report)


def test_a_change_to_a_field_the_job_does_not_map_costs_no_write(world: World) -> None:
    ids = world.add(world.core, person(0), person(1))
    world.run()
    before = world.writes(CRM)
    world.edit(world.core, ids[0], internal_note="called back on Tuesday")
    report = world.run()
    assert report.read >= 1 and report.outcomes["unchanged"] == report.read, report.as_dict()
    assert world.writes(CRM) == before


def test_a_dry_run_plans_the_writes_but_makes_none_and_moves_no_cursor(world: World) -> None:
    world.add(world.core, *(person(i) for i in range(3)))
    dry = world.run(dry_run=True)
    assert dry.dry_run and dry.status == "succeeded"
    assert dry.outcomes["created"] == 3 and dry.planned_write_calls >= 1
    assert len(dry.plan) == 3 and {str(p.action) for p in dry.plan} == {"created"}
    assert world.crm.count(OBJECT) == 0 and world.writes(CRM) == 0
    with world.rt.store.transaction(read_only=True) as tx:
        assert tx.get_cursor("sync", CURSOR) is None
        assert all(tx.get_xref(CORE, OBJECT, rid) is None for rid in world.core.ids(OBJECT))
    real = world.run()     # everything the dry run saw is still to do
    assert real.outcomes["created"] == 3 and world.crm.count(OBJECT) == 3


def test_a_dry_run_after_a_change_plans_only_that_update(world: World) -> None:
    ids = world.add(world.core, person(0), person(1))
    world.run()
    world.edit(world.core, ids[0], segment="PRIVATE")
    dry = world.run(dry_run=True)
    planned = [p for p in dry.plan if str(p.action) != "skipped_unchanged"]
    assert [str(p.action) for p in planned] == ["updated"], [(p.action, p.fields) for p in dry.plan]
    assert any("segment" in path for path in planned[0].fields)
    assert {r["segment"] for r in world.crm.records(OBJECT)} == {"MASS"}


def test_a_bad_source_record_is_dead_lettered_and_the_others_go_through(world: World) -> None:
    good = [person(i) for i in range(9)]
    bad = person(20, ric="110105194912310020")        # wrong check digit
    world.add(world.core, *good, bad)
    report = world.run()
    assert report.outcomes == {"created": 9, "dead_lettered": 1}, report.as_dict()
    assert report.status == "partial"                 # 1 of 10 is not above the default max_failed_ratio 0.1
    assert world.crm.count(OBJECT) == 9
    with world.rt.store.transaction(read_only=True) as tx:
        letters = tx.list_dead_letters("sync")
    assert len(letters) == 1 and letters[0]["status"] == "open"
    assert "110105194912310020" not in str(letters[0]), "the dead letter holds the ID number in clear"
    assert_accounted(report)


def test_a_fixed_dead_letter_is_retried_and_resolved_by_the_next_run(world: World) -> None:
    (rid,) = world.add(world.core, person(0, ric="110105194912310020"))
    assert world.run().outcomes == {"dead_lettered": 1}
    unchanged = world.run()
    assert not unchanged.outcomes["created"] and world.crm.count(OBJECT) == 0   # the same bad content: not re-tried
    world.edit(world.core, rid, ric=person(0)["ric"])
    fixed = world.run()
    assert fixed.outcomes["created"] == 1 and world.crm.count(OBJECT) == 1, fixed.as_dict()
    with world.rt.store.transaction(read_only=True) as tx:
        assert tx.list_dead_letters("sync", status=["open", "retrying"]) == []


def test_a_record_the_target_refuses_is_a_dead_letter_and_the_run_partial(world: World) -> None:
    world.crm.required = ["branch"]               # the CRM's own validation rule
    world.configure(max_failed_ratio=0.5)
    world.add(world.core, *(person(i) for i in range(3)), person(9, branch=None))
    report = world.run()
    assert report.outcomes == {"created": 3, "dead_lettered": 1}, report.as_dict()
    assert report.status == "partial" and report.exit_code == 3
    assert sum(report.refusals.values()) == 1
    assert world.crm.count(OBJECT) == 3


def test_refusals_above_max_failed_ratio_fail_the_run(world: World) -> None:
    world.crm.required = ["branch"]
    world.configure(max_failed_ratio=0.1)
    world.add(world.core, *(person(i) for i in range(3)), person(9, branch=None))
    report = world.run()
    assert report.outcomes["dead_lettered"] == 1
    assert report.status == "failed" and "max_failed_ratio" in (report.error or ""), report.as_dict()
    with world.rt.store.transaction(read_only=True) as tx:
        assert tx.list_runs("sync", limit=1)[0]["status"] == "failed"
    assert_accounted(report)


def test_an_unreachable_target_moves_no_cursor_and_the_next_run_does_the_work(world: World) -> None:
    world.configure(circuit_breaker_calls=1, batch_size=2)
    world.add(world.core, *(person(i) for i in range(5)))
    world.crm.inject(Fault.SERVER_ERROR, times=1000, path="/records")
    failed = world.run()
    assert failed.status == "failed" and failed.unreachable == CRM, failed.as_dict()
    assert failed.exit_code == 4
    assert world.crm.count(OBJECT) == 0
    with world.rt.store.transaction(read_only=True) as tx:
        assert tx.get_cursor("sync", CURSOR) is None, "the cursor moved past records never written"
    world.crm.clear_faults()
    again = world.run()
    assert again.status == "succeeded" and again.outcomes["created"] == 5, again.as_dict()
    assert world.crm.count(OBJECT) == 5
    assert len({r["party_id"] for r in world.crm.records(OBJECT)}) == 5


def test_a_failed_write_below_the_circuit_breaker_leaves_dead_letters_not_a_gap(world: World) -> None:
    world.configure(circuit_breaker_calls=3)
    world.add(world.core, *(person(i) for i in range(3)))
    world.crm.inject(Fault.SERVER_ERROR, times=2, path="/records")   # one write call fails after its retry
    report = world.run()
    assert report.outcomes == {"dead_lettered": 3}, report.as_dict()
    assert report.status == "failed"          # 3 of 3 refused: above max_failed_ratio
    with world.rt.store.transaction(read_only=True) as tx:
        letters = tx.list_dead_letters("sync", status="open")
        cursor = tx.get_cursor("sync", CURSOR)
    assert sorted(dl["external_id"] for dl in letters) == sorted(world.core.ids(OBJECT))
    assert all(dl["next_attempt_at"] is not None for dl in letters)   # retried by a later run
    assert cursor is not None                 # moving past them lost nothing: each is a dead letter
    assert world.crm.count(OBJECT) == 0


def test_a_run_stopped_after_a_batch_keeps_that_batch_and_the_next_run_does_the_rest(world: World) -> None:
    world.configure(batch_size=2)
    world.add(world.core, *(person(i) for i in range(5)))
    stopped = JobRunner(world.rt, "sync", should_stop=lambda: True).run()
    assert stopped.status == "stopped"
    assert world.crm.count(OBJECT) == 2 and stopped.outcomes["created"] == 2
    with world.rt.store.transaction(read_only=True) as tx:
        assert tx.get_cursor("sync", CURSOR) is not None
    rest = world.run()
    assert rest.outcomes["created"] == 3 and world.crm.count(OBJECT) == 5, rest.as_dict()
    assert len({r["party_id"] for r in world.crm.records(OBJECT)}) == 5      # no duplicates


def test_a_job_without_the_required_consent_writes_nothing(world: World) -> None:
    world.configure(consent_purpose="SHARE_WITH_CRM_VENDOR")
    world.add(world.core, person(0), person(1))     # the source mapping carries no consents
    report = world.run()
    assert report.outcomes == {"no_consent": 2}, report.as_dict()
    assert world.crm.count(OBJECT) == 0 and world.writes(CRM) == 0
    assert report.status == "succeeded"


def test_a_run_refused_by_another_holder_s_lease_writes_nothing(world: World) -> None:
    world.add(world.core, person(0))
    assert world.rt.store.acquire_lease("sync", "elsewhere:1:abcdef12", 60)
    with pytest.raises(LeaseHeldError):
        world.run()
    assert world.crm.count(OBJECT) == 0 and world.writes(CRM) == 0
    with world.rt.store.transaction(read_only=True) as tx:
        assert tx.list_runs("sync", limit=1)[0]["status"] == "refused"


def test_outcomes_add_up_to_the_records_read_over_a_mixed_run(world: World) -> None:
    ids = world.add(world.core, *(person(i) for i in range(6)))
    world.run()
    world.edit(world.core, ids[0], segment="AFFLUENT")
    world.edit(world.core, ids[1], ric="110105194912310020")
    world.add(world.core, person(30))
    report = world.run()
    assert report.outcomes["updated"] == 1 and report.outcomes["dead_lettered"] == 1
    assert report.outcomes["created"] == 1, report.as_dict()
    assert_accounted(report)
    with world.rt.store.transaction(read_only=True) as tx:
        counts = tx.list_runs("sync", limit=1)[0]["counts"]
    assert counts["read"] == report.read and counts["outcomes"] == dict(report.outcomes)


@pytest.mark.parametrize(("policy", "left"), [("propagate", 1), ("ignore", 2)])
def test_a_source_deletion_follows_the_delete_policy(world: World, policy: str, left: int) -> None:
    world.configure(delete_policy=policy)
    ids = world.add(world.core, person(0), person(1))
    world.run()
    with world.rt.store.transaction(read_only=True) as tx:
        gone_party = tx.get_xref(CORE, OBJECT, ids[0])
    world.delete(world.core, ids[0])
    report = world.run()
    assert world.crm.count(OBJECT) == left, report.as_dict()
    remaining = {r["party_id"] for r in world.crm.records(OBJECT)}
    assert (gone_party in remaining) is (policy == "ignore")
    assert report.outcomes["deleted"] == (1 if policy == "propagate" else 0)
    assert_accounted(report)
