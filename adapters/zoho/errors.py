"""The ONE place a Zoho CRM response is read and classified.

Zoho reports errors three ways (docs/vendors/zoho.md §2.2, §2.3, §4.4, §11):

* request-level: a top-level ``{"code","details","message","status":"error"}`` with an HTTP error status;
* per record: items inside ``{"data":[...]}`` with HTTP 200/201/207/400/412;
* the accounts server (token endpoint): HTTP 200 with an ``error`` key and no ``access_token``.

:data:`ERROR_TABLE` (a shared :class:`~crmbridge.adapters.errortable.ErrorTable`) maps every vendor code to what
crmbridge does next, and by HTTP status the codes it does not know; :data:`TOKEN_ERROR_TABLE` covers the accounts
server. Messages are crmbridge's own
(never the vendor's text, which may echo values) so no personal data reaches logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from crmbridge.adapters._json import response_json
from crmbridge.adapters.errortable import RECORD_KINDS, ErrorKind, ErrorRule, ErrorTable
from crmbridge.core.errors import (
    AdapterError,
    AuthenticationError,
    BadResponseError,
    RecordRejectedError,
    RequestError,
    RetryableError,
    ThrottledError,
    TransientServerError,
)
from crmbridge.core.retry import retry_after_seconds

__all__ = [
    "ERROR_TABLE",
    "TOKEN_ERROR_TABLE",
    "VENDOR",
    "item_outcome",
    "classify_item",
    "credits_remaining",
    "non_json_error",
    "raise_for_request_items",
    "raise_for_token_body",
    "read_response",
    "request_error",
    "retry_after",
]

VENDOR = "zoho"

#: the per-record outcome of a rule (a row's ``item`` column)
RECORD = "record"      # the record is rejected: WriteResult FAILED, the batch goes on
CONFLICT = "conflict"  # the record changed since the expected version: WriteResult CONFLICT


ERROR_TABLE = ErrorTable(codes={
    # authentication and authorisation
    "INVALID_TOKEN": ErrorRule(ErrorKind.TOKEN_EXPIRED, "access token expired, revoked or from another data centre"),
    "AUTHENTICATION_FAILURE": ErrorRule(ErrorKind.AUTH,
                                        "authentication failed: Authorization header missing or not 'Zoho-oauthtoken'"),
    "OAUTH_SCOPE_MISMATCH": ErrorRule(
        ErrorKind.PERMISSION, "the OAuth token lacks the scope for this call (regenerate it with those scopes)"),
    "INVALID_HOST": ErrorRule(ErrorKind.REQUEST, "api_domain is not https://www.zohoapis.{tld} (check api_domain)"),
    "NO_PERMISSION": ErrorRule(ErrorKind.PERMISSION, "the integration user lacks the module permission"),
    "AUTHORIZATION_FAILED": ErrorRule(ErrorKind.PERMISSION,
                                      "the integration user lacks the privilege for this action"),
    # the request itself
    "INVALID_URL_PATTERN": ErrorRule(ErrorKind.REQUEST, "URL not recognised (check api_domain and api_version)"),
    "INVALID_MODULE": ErrorRule(ErrorKind.REQUEST, "module name unknown or not supported by the API"),
    "INVALID_REQUEST_METHOD": ErrorRule(ErrorKind.REQUEST, "HTTP method not valid for this URL"),
    "REQUIRED_PARAM_MISSING": ErrorRule(ErrorKind.REQUEST, "a required parameter is missing"),
    "EXPECTED_PARAM_MISSING": ErrorRule(ErrorKind.REQUEST, "an expected parameter is missing"),
    "DISCRETE_PAGINATION_LIMIT_EXCEEDED": ErrorRule(ErrorKind.REQUEST,
                                                    "paged past record 2000 without page_token"),
    "PAGINATION_LIMIT_EXCEEDED": ErrorRule(ErrorKind.REQUEST, "paged past record 100,000"),
    "TOKEN_BOUND_DATA_MISMATCH": ErrorRule(ErrorKind.REQUEST, "page_token used with different parameters"),
    "EXPIRED_VALUE": ErrorRule(ErrorKind.REQUEST, "page_token expired (older than 24 h)"),
    "AMBIGUITY_DURING_PROCESSING": ErrorRule(ErrorKind.REQUEST, "conflicting parameters (page with page_token, ...)"),
    "PATTERN_NOT_MATCHED": ErrorRule(ErrorKind.REQUEST, "a parameter value is not one of the allowed values"),
    "INVALID_QUERY": ErrorRule(ErrorKind.REQUEST, "search criteria or COQL query refused"),
    "SYNTAX_ERROR": ErrorRule(ErrorKind.REQUEST, "COQL syntax error"),
    "LIMIT_REACHED": ErrorRule(ErrorKind.REQUEST, "search result limit (2000) reached"),
    "NOT_SUPPORTED": ErrorRule(ErrorKind.REQUEST, "operation not supported for this module"),
    "FEATURE_NOT_SUPPORTED": ErrorRule(ErrorKind.REQUEST, "feature not available in this edition"),
    "REQUEST_ENTITY_TOO_LARGE": ErrorRule(ErrorKind.REQUEST, "request too large"),
    "UNSUPPORTED_MEDIA_TYPE": ErrorRule(ErrorKind.REQUEST, "unsupported media type"),
    "LIMIT_EXCEEDED": ErrorRule(ErrorKind.REQUEST, "a Zoho limit was exceeded (100 records, 100 ids, 50 fields)"),
    # records: the record is refused, the batch goes on
    "INVALID_DATA": ErrorRule(ErrorKind.REJECTED, "invalid data"),
    "MANDATORY_NOT_FOUND": ErrorRule(ErrorKind.REJECTED, "required field missing"),
    "DUPLICATE_DATA": ErrorRule(ErrorKind.REJECTED, "value duplicates a unique field of another record"),
    "MULTIPLE_OR_MULTI_ERRORS": ErrorRule(ErrorKind.REJECTED, "several errors on one record"),
    "DEPENDENT_FIELD_MISSING": ErrorRule(ErrorKind.REJECTED, "a dependent field is missing"),
    "DEPENDENT_MISMATCH": ErrorRule(ErrorKind.REJECTED, "a dependent field does not match its controlling field"),
    "DEPENDENT_SERVICE_ERROR": ErrorRule(ErrorKind.REJECTED, "a dependent service refused the record"),
    "EXPECTED_FIELD_MISSING": ErrorRule(ErrorKind.REJECTED, "an expected field is missing"),
    "RECORD_LOCKED": ErrorRule(ErrorKind.REJECTED, "record is locked"),
    "NOT_APPROVED": ErrorRule(ErrorKind.REJECTED, "record is not approved yet"),
    "CANNOT_DELETE": ErrorRule(ErrorKind.REJECTED, "record cannot be deleted"),
    "ID_ALREADY_CONVERTED": ErrorRule(ErrorKind.REJECTED, "record already converted"),
    "RECORD_IN_BLUEPRINT": ErrorRule(ErrorKind.REJECTED, "record is in a blueprint"),
    "ALREADY_MODIFIED": ErrorRule(ErrorKind.CONFLICT, "record changed after the expected version"),
    # transient
    "TOO_MANY_REQUESTS": ErrorRule(ErrorKind.THROTTLED, "API credits or concurrency limit exhausted"),
    "INTERNAL_ERROR": ErrorRule(ErrorKind.TRANSIENT, "Zoho internal error"),
    "INTERNAL_SERVER_ERROR": ErrorRule(ErrorKind.TRANSIENT, "Zoho internal error"),
}, rules=(
    # codes the table does not know, by HTTP status
    ErrorRule(ErrorKind.AUTH, status=401),
    ErrorRule(ErrorKind.PERMISSION, status=403),
    ErrorRule(ErrorKind.TRANSIENT, status=408),
    ErrorRule(ErrorKind.REQUEST, status=412),
    ErrorRule(ErrorKind.THROTTLED, status=429),
    ErrorRule(ErrorKind.TRANSIENT, status="5xx"),
), errors={
    # a record code answering the whole request (not inside data[]) is the request's refusal
    ErrorKind.REJECTED: RequestError, ErrorKind.CONFLICT: RequestError,
})


#: the accounts server's HTTP-200 ``error`` values (§2.2)
TOKEN_ERROR_TABLE = ErrorTable(codes={
    "invalid_code": ErrorRule(ErrorKind.AUTH,
                              "refresh token refused (wrong, revoked or overwritten): generate a new one"),
    "invalid_client": ErrorRule(ErrorKind.AUTH,
                                "client id/secret refused, or accounts_url is the wrong data centre's accounts server"),
    "invalid_client_secret": ErrorRule(ErrorKind.AUTH, "client secret refused"),
    "invalid_redirect_uri": ErrorRule(ErrorKind.AUTH, "redirect URI refused"),
    "unsupported_grant_type": ErrorRule(ErrorKind.AUTH, "grant type refused"),
    "access denied": ErrorRule(ErrorKind.THROTTLED,
                               "token endpoint throttled (10 token requests per 10 minutes per refresh token)"),
})


def item_outcome(rule: ErrorRule) -> str | None:
    """What a code inside ``data[]`` means for its record: ``"record"`` (rejected), ``"conflict"``, or ``None``
    when it concerns the whole request."""
    if rule.kind is ErrorKind.CONFLICT:
        return CONFLICT
    return RECORD if rule.kind in RECORD_KINDS else None


def _request_id(resp: requests.Response) -> str | None:
    for name in ("X-Request-Id", "X-Zoho-Request-Id", "X-Correlation-Id"):
        if name in resp.headers:
            return resp.headers[name]
    return None


def credits_remaining(resp: requests.Response) -> int | None:
    """``X-API-CREDITS-REMAINING`` (sent once half the day's credits are used), else ``None``."""
    value = resp.headers.get("X-API-CREDITS-REMAINING")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def retry_after(resp: requests.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), else ``None``. Zoho itself never sends it; a gateway or
    load balancer in front of it may."""
    return retry_after_seconds(resp.headers.get("Retry-After"))


def request_error(code: str | None, *, status: int | None, where: str, request_id: str | None = None,
                  details: Mapping[str, Any] | None = None, wait: float | None = None) -> AdapterError:
    """The exception for a request-level error ``code``: the table first, then the HTTP status, then a catch-all
    :class:`RequestError` naming the unknown code (never an assert or a KeyError)."""
    rule = ERROR_TABLE.get(code or "")
    if rule is not None:
        cls, message = ERROR_TABLE.error_class(rule), rule.message
    else:
        by_status = ERROR_TABLE.lookup(status=status)
        cls = RequestError if by_status is None else ERROR_TABLE.error_class(by_status)
        if status is not None and status >= 500:
            message = f"Zoho server error {code}" if code else "Zoho server error"
        else:
            message = (f"Zoho error code {code} that crmbridge does not know" if code
                       else "Zoho error without a code")
    safe = {k: v for k, v in (details or {}).items() if k in _SAFE_DETAIL_KEYS}
    if safe:
        message += " (" + ", ".join(f"{k}={v}" for k, v in sorted(safe.items())) + ")"
    extra: dict[str, Any] = {"retry_after": wait} if issubclass(cls, RetryableError) else {}
    return cls(message, vendor=VENDOR, status=status, vendor_code=code, request_id=request_id, where=where,
               details=safe, **extra)


def _json_body(resp: requests.Response) -> tuple[Any, str | None]:
    """The parsed JSON body, or ``(None, what the body is instead)``: empty, an HTML page, plain text, truncated
    JSON or other non-JSON bytes (a gateway, a proxy or a connection cut short, never Zoho's own answer)."""
    raw = resp.content or b""
    if not raw.strip():
        return None, "an empty body"
    try:
        return response_json(resp, vendor=VENDOR, request_id=_request_id(resp)), None
    except (ValueError, UnicodeDecodeError):
        pass
    head = raw.lstrip()[:1]
    ctype = resp.headers.get("Content-Type", "").lower()
    if head == b"<" or "html" in ctype:
        return None, f"an HTML page ({len(raw)} bytes)"
    if head in (b"{", b"["):
        return None, f"truncated or malformed JSON ({len(raw)} bytes)"
    if ctype.startswith("text/"):
        return None, f"a plain-text body ({len(raw)} bytes)"
    return None, f"a body that is not JSON ({len(raw)} bytes)"


def non_json_error(status: int, problem: str, *, where: str, request_id: str | None = None,
                   wait: float | None = None, what: str = "Zoho") -> AdapterError:
    """The error for an answer that is not Zoho's JSON. 5xx, 408 and 429 come from a gateway or load balancer in
    front of Zoho and are transient (retried, honouring Retry-After); anything else is a bad response."""
    if status >= 500 or status in (408, 429):
        cls: type[RetryableError] = ThrottledError if status == 429 else TransientServerError
        return cls(f"HTTP {status} with {problem}: a gateway or load balancer in front of {what} answered, "
                   "not the service itself", vendor=VENDOR, status=status, request_id=request_id, where=where,
                   retry_after=wait)
    return BadResponseError(f"HTTP {status} with {problem}; expected {what}'s JSON", vendor=VENDOR, status=status,
                            request_id=request_id, where=where)


# detail keys that carry names and limits, never record values
_SAFE_DETAIL_KEYS = frozenset({"api_name", "param_name", "limit", "expected_data_type", "maximum_length",
                               "resource_path_index", "permissions", "json_path", "supported_values"})


def read_response(resp: requests.Response, *, where: str, items: bool = False) -> dict[str, Any] | None:
    """Read one Zoho API response: the JSON body, ``None`` for 204/304, or raise the classified error.

    Args:
        resp: the HTTP response.
        where: the call (method and path) for messages.
        items: a write call, whose HTTP 400/412 bodies carry per-record results in ``data[]``.

    Raises:
        AdapterError: a subclass chosen from :data:`ERROR_TABLE`; BadResponseError for garbage or a wrong shape.
    """
    status = resp.status_code
    rid = _request_id(resp)
    if status in (204, 304):
        return None
    wait = retry_after(resp)
    body, problem = _json_body(resp)
    if problem is not None:
        raise non_json_error(status, problem, where=where, request_id=rid, wait=wait)
    if not isinstance(body, dict):
        if status >= 400:
            raise request_error(None, status=status, where=where, request_id=rid, wait=wait)
        raise BadResponseError(f"HTTP {status} with a JSON {type(body).__name__}; expected Zoho's JSON object",
                               vendor=VENDOR, status=status, request_id=rid, where=where)
    top_code = body.get("code")
    if body.get("status") == "error" and isinstance(top_code, str):
        raise request_error(top_code, status=status, where=where, request_id=rid, wait=wait,
                            details=body.get("details") if isinstance(body.get("details"), dict) else None)
    if status < 300:
        return body
    data = body.get("data")
    if items and status in (400, 412) and isinstance(data, list) and data:
        return body
    if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("status") == "error":
        first = data[0]  # a request-level error wrapped in data[] (INVALID_MODULE, PATTERN_NOT_MATCHED on reads)
        raise request_error(str(first.get("code") or "") or None, status=status, where=where, request_id=rid,
                            wait=wait, details=first.get("details") if isinstance(first.get("details"), dict)
                            else None)
    # the catch-all: an error status with a JSON body of no known shape (a gateway's own JSON, a new Zoho shape)
    raise request_error(top_code if isinstance(top_code, str) else None, status=status, where=where,
                        request_id=rid, wait=wait)


def raise_for_token_body(resp: requests.Response, *, where: str) -> dict[str, Any]:
    """Read the accounts server's answer: the token JSON, or raise (HTTP 200 ``error`` bodies included)."""
    status = resp.status_code
    wait = retry_after(resp)
    body, problem = _json_body(resp)
    if problem is not None:   # a gateway in front of the accounts server: never "credentials refused"
        raise non_json_error(status, problem, where=where, wait=wait, what="Zoho's accounts server")
    if not isinstance(body, dict):
        if status >= 500 or status in (408, 429):
            raise non_json_error(status, f"a JSON {type(body).__name__}", where=where, wait=wait,
                                 what="Zoho's accounts server")
        raise BadResponseError(f"token endpoint answered HTTP {status} with a JSON {type(body).__name__}",
                               vendor=VENDOR, status=status, where=where)
    error = body.get("error")
    if error is not None or "access_token" not in body:
        key = str(error or "").strip().lower()
        known = TOKEN_ERROR_TABLE.get(key)
        cls, message = (None, "") if known is None else (TOKEN_ERROR_TABLE.error_class(known), known.message)
        if cls is None:
            if status >= 500 or status == 408:
                cls, message = TransientServerError, f"accounts server error (HTTP {status})"
            elif status == 429:
                cls, message = ThrottledError, "accounts server throttled the token request (HTTP 429)"
            else:
                cls, message = AuthenticationError, f"token refresh refused ({key or 'no access_token'})"
        extra: dict[str, Any] = {"retry_after": wait} if issubclass(cls, RetryableError) else {}
        raise cls(message, vendor=VENDOR, status=status, vendor_code=str(error) if error else None, where=where,
                  **extra)
    if status >= 300:
        raise request_error(None, status=status, where=where, wait=wait)
    return body


def raise_for_request_items(items: list[Any], *, where: str) -> None:
    """Raise when ``data[]`` carries a code about the whole call (INVALID_MODULE, AUTHORIZATION_FAILED... come
    wrapped in ``data[]`` on write endpoints, as a single item whatever the batch size)."""
    for item in items:
        if isinstance(item, dict) and item.get("status") == "error":
            rule = ERROR_TABLE.get(str(item.get("code") or ""))
            if rule is not None and item_outcome(rule) is None:
                details = item.get("details") if isinstance(item.get("details"), dict) else None
                raise request_error(str(item["code"]), status=None, where=where, details=details)


def classify_item(item: Any, *, index: int, where: str) -> tuple[str, RecordRejectedError | None]:
    """Classify one per-record result of a write or delete call.

    Returns:
        ``("success", None)``, ``("record", error)`` for a rejected record or ``("conflict", error)``.

    Raises:
        AdapterError: the item's code concerns the whole request (scope, permission, limit, module).
        BadResponseError: the item is not a Zoho result object.
    """
    if not isinstance(item, dict) or not isinstance(item.get("status"), str):
        raise BadResponseError(f"result {index} is not a Zoho result object", vendor=VENDOR, where=where)
    if item["status"] == "success":
        return "success", None
    code = str(item.get("code") or "")
    details = item.get("details") if isinstance(item.get("details"), dict) else {}
    rule = ERROR_TABLE.get(code)
    outcome = None if rule is None else item_outcome(rule)
    if rule is None or outcome is None:
        if rule is None and not code:
            raise BadResponseError(f"result {index} has status error and no code", vendor=VENDOR, where=where)
        if rule is None:  # an unknown per-record code: reject the record, keep the code and the field
            return RECORD, _rejected(code, f"rejected by Zoho with code {code}, which crmbridge does not know",
                                     details)
        raise request_error(code, status=None, where=where, details=details)
    message = rule.message
    if code == "INVALID_DATA" and "api name" in str(item.get("message") or "").lower():
        # Zoho's fixed text for an API name the org lacks (matched, never copied: vendor text may echo values)
        message = "the org has no field with this API name (the mapping sends a field Zoho does not have)"
    return outcome, _rejected(code, message, details)


def _rejected(code: str, message: str, details: Mapping[str, Any]) -> RecordRejectedError:
    field = details.get("api_name")
    json_path = details.get("json_path")
    extra = []
    if code == "MULTIPLE_OR_MULTI_ERRORS" and isinstance(details.get("errors"), list):
        parts = [e for e in details["errors"] if isinstance(e, dict)]
        inner = [p["details"] if isinstance(p.get("details"), dict) else {} for p in parts]
        names = [str(d.get("api_name")) for d in inner]
        codes = [str(p.get("code")) for p in parts]
        extra.append("; ".join(f"{c} on {n}" for c, n in zip(codes, names, strict=False)))
        if field is None and inner:
            field, json_path = inner[0].get("api_name"), inner[0].get("json_path")
    if field:
        extra.insert(0, f"field {field}")
    for key in ("expected_data_type", "maximum_length"):
        if key in details:
            extra.append(f"{key}={details[key]}")
    text = f"{code}: {message}" + (f" ({', '.join(extra)})" if extra else "")
    return RecordRejectedError(text, field=str(field) if field else None, code=code,
                               where=str(json_path) if json_path else None)
