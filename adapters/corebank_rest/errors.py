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

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from crmbridge.adapters._json import response_json
from crmbridge.adapters._paths import vendor_get
from crmbridge.core.errors import (
    AdapterError,
    AuthenticationError,
    BadResponseError,
    PermissionDeniedError,
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
    "Rule",
    "bad_response",
    "classify",
    "retry_after",
    "scrub",
    "to_error",
    "to_record_error",
]

VENDOR = "corebank_rest"


class ErrorKind(enum.StrEnum):
    """What a failure means for the caller."""

    AUTH = "auth"                    # credentials or tenant refused: stop the run (configuration)
    TOKEN_EXPIRED = "token_expired"  # bearer token expired: a fresh token, once
    PERMISSION = "permission"        # the service user lacks a right: stop the run
    THROTTLED = "throttled"          # rate limited: retried, honouring Retry-After
    TRANSIENT = "transient"          # 5xx, gateway timeouts: retried
    NOT_FOUND = "not_found"          # no such customer: a get returns None, a write is a record failure
    CONFLICT = "conflict"            # stale version: WriteStatus.CONFLICT, never an overwrite
    VALIDATION = "validation"        # the core refused the record's values: dead letter
    REJECTED = "rejected"            # any other refusal of this one record (duplicate key...): dead letter
    REQUEST = "request"              # crmbridge sent something the service refuses (bug or configuration)


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: HTTP ``status`` (``"5xx"`` for a class), ``code`` regex (``None``: any), ``auth`` type
    (``None``: any), ``text`` regex on the message (``None``: any) → ``kind``."""

    status: int | str
    kind: ErrorKind
    code: str | None = None
    auth: str | None = None
    text: str | None = None
    message: str = ""

    def matches(self, status: int, code: str | None, auth: str, text: str) -> bool:
        if isinstance(self.status, str):
            if status // 100 != int(self.status[0]):
                return False
        elif status != self.status:
            return False
        if self.auth is not None and self.auth != auth:
            return False
        if self.code is not None and (code is None or not re.fullmatch(self.code, code)):
            return False
        return self.text is None or re.search(self.text, text or "", re.IGNORECASE) is not None


#: The table. Rows are tried in order (after the configuration's ``business_errors``).
ERROR_TABLE: tuple[Rule, ...] = (
    Rule(400, ErrorKind.VALIDATION, code=r"validation\.msg\..*", message="the core refused a value"),
    Rule(400, ErrorKind.AUTH, text=r"tenant", message="tenant refused: check the tenant header "
                                                      "(Fineract-Platform-TenantId) in the system's headers"),
    Rule(400, ErrorKind.REQUEST, message="the core refused the request"),
    Rule(401, ErrorKind.TOKEN_EXPIRED, auth="bearer", message="access token refused (expired?)"),
    Rule(401, ErrorKind.AUTH, message="credentials refused"),
    Rule(403, ErrorKind.REJECTED, code=r"error\.msg\..*(duplicate|integrity|already).*",
         message="the core refused the record (data integrity)"),
    Rule(403, ErrorKind.PERMISSION, message="the service user lacks a permission"),
    Rule(404, ErrorKind.NOT_FOUND, message="no such record"),
    Rule(408, ErrorKind.TRANSIENT, message="request timeout"),
    Rule(409, ErrorKind.CONFLICT, message="the record changed since the version written against"),
    Rule(412, ErrorKind.CONFLICT, message="the record changed since the version written against"),
    Rule(422, ErrorKind.VALIDATION, message="the core refused a value"),
    Rule(429, ErrorKind.THROTTLED, message="rate limited"),
    Rule("5xx", ErrorKind.TRANSIENT, message="server error"),
    Rule("4xx", ErrorKind.REQUEST, message="the core refused the request"),
)

#: Where error details are in a body, first found wins (Fineract, OAuth2, generic ``{code, message}``).
DEFAULT_ERROR_PATHS: Mapping[str, tuple[str, ...]] = {
    "code": ("errors[0].userMessageGlobalisationCode", "userMessageGlobalisationCode", "error.code", "code",
             "error"),
    "message": ("errors[0].defaultUserMessage", "defaultUserMessage", "developerMessage", "error.message",
                "message", "error_description"),
    "field": ("errors[0].parameterName", "error.field", "field"),
}


@dataclass(frozen=True, slots=True)
class Classified:
    kind: ErrorKind
    message: str
    status: int
    vendor_code: str | None = None
    field: str | None = None
    request_id: str | None = None
    retry_after: float | None = None


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


def classify(resp: requests.Response, *, auth: str, extra: Iterable[Rule] = (),
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
    rule = next((r for r in (*extra, *ERROR_TABLE) if r.matches(status, code, auth, vendor_msg or "")),
                Rule(status, ErrorKind.REQUEST, message="unexpected reply"))
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


_KIND_ERRORS: Mapping[ErrorKind, type[AdapterError]] = {
    ErrorKind.AUTH: AuthenticationError,
    ErrorKind.TOKEN_EXPIRED: TokenExpiredError,
    ErrorKind.PERMISSION: PermissionDeniedError,
    ErrorKind.THROTTLED: ThrottledError,
    ErrorKind.TRANSIENT: TransientServerError,
    ErrorKind.NOT_FOUND: RequestError,
    ErrorKind.CONFLICT: RequestError,
    ErrorKind.VALIDATION: RequestError,
    ErrorKind.REJECTED: RequestError,
    ErrorKind.REQUEST: RequestError,
}


def to_error(c: Classified, *, where: str | None = None) -> AdapterError:
    """The crmbridge exception for a classified reply (raised when it is not a per-record outcome)."""
    cls = _KIND_ERRORS[c.kind]
    kw: dict[str, Any] = {"vendor": VENDOR, "status": c.status, "vendor_code": c.vendor_code,
                          "request_id": c.request_id, "where": where}
    if cls in (ThrottledError, TransientServerError, TokenExpiredError):
        kw["retry_after"] = c.retry_after
    return cls(c.message, **kw)


def to_record_error(c: Classified) -> RecordRejectedError:
    """A per-record refusal (validation, duplicate, not found) as the write result's error."""
    return RecordRejectedError(c.message, field=c.field, code=c.vendor_code or c.kind.value)


def bad_response(message: str, resp: requests.Response | None = None) -> BadResponseError:
    return BadResponseError(message, vendor=VENDOR, status=None if resp is None else resp.status_code)
