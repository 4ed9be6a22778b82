"""End to end: the org lacks a custom field the shipped Contacts mapping writes (Home_Branch). Zoho refuses every
record (INVALID_DATA on that api_name, HTTP 400); the run must not report ``succeeded`` and the refusals must name
the field and the code."""

from __future__ import annotations

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.state.ledger import Action


def _run(tmp_path):  # type: ignore[no-untyped-def]
    env = DemoEnvironment(tmp_path / "demo", customers=40, bad_fraction=0.0, seed=5).start()
    env.zoho.missing_fields = {"Home_Branch"}
    return env, bootstrap(env.config_path)


def test_writes_refused_for_a_missing_field_are_failed_and_dead_lettered_naming_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env, rt = _run(tmp_path)
    try:
        report = run_job(rt, "core_to_zoho")
        assert report.actions[Action.FAILED] > 0 and report.actions[Action.CREATED] == 0, report.as_dict()
        assert env.zoho.count("Contacts") == 0
        assert env.zoho.requests_seen["POST /crm/v8/Contacts/upsert"] >= 1
        with rt.store.transaction() as tx:
            letters = tx.list_dead_letters("core_to_zoho", status=["open"], limit=1000)
        assert len(letters) == report.actions[Action.FAILED], "every refused record is a dead letter"
        assert {d["reason_code"] for d in letters} == {"INVALID_DATA"}
        assert all("Home_Branch" in d["message"] and "no field with this API name" in d["message"]
                   for d in letters), letters[0]["message"]
    finally:
        rt.close()
        env.stop()


def test_a_run_whose_writes_all_fail_on_a_missing_field_is_not_succeeded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env, rt = _run(tmp_path)
    try:
        report = run_job(rt, "core_to_zoho")
        # every write refused: far above max_failed_ratio, so failed (exit 1), the reason and its count named
        assert report.status == "failed" and report.exit_code == 1, report.as_dict()
        assert report.refusals["target: INVALID_DATA"] == report.outcomes["dead_lettered"] > 0
        assert "target: INVALID_DATA" in (report.error or "")
    finally:
        rt.close()
        env.stop()

