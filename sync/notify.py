"""Webhook notifications: a failed or overdue run, growing dead letters, an expiring credential...

Configured under ``notifications.webhooks[]`` (url, events, secret, timeout). Each notification is one POST of a
JSON object::

    {"event": "run_failed", "job": "core_to_zoho", "run_id": "12", "at": "2026-11-28T15:00:00.000Z",
     "host": "sync-01", "summary": "...", "details": {...}}

with the headers ``X-Crmbridge-Event`` and, when the webhook has a ``secret``, ``X-Crmbridge-Signature:
sha256=<hex HMAC-SHA256 of the exact body>`` (the receiver recomputes it with the shared secret; see
:func:`sign`). Texts are masked (:func:`crmbridge.core.logsafe.mask_text`): no personal data, no secret.

Notifying never breaks a run: a receiver that is down, slow or answers an error is logged (and counted in the
``crmbridge_notifications_total{outcome="failed"}`` metric), nothing more.

Events (:data:`EVENTS`):

====================  ======================================================================================
run_failed            a run ended ``failed`` (fatal error; the cursor stays where the last batch left it)
run_partial           a run ended ``partial``/``stopped``/``suspicious`` or with records it could not sync
run_crashed           a run ended ``crashed``, or raised instead of ending (``crmbridge run``/``dispatch``)
run_overdue           a run is still going past the job's ``expected_duration_seconds`` (sent while it runs)
dead_letter           the job's open dead letters grew during the run
conflict              the job's conflicts waiting for review grew during the run
lease_lost            the run lost its lease (another process took the job over)
credential_expiring   a vendor refused the credentials (expired or revoked refresh token, secret, code)
====================  ======================================================================================
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from crmbridge.config import JobConfig, NotificationsConfig
from crmbridge.core.errors import SecretError
from crmbridge.core.logsafe import mask_text, register_secret
from crmbridge.core.secrets import resolve_secret
from crmbridge.sync.report import RunReport
from crmbridge.sync.state.ledger import Action

__all__ = ["EVENTS", "EVENT_HEADER", "SIGNATURE_HEADER", "Notifier", "events_for_run", "sign", "verify"]

log = logging.getLogger("crmbridge.notify")

EVENTS = ("run_failed", "run_partial", "run_crashed", "run_overdue", "dead_letter", "conflict", "lease_lost",
          "credential_expiring")
SIGNATURE_HEADER = "X-Crmbridge-Signature"
EVENT_HEADER = "X-Crmbridge-Event"
#: error classes (as a run report names them) that mean the credentials themselves are no longer accepted
_CREDENTIAL_ERRORS = ("AuthenticationError", "SecretError")


def sign(body: bytes, secret: str) -> str:
    """The signature header value of ``body``: ``sha256=`` and the hex HMAC-SHA256 keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time compare); for receivers and tests."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header or "")


def events_for_run(report: RunReport, job: JobConfig, *, before: Mapping[str, int],
                   after: Mapping[str, int]) -> list[tuple[str, str, dict[str, Any]]]:
    """What a finished run should be notified as: ``[(event, summary, details)]``.

    Args:
        report: the run's report.
        job: the job's configuration.
        before: ``{"dead_letters": n, "conflicts": m}`` open before the run.
        after: the same after it.
    """
    out: list[tuple[str, str, dict[str, Any]]] = []
    error = report.error or ""
    if report.status == "failed":
        out.append(("run_failed", f"run {report.run_id} of {report.job} failed: {error}", {"error": error}))
        if "lost the lease" in error:
            out.append(("lease_lost", f"run {report.run_id} of {report.job} lost its lease", {"error": error}))
        if error.split(":", 1)[0] in _CREDENTIAL_ERRORS:
            out.append(("credential_expiring", f"{report.job}: a system refused its credentials; renew them",
                        {"error": error}))
    if report.status == "crashed":
        out.append(("run_crashed", f"run {report.run_id} of {report.job} crashed: {error}",
                    {"status": report.status, "error": error}))
    failed_records = report.actions.get(Action.FAILED, 0)
    if report.status in ("partial", "stopped", "suspicious") or (report.status == "succeeded" and failed_records):
        out.append(("run_partial", f"run {report.run_id} of {report.job} ended {report.status}"
                    + (f" with {failed_records} record(s) not synced" if failed_records else ""),
                    {"status": report.status, "failed_records": failed_records, "warnings": report.warnings}))
    if job.expected_duration_seconds and report.duration_seconds > job.expected_duration_seconds:
        out.append(("run_overdue", f"run {report.run_id} of {report.job} took {report.duration_seconds:.0f} s "
                    f"(expected at most {job.expected_duration_seconds} s)",
                    {"duration_seconds": round(report.duration_seconds, 3),
                     "expected_duration_seconds": job.expected_duration_seconds, "finished": True}))
    for key, event, what in (("dead_letters", "dead_letter", "open dead letters"),
                             ("conflicts", "conflict", "conflicts waiting for review")):
        was, now = int(before.get(key, 0)), int(after.get(key, 0))
        if now > was:
            out.append((event, f"{report.job}: {what} grew from {was} to {now}", {"before": was, "after": now}))
    return out


