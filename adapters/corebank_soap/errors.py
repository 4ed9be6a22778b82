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

Each row (a shared :class:`~crmbridge.adapters.errortable.ErrorRule`) names an :class:`ErrorKind`;
:data:`KIND_ERRORS` turns the kind into the crmbridge exception. Messages
never carry the vendor's text unscrubbed: long digit runs (ID numbers, mobiles) and e-mail addresses are masked,
and zeep's own messages (which quote the response body) are never copied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import requests
import zeep.exceptions as zx
from lxml import etree

from crmbridge.adapters.errortable import DEFAULT_ERRORS, Classified, ErrorKind, ErrorRule, ErrorTable
from crmbridge.core.errors import (
    AdapterError,
    ConflictError,
    CrmBridgeError,
    RecordRejectedError,
    ThrottledError,
    TokenExpiredError,
    TransientServerError,
)

__all__ = [
    "Classified",
    "ERROR_TABLE",
    "ErrorKind",
    "KIND_ERRORS",
    "ErrorRule",
    "classify_business",
    "classify_exception",
    "classify_fault",
    "classify_http",
    "scrub",
    "to_error",
]

VENDOR = "corebank_soap"


#: the channels a failure arrives by (an ErrorRule's ``channel``): exception, http, fault, business
def _exc(cls: type[BaseException], kind: ErrorKind, message: str) -> ErrorRule:
    return ErrorRule(kind, message, channel="exception", exception=cls)


def _http(status: int | str, kind: ErrorKind, message: str) -> ErrorRule:
    return ErrorRule(kind, message, channel="http", status=status)


def _fault(code: str, kind: ErrorKind, message: str) -> ErrorRule:
    return ErrorRule(kind, message, channel="fault", code=code)


def _business(code: str, kind: ErrorKind, message: str) -> ErrorRule:
    return ErrorRule(kind, message, channel="business", code=code)


ERROR_TABLE = ErrorTable(rules=(
    # ---- unsafe XML is refused before anything in it is read (XXE, billion laughs, SSRF through imports)
    _exc(zx.DTDForbidden, ErrorKind.BAD_RESPONSE, "refused unsafe XML: the reply declares a DTD"),
    _exc(zx.EntitiesForbidden, ErrorKind.BAD_RESPONSE, "refused unsafe XML: the reply declares entities"),
    _exc(zx.ExternalReferenceForbidden, ErrorKind.BAD_RESPONSE,
         "refused unsafe XML: the document refers to an external resource"),
    # ---- transport (requests is not wrapped by zeep)
    _exc(requests.exceptions.SSLError, ErrorKind.AUTH, "TLS handshake with the core failed"),
    _exc(requests.Timeout, ErrorKind.TRANSIENT, "the core did not answer in time"),
    _exc(requests.ConnectionError, ErrorKind.TRANSIENT, "connection to the core failed or was reset"),
    _exc(requests.RequestException, ErrorKind.TRANSIENT, "HTTP call to the core failed"),
    # ---- XML that is not well formed, or does not match the WSDL
    _exc(zx.XMLSyntaxError, ErrorKind.BAD_RESPONSE, "the reply is not well-formed XML"),
    _exc(etree.XMLSyntaxError, ErrorKind.BAD_RESPONSE, "the reply is not well-formed XML"),
    _exc(zx.XMLParseError, ErrorKind.BAD_RESPONSE, "the reply does not match the WSDL"),
    _exc(zx.UnexpectedElementError, ErrorKind.BAD_RESPONSE, "the reply does not match the WSDL"),
    _exc(UnicodeError, ErrorKind.BAD_RESPONSE, "the reply is not in the encoding it declares"),
    # ---- requests zeep cannot build from the configured paths and header values (nothing was sent)
    _exc(zx.ValidationError, ErrorKind.CONFIGURATION,
         "the request built from the configuration does not match the WSDL (a mandatory element is missing)"),
    _exc(zx.LookupError, ErrorKind.CONFIGURATION, "the WSDL has no such element or type"),
    _exc(TypeError, ErrorKind.CONFIGURATION,
         "a configured request path names an element the WSDL operation does not have"),
    # ---- replies without a SOAP envelope (zeep TransportError), by HTTP status
    _http(401, ErrorKind.AUTH, "the gateway refused the credentials"),
    _http(403, ErrorKind.PERMISSION, "the gateway refused the service user"),
    _http(408, ErrorKind.TRANSIENT, "the gateway timed out"),
    _http(429, ErrorKind.THROTTLED, "the gateway is rate limiting"),
    _http(503, ErrorKind.TRANSIENT, "the core or the gateway in front of it is unavailable"),
    _http("5xx", ErrorKind.TRANSIENT, "the core or the gateway in front of it answered with a server error"),
    _http("4xx", ErrorKind.REQUEST, "the gateway refused the request"),
    _http("3xx", ErrorKind.BAD_RESPONSE, "the gateway redirected the call (a login page?), not a SOAP reply"),
    _http("2xx", ErrorKind.BAD_RESPONSE,
          "the reply is not a SOAP envelope (empty, truncated or not well-formed XML)"),
    # ---- SOAP Faults (SOAP-level problems only; business failures come in normal replies)
    _fault(r"(wsse:)?(FailedAuthentication|InvalidSecurityToken|InvalidSecurity|FailedCheck)",
         ErrorKind.AUTH, "WS-Security authentication failed"),
    _fault(r"(wsse:)?MessageExpired", ErrorKind.TOKEN_EXPIRED, "the WS-Security token has expired"),
    _fault(r"(Server|Receiver)\.(Busy|Throttled|Overloaded)", ErrorKind.THROTTLED, "the core is busy"),
    _fault(r"(Client|Sender)\.(Authorization|PermissionDenied)", ErrorKind.PERMISSION,
           "the service user is not allowed this operation"),
    _fault(r"(Server|Receiver)(\..*)?", ErrorKind.TRANSIENT, "the core reported a server fault"),
    _fault(r"(Client|Sender|VersionMismatch|MustUnderstand|DataEncodingUnknown)(\..*)?", ErrorKind.REQUEST,
           "the core refused the request"),
    _fault(r".*", ErrorKind.REQUEST, "the core answered with an unrecognised SOAP fault"),
    # ---- business failures inside HTTP-200 replies (defaults: the crmbridge FLEXCUBE simulator's codes)
    _business(r"GW-AUTH-\d+", ErrorKind.AUTH, "the core refused the gateway user"),
    _business(r"GW-SEC-\d+", ErrorKind.PERMISSION, "the gateway user is not allowed this operation"),
    _business(r"GW-BUSY-\d+", ErrorKind.THROTTLED, "the core is busy"),
    _business(r"ST-CUS-001", ErrorKind.NOT_FOUND, "no such customer"),
    _business(r"ST-MODNO-\d+", ErrorKind.CONFLICT, "stale modification number"),
    _business(r"ST-VALS-\d+", ErrorKind.VALIDATION, "the core refused a field value"),
    _business(r"ST-CLOSED-\d+", ErrorKind.REJECTED, "the customer is closed"),
    _business(r"ST-REQ-\d+", ErrorKind.REQUEST, "the core refused the request parameters"),
    _business(r".+", ErrorKind.REJECTED,
              "the core refused the operation with a business code crmbridge does not know "
              "(add it to business_errors)"),
    _business(r".*", ErrorKind.BAD_RESPONSE, "the reply reports neither success nor an error code"),
))


