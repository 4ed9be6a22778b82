"""The ONE error classification table of the core-banking SOAP adapter.

Everything that can go wrong in a SOAP call arrives through one of four channels, and :data:`ERROR_TABLE`
classifies all of them in one place, first match wins:

=========== ================================================================== ==============================
channel     what is matched                                                    examples
=========== ================================================================== ==============================
exception   a Python exception class raised by zeep, lxml or requests          ``DTDForbidden``, ``ReadTimeout``
http        the HTTP status of a reply that carried no SOAP envelope            401, 429, 503, 200 + HTML
fault       the SOAP 1.1 ``faultcode`` (prefix dropped) or 1.2 Code/Subcode     ``wsse:FailedAuthentication``
business    the vendor code of an HTTP-200 business failure                     FLEXCUBE ``MSGSTAT=FAILURE``
                                                                               + ``ECODE``, T24 ``successIndicator``
=========== ================================================================== ==============================

Business codes are per bank: the configuration's ``business_errors`` rows are tried first, then the defaults
here (the crmbridge FLEXCUBE simulator's codes, which follow FLEXCUBE's ``XX-YYYY-NNN`` style but are not
Oracle's published list).

Each row names an :class:`ErrorKind`; :data:`KIND_ERRORS` turns the kind into the crmbridge exception. Messages
never carry the vendor's text unscrubbed: long digit runs (ID numbers, mobiles) and e-mail addresses are masked,
and zeep's own messages (which quote the response body) are never copied.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import requests
import zeep.exceptions as zx
from lxml import etree

from crmbridge.core.errors import (
    AdapterError,
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    ConflictError,
    CrmBridgeError,
    PermissionDeniedError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TokenExpiredError,
    TransientServerError,
)

__all__ = [
    "Classified",
    "ERROR_TABLE",
    "ErrorKind",
    "KIND_ERRORS",
    "Rule",
    "classify_business",
    "classify_exception",
    "classify_fault",
    "classify_http",
    "scrub",
    "to_error",
]

VENDOR = "corebank_soap"


class ErrorKind(enum.StrEnum):
    """What a failure means for the caller."""

    AUTH = "auth"                    # credentials refused: stop the run
    PERMISSION = "permission"        # the service user lacks a right: stop the run
    TOKEN_EXPIRED = "token_expired"  # WS-Security timestamp/nonce refused: a fresh token, once
    THROTTLED = "throttled"          # busy gateway: retried with backoff
    TRANSIENT = "transient"          # 5xx, timeouts, resets: retried
    NOT_FOUND = "not_found"          # no such customer (a get returns None, a write is rejected)
    CONFLICT = "conflict"            # stale modification number: the conflict queue, never an overwrite
    VALIDATION = "validation"        # the core refused the record's values: dead letter
    REJECTED = "rejected"            # any other record-level refusal: dead letter
    REQUEST = "request"              # crmbridge sent something the service refuses (bug or limit)
    CONFIGURATION = "configuration"  # the configured paths or header values do not fit the WSDL: stop, fix config
    BAD_RESPONSE = "bad_response"    # unparsable, unsafe or wrongly shaped reply


Channel = Literal["exception", "http", "fault", "business"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table.

    Attributes:
        channel: where the failure came from.
        match: an exception class (``exception``), an HTTP status or ``"4xx"``/``"5xx"`` (``http``), or a regular
            expression matched in full against the fault code or the business code (``fault``, ``business``).
        kind: what it means.
        message: the crmbridge message (the scrubbed vendor text is appended where there is one).
    """

    channel: Channel
    match: Any
    kind: ErrorKind
    message: str


