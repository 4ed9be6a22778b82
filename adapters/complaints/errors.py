"""The ONE error classification table of the complaint-service adapter.

The service answers every failure with an RFC 9457 problem document (``application/problem+json``)::

    {"type": "https://complaints.bank.example/problems/validation", "title": "Validation failed", "status": 422,
     "code": "VALIDATION_FAILED", "detail": "1 field is invalid", "request_id": "c0a8…",
     "errors": [{"field": "priority", "code": "NOT_ALLOWED", "message": "one of LOW, MEDIUM, HIGH, URGENT"}]}

``code`` is the machine-readable reason (docs/vendors/complaints.md §4 lists them); first match wins below. Vendor
text is scrubbed before it reaches a message.
"""

from __future__ import annotations

from typing import Any

import requests

from crmbridge.adapters._json import response_json
from crmbridge.adapters.errortable import Classified, ErrorKind, ErrorRule, ErrorTable
from crmbridge.core.errors import (
    AdapterError,
    BadResponseError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TransientServerError,
)
from crmbridge.core.logsafe import mask_text
from crmbridge.core.retry import retry_after_seconds

__all__ = ["ERROR_TABLE", "VENDOR", "classify", "to_error", "to_record_error"]

VENDOR = "complaints"

#: the table: exact codes first, then rows by status
ERROR_TABLE = ErrorTable(codes={
    "VALIDATION_FAILED": ErrorRule(ErrorKind.VALIDATION, message="the complaint service refused a value"),
    "UNKNOWN_PARTY": ErrorRule(ErrorKind.REJECTED, message="the complaint service does not know the customer yet"),
    "IDEMPOTENCY_KEY_REUSED": ErrorRule(ErrorKind.REJECTED,
                                        message="the idempotency key was used for another complaint"),
    "IDEMPOTENCY_KEY_MISSING": ErrorRule(ErrorKind.REQUEST, message="the service requires an Idempotency-Key"),
    "NOT_FOUND": ErrorRule(ErrorKind.NOT_FOUND, message="no such complaint"),
    "VERSION_MISMATCH": ErrorRule(ErrorKind.CONFLICT, message="the complaint changed since the version written"),
    "INVALID_TRANSITION": ErrorRule(ErrorKind.REJECTED, message="the complaint's state does not allow the change"),
    "UNAUTHORIZED": ErrorRule(ErrorKind.AUTH, message="API key refused"),
    "FORBIDDEN": ErrorRule(ErrorKind.PERMISSION, message="the API key lacks a permission"),
    "RATE_LIMITED": ErrorRule(ErrorKind.THROTTLED, message="rate limited"),
    "MAINTENANCE": ErrorRule(ErrorKind.TRANSIENT, message="service in maintenance"),
}, rules=(
    ErrorRule(ErrorKind.AUTH, status=401, message="API key refused"),
    ErrorRule(ErrorKind.PERMISSION, status=403, message="the API key lacks a permission"),
    ErrorRule(ErrorKind.NOT_FOUND, status=404, message="no such complaint"),
    ErrorRule(ErrorKind.CONFLICT, status=412, message="the complaint changed since the version written"),
    ErrorRule(ErrorKind.VALIDATION, status=422, message="the complaint service refused a value"),
    ErrorRule(ErrorKind.THROTTLED, status=429, message="rate limited"),
    ErrorRule(ErrorKind.TRANSIENT, status="5xx", message="server error"),
    ErrorRule(ErrorKind.REQUEST, status="4xx", message="the complaint service refused the request"),
), errors={ErrorKind.NOT_FOUND: RequestError, ErrorKind.CONFLICT: RequestError, ErrorKind.VALIDATION: RequestError,
           ErrorKind.REJECTED: RequestError})


def _scrub(text: Any, limit: int = 200) -> str:
    s = mask_text(" ".join(str(text or "").split()))
    return s[:limit] + ("…" if len(s) > limit else "")


def classify(resp: requests.Response) -> Classified:
    """Classify a non-2xx reply (a problem document, or a gateway's page that is not one)."""
    rid = resp.headers.get("X-Request-Id")
    try:
        body: Any = response_json(resp, vendor=VENDOR, request_id=rid)
    except ValueError:
        body = None
    problem = body if isinstance(body, dict) else {}
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    errors = problem.get("errors") if isinstance(problem.get("errors"), list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    field = first.get("field") if isinstance(first.get("field"), str) else None
    rule = ERROR_TABLE.lookup(status=resp.status_code, code=code) or ErrorRule(ErrorKind.REQUEST, "unexpected reply")
    if body is None:
        detail = f"HTTP {resp.status_code} with a body that is not a problem document (a gateway or proxy?)"
    else:
        detail = _scrub(problem.get("detail") or problem.get("title"))
        if field:
            detail += f" (field {field}: {_scrub(first.get('code'), 40)})"
    head = rule.message or "unexpected reply"
    if code:
        head += f" [vendor code {_scrub(code, 60)}]"
    return Classified(rule.kind, f"{head}: {detail}" if detail else head, resp.status_code, code, field, rid,
                      retry_after_seconds(resp.headers.get("Retry-After")))


def to_error(c: Classified, *, where: str | None = None) -> AdapterError:
    """The crmbridge exception for a classified reply that fails the whole call."""
    cls = ERROR_TABLE.error_class(c.kind)
    kw: dict[str, Any] = {"vendor": VENDOR, "status": c.status, "vendor_code": c.vendor_code,
                          "request_id": c.request_id, "where": where}
    if issubclass(cls, ThrottledError | TransientServerError):
        kw["retry_after"] = c.retry_after
    if not issubclass(cls, AdapterError):
        return BadResponseError(c.message, **kw)
    return cls(c.message, **kw)


def to_record_error(c: Classified) -> RecordRejectedError:
    """A refusal of one complaint, as its write result's error."""
    return RecordRejectedError(c.message, field=c.field, code=c.vendor_code or c.kind.value)
