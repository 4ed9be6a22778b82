"""Core-banking gateway faults during whole runs (issue 13, "Truthful runs"): a gateway or proxy in front of the
SOAP service answering with its own pages, broken HTTP-200 bodies, and a misconfigured records path. A run must
never crash on a vendor reply, nor say "succeeded" having read nothing from a core that reported records."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import COMPLETED

pytestmark = pytest.mark.slow   # slow tier: full syncs through gateway faults

N = 30


@pytest.mark.parametrize("kind", ["xhtml503", "html503", "empty503", "text503", "html429"])
def test_gateway_pages_during_a_run_are_retried(tmp_path: Path, kind: str) -> None:
    """The core's first two calls get the gateway's page: the run retries through them and reads everything.
    (A well-formed XHTML 503 page crashed the run with AssertionError before.)"""
    with DemoEnvironment(tmp_path / "demo", customers=N, seed=11) as env:
        rt = bootstrap(env.config_path)
        try:
            env.core.queue_gateway(kind, times=2)
            report = run_job(rt, "core_to_zoho")
            assert report.status in COMPLETED, report.error
            assert report.read == N and report.retries > 0
            if kind == "html429":
                assert report.throttled > 0
        finally:
            rt.close()


@pytest.mark.parametrize(("kind", "says"), [("empty200", "empty"), ("truncated200", "truncated"),
                                             ("html200", "HTML")])
def test_broken_200_fails_the_run_cleanly_and_the_next_run_reads_everything(tmp_path: Path, kind: str,
                                                                           says: str) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=N, seed=11) as env:
        rt = bootstrap(env.config_path)
        try:
            env.core.queue_gateway(kind)
            report = run_job(rt, "core_to_zoho")
            assert report.status == "failed" and report.error, report
            assert "corebank" in report.error and says in report.error, report.error
            with rt.store.transaction() as tx:
                assert tx.get_cursor("core_to_zoho", "corebank.Customer") is None
            again = run_job(rt, "core_to_zoho")
            assert again.status in COMPLETED and again.read == N
        finally:
            rt.close()


def test_a_wrong_records_path_fails_the_run_instead_of_syncing_nothing(tmp_path: Path) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=N, seed=11) as env:
        cfg = yaml.safe_load(env.config_path.read_text(encoding="utf-8"))
        # the legacy '/' form of a path is still read (and named in the one path language in errors)
        cfg["systems"]["corebank"]["operations"] = {"list": {"records": "FCUBS_BODY/Customer"}}
        env.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        rt = bootstrap(env.config_path)
        try:
            report = run_job(rt, "core_to_zoho")
            assert report.status == "failed", report
            assert "FCUBS_BODY.Customer" in (report.error or "") and "operations.list.records" in report.error
            assert env.zoho.count("Contacts") == 0
        finally:
            rt.close()
