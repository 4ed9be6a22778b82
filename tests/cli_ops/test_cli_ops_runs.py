"""``crmbridge runs list|show`` over the state store's runs table, on SQLite and PostgreSQL: every run (succeeded
with dead letters, no-op, failed, dry, partial with refusals), filtered by job, date and count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmbridge.cli.main import app
from crmbridge.core.errors import ConfigurationError
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job

JOB = "core_to_zoho"
MOBILE = "13812345678"


@pytest.fixture
def history(tmp_path: Path, db_url: str) -> Iterator[tuple[DemoEnvironment, list[int]]]:
    """Runs of several kinds, recorded by real runs against the simulators (and two written through the store)."""
    with DemoEnvironment(tmp_path / "demo", customers=12, bad_fraction=0.25, seed=3, state_url=db_url,
                         jobs={JOB: {"source": "corebank.Customer", "target": "zoho_cn.Contacts",
                                     "source_mapping": "corebank_soap_customer.yaml",
                                     "target_mapping": "zoho_contacts.yaml",
                                     "consent_purpose": "SHARE_WITH_CRM_VENDOR",
                                     "match_rules": [["CN_RIC"], ["CN_USCC"]]}}) as env:
        rt = bootstrap(env.config_path)
        try:
            first = run_job(rt, JOB)              # dead letters for the bad records
            noop = run_job(rt, JOB)               # nothing changed
            with rt.store.transaction() as tx:
                dry = tx.start_run(JOB, actor="user", dry_run=True)
                tx.finish_run(dry, "succeeded", counts={"read": 12})
                partial = tx.start_run("other_job", actor="scheduler")
                tx.finish_run(partial, "partial", counts={
                    "read": 5, "created": 2, "failed": 3,
                    "refusals": {"DUPLICATE_DATA": 2, f"mobile {MOBILE} invalid": 1, "MANDATORY_NOT_FOUND": 4}},
                    error_summary="3 records refused by the CRM")
        finally:
            rt.close()
        env.core.stop()
        rt = bootstrap(env.config_path)   # a new process's connections (the old ones may outlive the server)
        try:
            failed = run_job(rt, JOB)
            assert failed.status == "failed"
        finally:
            rt.close()
        yield env, [int(first.run_id), int(noop.run_id), dry, partial, int(failed.run_id)]


def _cli(env: DemoEnvironment, *args: str) -> list | dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, [*args, "--config", str(env.config_path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_runs_list_shows_every_run_with_counts_duration_status_and_reason(history) -> None:  # type: ignore
    env, (first, noop, dry, partial, failed) = history
    rows = _cli(env, "runs", "list")
    assert [r["id"] for r in rows] == [failed, partial, dry, noop, first]   # newest first
    by_id = {r["id"]: r for r in rows}
    assert by_id[first]["status"] in ("succeeded", "partial") and by_id[first]["counts"]["failed"] > 0
    assert by_id[first]["counts"]["read"] == 12 and by_id[first]["duration_seconds"] >= 0
    assert by_id[noop]["counts"].get("created", 0) == 0
    assert by_id[dry]["dry_run"] is True
    assert by_id[failed]["status"] == "failed" and "SystemUnavailableError" in by_id[failed]["reason"]
    assert by_id[partial]["reason"] == "3 records refused by the CRM"

    assert [r["id"] for r in _cli(env, "runs", "list", "--job", "other_job")] == [partial]
    assert [r["id"] for r in _cli(env, "runs", "list", "--limit", "2")] == [failed, partial]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert _cli(env, "runs", "list", "--since", tomorrow) == []
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat(timespec="seconds")
    assert len(_cli(env, "runs", "list", "--since", an_hour_ago, "--job", JOB)) == 4
    bad = CliRunner().invoke(app, ["runs", "list", "--config", str(env.config_path), "--since", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO date" in bad.output


def test_runs_show_breaks_the_counts_out_with_the_top_refusal_reasons(history) -> None:  # type: ignore
    env, (first, _noop, _dry, partial, _failed) = history
    run = _cli(env, "runs", "show", str(partial))
    assert run["counts"]["refusals"]["DUPLICATE_DATA"] == 2 and run["status"] == "partial"
    assert MOBILE not in json.dumps(run)                      # a reason quoting personal data is masked
    shown = subprocess.run([sys.executable, "-m", "crmbridge", "runs", "show", str(partial), "--config",
                            str(env.config_path), "--top", "2"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, COLUMNS="160"))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "top refusal reasons" in out and "… and 1 more reasons" in out
    assert out.index("MANDATORY_NOT_FOUND") < out.index("DUPLICATE_DATA")   # most frequent first
    assert "3 records refused by the CRM" in out and MOBILE not in out
    plain = CliRunner().invoke(app, ["runs", "show", str(first), "--config", str(env.config_path)])
    # the engine's own run: its bad records' refusals are ranked by stage and code, and 3 of 12 refused is above
    # the job's max_failed_ratio of 10 %: failed, not succeeded
    assert plain.exit_code == 0 and "top refusal reasons" in plain.output and "map_in: " in plain.output
    # which release made the decisions: the installed version, as crmbridge --version prints it
    from crmbridge.core.extras import installed_version

    assert _cli(env, "runs", "show", str(first))["crmbridge_version"] == installed_version() != "unknown"
    assert f"crmbridge {installed_version()}" in plain.output
    assert "failed" in plain.output
    missing = CliRunner().invoke(app, ["runs", "show", "9999", "--config", str(env.config_path)])
    assert isinstance(missing.exception, ConfigurationError) and "no run 9999" in str(missing.exception)


def test_runs_list_draws_a_table(history) -> None:  # type: ignore[no-untyped-def]
    env, (_first, _noop, _dry, partial, failed) = history
    listing = subprocess.run([sys.executable, "-m", "crmbridge", "runs", "list", "--config", str(env.config_path)],
                             capture_output=True, text=True, timeout=60, env=dict(os.environ, COLUMNS="200"))
    assert listing.returncode == 0, listing.stderr
    assert "crmbridge runs" in listing.stdout and "(dry run)" in listing.stdout
    assert "SystemUnavailableError" in listing.stdout and "other_job" in listing.stdout