ERROR_TABLE: tuple[Rule, ...] = (
    # ---- unsafe XML is refused before anything in it is read (XXE, billion laughs, SSRF through imports)
    Rule("exception", zx.DTDForbidden, ErrorKind.BAD_RESPONSE, "refused unsafe XML: the reply declares a DTD"),
    Rule("exception", zx.EntitiesForbidden, ErrorKind.BAD_RESPONSE, "refused unsafe XML: the reply declares entities"),
    Rule("exception", zx.ExternalReferenceForbidden, ErrorKind.BAD_RESPONSE,
         "refused unsafe XML: the document refers to an external resource"),
    # ---- transport (requests is not wrapped by zeep)
    Rule("exception", requests.exceptions.SSLError, ErrorKind.AUTH, "TLS handshake with the core failed"),
    Rule("exception", requests.Timeout, ErrorKind.TRANSIENT, "the core did not answer in time"),
    Rule("exception", requests.ConnectionError, ErrorKind.TRANSIENT, "connection to the core failed or was reset"),
    Rule("exception", requests.RequestException, ErrorKind.TRANSIENT, "HTTP call to the core failed"),
    # ---- XML that is not well formed, or does not match the WSDL
    Rule("exception", zx.XMLSyntaxError, ErrorKind.BAD_RESPONSE, "the reply is not well-formed XML"),
    Rule("exception", etree.XMLSyntaxError, ErrorKind.BAD_RESPONSE, "the reply is not well-formed XML"),
    Rule("exception", zx.XMLParseError, ErrorKind.BAD_RESPONSE, "the reply does not match the WSDL"),
    Rule("exception", zx.UnexpectedElementError, ErrorKind.BAD_RESPONSE, "the reply does not match the WSDL"),
    Rule("exception", UnicodeError, ErrorKind.BAD_RESPONSE, "the reply is not in the encoding it declares"),
    # ---- requests zeep cannot build from the configured paths and header values (nothing was sent)
    Rule("exception", zx.ValidationError, ErrorKind.CONFIGURATION,
         "the request built from the configuration does not match the WSDL (a mandatory element is missing)"),
    Rule("exception", zx.LookupError, ErrorKind.CONFIGURATION, "the WSDL has no such element or type"),
    Rule("exception", TypeError, ErrorKind.CONFIGURATION,
         "a configured request path names an element the WSDL operation does not have"),
    # ---- replies without a SOAP envelope (zeep TransportError), by HTTP status
    Rule("http", 401, ErrorKind.AUTH, "the gateway refused the credentials"),
    Rule("http", 403, ErrorKind.PERMISSION, "the gateway refused the service user"),
    Rule("http", 408, ErrorKind.TRANSIENT, "the gateway timed out"),
    Rule("http", 429, ErrorKind.THROTTLED, "the gateway is rate limiting"),
    Rule("http", 503, ErrorKind.TRANSIENT, "the core or the gateway in front of it is unavailable"),
    Rule("http", "5xx", ErrorKind.TRANSIENT, "the core or the gateway in front of it answered with a server error"),
    Rule("http", "4xx", ErrorKind.REQUEST, "the gateway refused the request"),
    Rule("http", "3xx", ErrorKind.BAD_RESPONSE, "the gateway redirected the call (a login page?), not a SOAP reply"),
    Rule("http", "2xx", ErrorKind.BAD_RESPONSE,
         "the reply is not a SOAP envelope (empty, truncated or not well-formed XML)"),
    # ---- SOAP Faults (SOAP-level problems only; business failures come in normal replies)
    Rule("fault", r"(wsse:)?(FailedAuthentication|InvalidSecurityToken|InvalidSecurity|FailedCheck)",
         ErrorKind.AUTH, "WS-Security authentication failed"),
    Rule("fault", r"(wsse:)?MessageExpired", ErrorKind.TOKEN_EXPIRED, "the WS-Security token has expired"),
    Rule("fault", r"(Server|Receiver)\.(Busy|Throttled|Overloaded)", ErrorKind.THROTTLED, "the core is busy"),
    Rule("fault", r"(Client|Sender)\.(Authorization|PermissionDenied)", ErrorKind.PERMISSION,
         "the service user is not allowed this operation"),
    Rule("fault", r"(Server|Receiver)(\..*)?", ErrorKind.TRANSIENT, "the core reported a server fault"),
    Rule("fault", r"(Client|Sender|VersionMismatch|MustUnderstand|DataEncodingUnknown)(\..*)?", ErrorKind.REQUEST,
         "the core refused the request"),
    Rule("fault", r".*", ErrorKind.REQUEST, "the core answered with an unrecognised SOAP fault"),
    # ---- business failures inside HTTP-200 replies (defaults: the crmbridge FLEXCUBE simulator's codes)
    Rule("business", r"GW-AUTH-\d+", ErrorKind.AUTH, "the core refused the gateway user"),
    Rule("business", r"GW-SEC-\d+", ErrorKind.PERMISSION, "the gateway user is not allowed this operation"),
    Rule("business", r"GW-BUSY-\d+", ErrorKind.THROTTLED, "the core is busy"),
    Rule("business", r"ST-CUS-001", ErrorKind.NOT_FOUND, "no such customer"),
    Rule("business", r"ST-MODNO-\d+", ErrorKind.CONFLICT, "stale modification number"),
    Rule("business", r"ST-VALS-\d+", ErrorKind.VALIDATION, "the core refused a field value"),
    Rule("business", r"ST-CLOSED-\d+", ErrorKind.REJECTED, "the customer is closed"),
    Rule("business", r"ST-REQ-\d+", ErrorKind.REQUEST, "the core refused the request parameters"),
    Rule("business", r".+", ErrorKind.REJECTED,
         "the core refused the operation with a business code crmbridge does not know (add it to business_errors)"),
    Rule("business", r".*", ErrorKind.BAD_RESPONSE, "the reply reports neither success nor an error code"),
)

