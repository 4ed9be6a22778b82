"""The ONE error classification table of the core-banking REST adapter.

Every non-2xx reply is classified here, first match wins, by HTTP status, the vendor's error code (a regular
expression matched in full) and, for 401, the authentication type in use. The configuration's
``business_errors`` rows are tried before the built-in ones, so a bank's own codes ("stale version" as a 400
with a business code, say) need configuration, not code.

Fineract's error body (``PlatformApiDataValidationException`` and friends)::

    {"developerMessage": "...", "httpStatusCode": "400", "defaultUserMessage": "...",
     "userMessageGlobalisationCode": "validation.msg.validation.errors.exist",
     "errors": [{"developerMessage": "...", "defaultUserMessage": "...", "parameterName": "mobileNo",
                 "userMessageGlobalisationCode": "validation.msg.client.mobileNo.exceeds.max.length",
                 "value": null, "args": [...]}]}

Fineract quirks the table encodes: data-integrity failures (a duplicate ``externalId``) come back as **403**
with an ``error.msg.…duplicate…`` code, which is a record refusal, not a permission problem; a missing or
unknown tenant is a **400** from the servlet filter ("No tenant identifier found" / "Invalid tenant"), which is
configuration; bad Basic credentials are **401**. Other services send ``{"error": "invalid_token"}`` (OAuth2) or
``{"code", "message"}``; :data:`DEFAULT_ERROR_PATHS` reads all of these.

Vendor text is scrubbed before it reaches a message (:func:`crmbridge.core.logsafe.mask_text`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from crmbridge.adapters._json import response_json
from crmbridge.adapters._paths import vendor_get
from crmbridge.adapters.corebank_rest.config import DEFAULT_ERROR_PATHS
from crmbridge.adapters.errortable import Classified, ErrorKind, ErrorRule, ErrorTable
from crmbridge.core.errors import (
    AdapterError,
    BadResponseError,
    CrmBridgeError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TokenExpiredError,
    TransientServerError,
)
from crmbridge.core.logsafe import mask_text
from crmbridge.core.retry import retry_after_seconds

__all__ = [
    "DEFAULT_ERROR_PATHS",
    "ERROR_TABLE",
    "Classified",
    "ErrorKind",
    "ErrorRule",
    "bad_response",
    "classify",
    "retry_after",
    "scrub",
    "to_error",
    "to_record_error",
]

VENDOR = "corebank_rest"


#: The table. Rows are tried in order (after the configuration's ``business_errors``).
ERROR_TABLE = ErrorTable(rules=(
    ErrorRule(ErrorKind.VALIDATION, status=400, code=r"validation\.msg\..*", message="the core refused a value"),
    ErrorRule(ErrorKind.AUTH, status=400, text=r"tenant", message="tenant refused: check the tenant header "
                                                      "(Fineract-Platform-TenantId) in the system's headers"),
    ErrorRule(ErrorKind.REQUEST, status=400, message="the core refused the request"),
    ErrorRule(ErrorKind.TOKEN_EXPIRED, status=401, auth="bearer", message="access token refused (expired?)"),
    ErrorRule(ErrorKind.AUTH, status=401, message="credentials refused"),
    ErrorRule(ErrorKind.REJECTED, status=403, code=r"error\.msg\..*(duplicate|integrity|already).*",
              message="the core refused the record (data integrity)"),
    ErrorRule(ErrorKind.PERMISSION, status=403, message="the service user lacks a permission"),
    ErrorRule(ErrorKind.NOT_FOUND, status=404, message="no such record"),
    ErrorRule(ErrorKind.TRANSIENT, status=408, message="request timeout"),
    ErrorRule(ErrorKind.CONFLICT, status=409, message="the record changed since the version written against"),
    ErrorRule(ErrorKind.CONFLICT, status=412, message="the record changed since the version written against"),
    ErrorRule(ErrorKind.VALIDATION, status=422, message="the core refused a value"),
    ErrorRule(ErrorKind.THROTTLED, status=429, message="rate limited"),
    ErrorRule(ErrorKind.TRANSIENT, status="5xx", message="server error"),
    ErrorRule(ErrorKind.REQUEST, status="4xx", message="the core refused the request"),
), errors={
    # record-level outcomes come back to the adapter (a get's None, a write result); raised, they are the
    # request's refusal
    ErrorKind.NOT_FOUND: RequestError, ErrorKind.CONFLICT: RequestError, ErrorKind.VALIDATION: RequestError,
    ErrorKind.REJECTED: RequestError, ErrorKind.QUOTA: RequestError,
})


def scrub(text: Any, limit: int = 200) -> str:
    """Vendor text made safe for messages: personal data masked, whitespace folded, length capped."""
    if text is None:
        return ""
    s = mask_text(" ".join(str(text).split()))
    return s[:limit] + ("…" if len(s) > limit else "")


def retry_after(resp: requests.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); ``None`` when absent or
    unreadable (the policy's own backoff applies)."""
    return retry_after_seconds(resp.headers.get("Retry-After"), now)


