"""JSON log lines, notification rules and the notifier's failure handling, without a scheduler process."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Iterator

import pytest
from scheduler_support import WebhookReceiver

from crmbridge.config import JobConfig, NotificationsConfig
from crmbridge.core.logsafe import JsonFormatter, PersonalDataFilter, bind_log_context, reset_log_context
from crmbridge.sync.notify import Notifier, events_for_run, sign, verify
from crmbridge.sync.report import RunReport
from crmbridge.sync.state.ledger import Action

JOB_CFG = dict(source="corebank.Customer", target="zoho_cn.Contacts", source_mapping="corebank_soap_customer.yaml",
               target_mapping="zoho_contacts.yaml")


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(PersonalDataFilter(secrets=["s3cr3t-token-value"]))
    logger = logging.getLogger("crmbridge.test.jsonlog")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, buf
    finally:
        logger.removeHandler(handler)


def test_json_lines_carry_context_and_are_masked(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buf = json_log
    token = bind_log_context(job="core_to_zoho", run_id=42)
    try:
        logger.info("customer %s mobile %s token %s", "11010519491231002X", "13812345678", "s3cr3t-token-value")
        try:
            raise ValueError("bad mobile 13912345678")
        except ValueError:
            logger.exception("failed")
    finally:
        reset_log_context(token)
    logger.warning("after the run")
    first, second, third = (json.loads(line) for line in buf.getvalue().splitlines())
    assert first["job"] == "core_to_zoho" and first["run_id"] == "42" and first["level"] == "INFO"
    assert "13812345678" not in first["msg"] and "11010519491231002X" not in first["msg"]
    assert "s3cr3t-token-value" not in buf.getvalue()
    assert "13912345678" not in second["exc"] and "ValueError" in second["exc"]
    assert "job" not in third and "run_id" not in third


def _report(status: str = "succeeded", **kw: object) -> RunReport:
    r = RunReport(run_id="7", job="j", status=status)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


@pytest.mark.parametrize(("report", "before", "after", "expected"), [
    (_report(), {}, {}, set()),
    (_report("failed", error="TransientServerError: zoho 503"), {}, {}, {"run_failed"}),
    (_report("failed", error="AuthenticationError: invalid_code"), {}, {}, {"run_failed", "credential_expiring"}),
    (_report("failed", error="FatalSyncError: lost the lease on job j"), {}, {}, {"run_failed", "lease_lost"}),
    (_report("stopped"), {}, {}, {"run_partial"}),
    (_report("partial"), {}, {}, {"run_partial"}),
    (_report("suspicious"), {}, {}, {"run_partial"}),
    (_report("crashed", error="KeyError: 'data'"), {}, {}, {"run_crashed"}),
    (_report(actions=Counter({Action.FAILED: 2})), {"dead_letters": 3}, {"dead_letters": 5},
     {"run_partial", "dead_letter"}),
    (_report(), {"dead_letters": 5, "conflicts": 1}, {"dead_letters": 2, "conflicts": 2}, {"conflict"}),
    (_report(duration_seconds=30.0), {}, {}, {"run_overdue"}),
    (_report(duration_seconds=5.0), {}, {}, set()),
])
def test_events_for_run(report: RunReport, before: dict, after: dict, expected: set) -> None:  # type: ignore[type-arg]
    job = JobConfig(**JOB_CFG, expected_duration_seconds=10)
    assert {e for e, _, _ in events_for_run(report, job, before=before, after=after)} == expected


def test_a_receiver_that_fails_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[tuple[str, str]] = []
    with WebhookReceiver(status=500) as bad, WebhookReceiver() as good:
        cfg = NotificationsConfig.model_validate({"webhooks": [
            {"url": bad.url, "events": ["run_failed"]}, {"url": good.url, "events": ["run_failed"]},
            {"url": good.url, "events": ["dead_letter"]}]})
        notifier = Notifier(cfg, on_outcome=lambda e, o: outcomes.append((e, o)))
        with caplog.at_level(logging.ERROR, logger="crmbridge.notify"):
            sent = notifier.notify("run_failed", job="j", run_id="1", summary="mobile 13812345678 refused")
        notifier.close()
        assert sent == 1 and outcomes == [("run_failed", "failed"), ("run_failed", "sent")]
        assert len(bad.received) == 1 and len(good.received) == 1      # dead_letter subscribers not called
        [(body, headers)] = good.received
        assert "13812345678" not in body.decode() and "X-Crmbridge-Signature" not in headers  # no secret: unsigned
        assert "HTTP 500" in caplog.text and "/hooks" not in caplog.text  # the URL's path is not logged
    with pytest.raises(ValueError, match="unknown notification event"):
        notifier.notify("nope", job="j", run_id=None, summary="")


def test_signature_is_hmac_sha256_of_the_body() -> None:
    import hashlib
    import hmac

    body = b'{"event":"run_failed"}'
    assert sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify(body, "k", sign(body, "k")) and not verify(body, "other", sign(body, "k"))
    assert not verify(body, "k", None)