#: kind → the crmbridge exception raised for it
KIND_ERRORS: dict[ErrorKind, type[CrmBridgeError]] = {
    ErrorKind.AUTH: AuthenticationError,
    ErrorKind.PERMISSION: PermissionDeniedError,
    ErrorKind.TOKEN_EXPIRED: TokenExpiredError,
    ErrorKind.THROTTLED: ThrottledError,
    ErrorKind.TRANSIENT: TransientServerError,
    ErrorKind.NOT_FOUND: RecordRejectedError,
    ErrorKind.CONFLICT: ConflictError,
    ErrorKind.VALIDATION: RecordRejectedError,
    ErrorKind.REJECTED: RecordRejectedError,
    ErrorKind.REQUEST: RequestError,
    ErrorKind.CONFIGURATION: ConfigurationError,
    ErrorKind.BAD_RESPONSE: BadResponseError,
}


@dataclass(frozen=True, slots=True)
class Classified:
    """A failure after classification."""

    kind: ErrorKind
    message: str
    vendor_code: str | None = None
    status: int | None = None
    retry_after: float | None = None


_DIGITS = re.compile(r"[0-9０-９]{6,}[0-9０-９Xx]*")
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")


def scrub(text: str | None, limit: int = 200) -> str:
    """Vendor text made safe for messages: long digit runs and e-mails masked, length capped."""
    if not text:
        return ""
    text = " ".join(str(text).split())
    text = _DIGITS.sub(lambda m: m.group(0)[:2] + "*" * (len(m.group(0)) - 4) + m.group(0)[-2:], text)
    text = _EMAIL.sub("***@***", text)
    return text[:limit] + ("…" if len(text) > limit else "")


def _rules(channel: Channel, extra: Iterable[Rule] = ()) -> Iterable[Rule]:
    yield from (r for r in extra if r.channel == channel)
    yield from (r for r in ERROR_TABLE if r.channel == channel)