def _body_kind(resp: requests.Response) -> str:
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
    head = resp.content[:200].lstrip().lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or "html" in ctype:
        return "an HTML body"
    return "a plain-text body"


def _first(body: Any, paths: Sequence[str]) -> str | None:
    for p in paths:
        v = vendor_get(body, p)
        if isinstance(v, str | int) and not isinstance(v, bool) and str(v):
            return str(v)
    return None


def classify(resp: requests.Response, *, auth: str, extra: Iterable[ErrorRule] = (),
             error_paths: Mapping[str, Sequence[str]] = DEFAULT_ERROR_PATHS,
             request_id_header: str = "X-Request-Id") -> Classified:
    """Classify a non-2xx reply."""
    try:
        body: Any = response_json(resp, vendor=VENDOR, request_id=resp.headers.get(request_id_header))
    except ValueError:
        body = None
    text = resp.text[:500] if body is None else ""
    code = _first(body, error_paths.get("code", ())) if body is not None else None
    vendor_msg = _first(body, error_paths.get("message", ())) if body is not None else text
    field = _first(body, error_paths.get("field", ())) if body is not None else None
    status = resp.status_code
    rule = ERROR_TABLE.lookup(extra=extra, status=status, code=code, auth=auth, text=vendor_msg or "") \
        or ErrorRule(ErrorKind.REQUEST, "unexpected reply")
    if body is None:
        # not the service's JSON: a gateway, proxy or firewall answered (nginx's HTML page, an empty 503,
        # "upstream request timeout"): say so rather than quote its markup
        kind = _body_kind(resp)
        detail = f"HTTP {status} with {kind} (a gateway or proxy in front of the service?)"
        if kind == "a plain-text body":
            detail += f": {scrub(text, 120)}"
    else:
        detail = scrub(vendor_msg)
    head = rule.message or "unexpected reply"
    if code is not None:
        # the vendor's code is named in the message: an unknown business code must be recognisable from the log
        head = f"{head} [vendor code {scrub(code, 80)}" + ("" if rule.code else ", not in the error table") + "]"
    message = f"{head}: {detail}" if detail else f"{head} (HTTP {status})"
    return Classified(rule.kind, message, status, code, field, resp.headers.get(request_id_header),
                      retry_after(resp))


def to_error(c: Classified, *, where: str | None = None) -> CrmBridgeError:
    """The crmbridge exception for a classified reply (raised when it is not a per-record outcome)."""
    cls = ERROR_TABLE.error_class(c.kind)
    if not issubclass(cls, AdapterError):   # a configured row saying "configuration": outside the adapter branch
        return cls(c.message, where=where)
    kw: dict[str, Any] = {"vendor": VENDOR, "status": c.status, "vendor_code": c.vendor_code,
                          "request_id": c.request_id, "where": where}
    if issubclass(cls, ThrottledError | TransientServerError | TokenExpiredError):
        kw["retry_after"] = c.retry_after
    return cls(c.message, **kw)


def to_record_error(c: Classified) -> RecordRejectedError:
    """A per-record refusal (validation, duplicate, not found) as the write result's error."""
    return RecordRejectedError(c.message, field=c.field, code=c.vendor_code or c.kind.value)


def bad_response(message: str, resp: requests.Response | None = None) -> BadResponseError:
    return BadResponseError(message, vendor=VENDOR, status=None if resp is None else resp.status_code)