class Notifier:
    """Sends notifications to the configured webhooks that subscribe to each event.

    Args:
        config: ``notifications`` of the configuration.
        base_dir: where relative ``file:`` secret references start.
        session: the HTTP session (tests may inject one).
        on_outcome: called with ``(event, "sent" | "failed")`` per webhook (metrics).
    """

    def __init__(self, config: NotificationsConfig, *, base_dir: Any = None, session: requests.Session | None = None,
                 on_outcome: Callable[[str, str], None] | None = None) -> None:
        self.webhooks = list(config.webhooks)
        self.base_dir = base_dir
        self.session = session or requests.Session()
        self.on_outcome = on_outcome
        self.host = socket.gethostname()

    def _secret(self, ref: str | None) -> str | None:
        if not ref:
            return None
        value = resolve_secret(ref, base_dir=self.base_dir).get_secret_value()
        register_secret(value)
        return value

    def notify(self, event: str, *, job: str, run_id: str | None, summary: str,
               details: Mapping[str, Any] | None = None) -> int:
        """Send ``event`` to every webhook subscribed to it; returns how many accepted it (2xx). Never raises."""
        if event not in EVENTS:
            raise ValueError(f"unknown notification event {event!r}; known: {', '.join(EVENTS)}")
        payload = {"event": event, "job": job, "run_id": run_id,
                   "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                   "host": self.host, "summary": mask_text(summary),
                   "details": json.loads(mask_text(json.dumps(dict(details or {}), ensure_ascii=False, default=str)))}
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
        delivered = 0
        for hook in self.webhooks:
            if event not in hook.events:
                continue
            url = str(hook.url)
            try:
                headers = {"Content-Type": "application/json", EVENT_HEADER: event,
                           "User-Agent": "crmbridge-notifier"}
                secret = self._secret(hook.secret)
                if secret:
                    headers[SIGNATURE_HEADER] = sign(body, secret)
                resp = self.session.post(url, data=body, headers=headers, timeout=hook.timeout)
                if not 200 <= resp.status_code < 300:
                    raise requests.HTTPError(f"HTTP {resp.status_code}")
            except (requests.RequestException, SecretError, OSError) as exc:
                log.error("notification %s for job %s to %s failed: %s", event, job, _host_of(url),
                          mask_text(f"{type(exc).__name__}: {exc}"))
                self._outcome(event, "failed")
                continue
            delivered += 1
            log.info("notification %s for job %s sent to %s", event, job, _host_of(url))
            self._outcome(event, "sent")
        return delivered

    def _outcome(self, event: str, outcome: str) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(event, outcome)
            except Exception:  # metrics must not break notifying
                log.exception("notification outcome hook failed")

    def close(self) -> None:
        self.session.close()


def _host_of(url: str) -> str:
    """A webhook URL as logged: scheme, host and port only (paths and queries may carry tokens)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