#: kind → the crmbridge exception raised for it (the shared defaults: a record-level refusal is a RecordRejectedError,
#: a stale modification number a ConflictError)
KIND_ERRORS = DEFAULT_ERRORS


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


def classify_exception(exc: BaseException) -> Classified | None:
    """Classify a zeep / lxml / requests exception (``None`` if the table does not know it)."""
    if isinstance(exc, zx.TransportError):
        return classify_http(exc.status_code or 0)
    rule = ERROR_TABLE.lookup(channel="exception", exc=exc)
    return None if rule is None else Classified(rule.kind, rule.message, vendor_code=type(exc).__name__)


def classify_http(status: int, retry_after: float | None = None, body: str | None = None) -> Classified:
    """Classify a reply that carried no SOAP envelope, by HTTP status; ``body`` says what came instead (an HTML
    page, an empty body, plain text) for the message."""
    what = f" (HTTP {status}{', ' + body if body else ''})"
    rule = ERROR_TABLE.lookup(channel="http", status=status)
    if rule is not None:
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
    for rule in ERROR_TABLE.rules:   # the first row any of the candidate codes matches
        if any(rule.matches(channel="fault", code=c) for c in candidates if c):
            detail = scrub(text)
            return Classified(rule.kind, f"{rule.message}: {detail}" if detail else rule.message,
                              vendor_code=local or None, status=status, retry_after=retry_after)
    return Classified(ErrorKind.REQUEST, f"the core answered with an unrecognised SOAP fault {scrub(raw, 60)}",
                      vendor_code=local or None, status=status, retry_after=retry_after)


def classify_business(code: str | None, text: str | None, extra: Iterable[ErrorRule] = ()) -> Classified:
    """Classify an HTTP-200 business failure by its vendor code; ``extra`` rows (configuration) go first."""
    c = (code or "").strip()
    detail = scrub(text)
    rule = ERROR_TABLE.lookup(extra=extra, channel="business", code=c)
    if rule is not None:
        message = rule.message
        if c and rule.code == r".+":
            message = f"{message}: code {scrub(c, 60)}"
        return Classified(rule.kind, f"{message}: {detail}" if detail else message, vendor_code=c or None)
    return Classified(ErrorKind.REJECTED, f"the core refused the operation with code {scrub(c, 60)!r}"
                      + (f": {detail}" if detail else ""), vendor_code=c or None)


def to_error(c: Classified, *, where: str | None = None, request_id: str | None = None) -> CrmBridgeError:
    """The crmbridge exception for a classified failure."""
    cls = ERROR_TABLE.error_class(c.kind)
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