def classify_exception(exc: BaseException) -> Classified | None:
    """Classify a zeep / lxml / requests exception (``None`` if the table does not know it)."""
    if isinstance(exc, zx.TransportError):
        return classify_http(exc.status_code or 0)
    for rule in _rules("exception"):
        if isinstance(exc, rule.match):
            return Classified(rule.kind, rule.message, vendor_code=type(exc).__name__)
    return None


def classify_http(status: int, retry_after: float | None = None, body: str | None = None) -> Classified:
    """Classify a reply that carried no SOAP envelope, by HTTP status; ``body`` says what came instead (an HTML
    page, an empty body, plain text) for the message."""
    what = f" (HTTP {status}{', ' + body if body else ''})"
    for rule in _rules("http"):
        m = rule.match
        if m == status or (isinstance(m, str) and str(status)[:1] == m[:1] and len(str(status)) == 3):
            return Classified(rule.kind, rule.message + what, status=status, retry_after=retry_after)
    return Classified(ErrorKind.BAD_RESPONSE, f"unexpected HTTP status{what}", status=status)


def classify_fault(code: str | None, subcodes: Iterable[Any] | None = None, text: str | None = None,
                   status: int | None = None, retry_after: float | None = None) -> Classified:
    """Classify a SOAP Fault by its code (the namespace prefix is dropped unless a rule names it)."""
    raw = str(code or "")
    local = raw.split(":", 1)[1] if ":" in raw else raw
    candidates = [raw, local] + [str(getattr(s, "localname", s)) for s in (subcodes or [])]
    if not any(candidates):
        # zeep's "Unknown fault occured": an error status with an XML body that holds no Fault
        if status is not None and status != 200:
            return classify_http(status, retry_after, body="an XML body without a SOAP Fault")
        return Classified(ErrorKind.BAD_RESPONSE, "a SOAP Fault without a fault code", status=status)
    for rule in _rules("fault"):
        if any(re.fullmatch(rule.match, c) for c in candidates if c):
            detail = scrub(text)
            return Classified(rule.kind, f"{rule.message}: {detail}" if detail else rule.message,
                              vendor_code=local or None, status=status, retry_after=retry_after)
    return Classified(ErrorKind.REQUEST, f"the core answered with an unrecognised SOAP fault {scrub(raw, 60)}",
                      vendor_code=local or None, status=status, retry_after=retry_after)


def classify_business(code: str | None, text: str | None, extra: Iterable[Rule] = ()) -> Classified:
    """Classify an HTTP-200 business failure by its vendor code; ``extra`` rows (configuration) go first."""
    c = (code or "").strip()
    detail = scrub(text)
    for rule in _rules("business", extra):
        if re.fullmatch(rule.match, c):
            message = rule.message
            if c and rule.match == r".+":
                message = f"{message}: code {scrub(c, 60)}"
            return Classified(rule.kind, f"{message}: {detail}" if detail else message, vendor_code=c or None)
    return Classified(ErrorKind.REJECTED, f"the core refused the operation with code {scrub(c, 60)!r}"
                      + (f": {detail}" if detail else ""), vendor_code=c or None)


def to_error(c: Classified, *, where: str | None = None, request_id: str | None = None) -> CrmBridgeError:
    """The crmbridge exception for a classified failure."""
    cls = KIND_ERRORS[c.kind]
    if issubclass(cls, RecordRejectedError):
        return cls(c.message, where=where, code=c.kind.value if c.vendor_code is None else
                   f"{c.kind.value}:{c.vendor_code}")
    if cls is ConflictError:
        return ConflictError(c.message, where=where)
    if not issubclass(cls, AdapterError):   # ConfigurationError (and anything else outside the adapter branch)
        return cls(c.message, where=where)
    kw: dict[str, Any] = {"vendor": VENDOR, "status": c.status, "vendor_code": c.vendor_code,
                          "request_id": request_id, "where": where}
    if issubclass(cls, ThrottledError | TransientServerError | TokenExpiredError):
        kw["retry_after"] = c.retry_after
    return cls(c.message, **kw)
