"""Fxiaoke ``errorCode`` classification: the ONE table, and the one place a response is judged.

Fxiaoke answers almost every error with HTTP 200 and ``errorCode != 0`` (docs/vendors/fxiaoke.md §1, §11), so every
response goes through :func:`check_response`. The table below maps each documented (and each observed)
code to what crmbridge does next; where sources disagree every variant is listed. ``errorMessage`` is
never parsed (the docs warn it may change) and never copied into error text: it can echo field values,
i.e. personal data.

Categories (what happens next), as the shared outcomes of :class:`~crmbridge.adapters.errortable.ErrorKind`:

============= ============================================================ ==========================
outcome       meaning                                                      crmbridge error
============= ============================================================ ==========================
token_expired corpAccessToken invalid or expired                           TokenExpiredError (refresh once)
auth          credentials refused (appId, appSecret, permanentCode, ...)   AuthenticationError
permission    the app or operator lacks a permission / quota purchase      PermissionDeniedError
throttled     per-second / per-interface window exceeded                   ThrottledError (retried)
quota         daily quota used up (resets 00:00 Beijing)                   RequestError (stop the run)
request       crmbridge sent something malformed or beyond a limit         RequestError
not_found     the record does not exist                                    None from get / FAILED
rejected      the record broke a business rule (required, duplicate...)    RecordRejectedError (FAILED)
transient     system error / busy / timeout                                TransientServerError
============= ============================================================ ==========================

Codes marked *(simulator)* are the business codes crmbridge's simulator uses. Fxiaoke does not publish
the codes of its business-validation errors (docs/vendors/fxiaoke.md §11: "values unverified"); an unknown code is
therefore classified as ``rejected`` on a per-record write (the record fails, the run goes on) and as
``request`` anywhere else (the catch-all: every code gets a category). An unknown code's error names the
code and the vendor's own ``errorMessage``, masked (:func:`vendor_message`): for an unknown code it is the
only explanation there is.

**Duplicate rules (查重规则).** A tenant's duplicate rule refusing a create or update has no documented code
(docs/vendors/fxiaoke.md §5: "the code and text are unverified"; crm-cli treats any error whose message contains
"duplicate" as one). A refusal is named a duplicate-rule refusal (``RecordRejectedError.code ==
"duplicate_rule"``) when its code is one of ``duplicate_codes`` (the simulator's :data:`DUPLICATE_RULE_CODE`
plus whatever the system configures once the live code is known), or, for an unknown code on a write, when
the body carries a duplicate-search result (``data.dataList`` with ``matchType``, the shape of the APL
duplicateSearch result) or its message says 重复 / 查重 / duplicate (crm-cli's rule).

**Gateway replies.** HTTP 5xx (HTML, plain text or empty, as load balancers answer) is a
:class:`TransientServerError` honouring ``Retry-After``; 429 a :class:`ThrottledError`; an empty, truncated
or non-JSON HTTP 200 a :class:`BadResponseError` that says which; on the token endpoint too (a gateway
503 there is transient, never "credentials refused").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from crmbridge.adapters._json import loads
from crmbridge.adapters.errortable import ErrorKind, ErrorRule, ErrorTable
from crmbridge.core.errors import (
    BadResponseError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TransientServerError,
)
from crmbridge.core.logsafe import mask_text
from crmbridge.core.retry import retry_after_seconds as parse_retry_after

__all__ = [
    "BUSINESS_CODES",
    "CODE_TABLE",
    "DUPLICATE_RULE_CODE",
    "ErrorKind",
    "VENDOR",
    "category_of",
    "check_response",
    "error_for",
    "is_not_found",
    "retry_after_seconds",
    "vendor_message",
]

VENDOR = "fxiaoke"


#: Fxiaoke's categories as the shared outcomes: system → transient, token → token_expired, parameter → request,
#: business → rejected (a write's record), throttle → throttled, quota → quota (stop until midnight Beijing time)
_K = ErrorKind


#: simulator-chosen business codes (Fxiaoke publishes none; unverified against the live service)
BUSINESS_CODES = {
    "NOT_FOUND": 320001,
    "REQUIRED_MISSING": 320002,
    "DUPLICATE": 320003,
    "INVALID_VALUE": 320004,
    "LOCKED": 320005,
    "NO_DATA_PERMISSION": 320006,
    "OBJECT_NOT_FOUND": 320007,
    "NOT_INVALIDATED": 320008,
    "DUPLICATE_RULE": 320009,
}
#: the simulator's duplicate-rule (查重规则) refusal; the live code is unpublished (see the module docstring)
DUPLICATE_RULE_CODE = BUSINESS_CODES["DUPLICATE_RULE"]

#: errorCode → its outcome and a short English meaning. The meaning is safe to show: it never holds record data.
CODE_TABLE = ErrorTable(codes={
    # system (retryable)
    -2: ErrorRule(_K.TRANSIENT, "system error"),
    -1: ErrorRule(_K.TRANSIENT, "system busy"),
    50009: ErrorRule(_K.TRANSIENT, "service error, e.g. timeout"),
    # token: 20016 documented + observed for forged tokens in both auth styles; 20005 for the app token
    20005: ErrorRule(_K.TOKEN_EXPIRED, "access token missing or expired"),
    20016: ErrorRule(_K.TOKEN_EXPIRED, "corpAccessToken missing or expired"),
    # credentials (documented table, plus 10006 observed for a wrong or missing appSecret)
    10001: ErrorRule(_K.AUTH, "missing parameter appId"),
    10002: ErrorRule(_K.AUTH, "missing parameter appSecret"),
    10006: ErrorRule(_K.AUTH, "appSecret missing or illegal (observed; documented as missing scope)"),
    10012: ErrorRule(_K.AUTH, "missing parameter permanentCode"),
    11001: ErrorRule(_K.AUTH, "illegal appId"),
    11002: ErrorRule(_K.AUTH, "illegal appSecret"),
    11013: ErrorRule(_K.AUTH, "illegal permanentCode"),
    11014: ErrorRule(_K.AUTH, "illegal corpAccessToken"),
    11015: ErrorRule(_K.AUTH, "illegal corpId"),
    20006: ErrorRule(_K.AUTH, "appId or appSecret wrong"),
    20010: ErrorRule(_K.AUTH, "code missing or expired"),
    20012: ErrorRule(_K.AUTH, "openUserId not found (check open_user_id / admin_mobile)"),
    20015: ErrorRule(_K.AUTH, "permanent code wrong"),
    20017: ErrorRule(_K.AUTH, "corpId not found / no credentials sent"),
    12002: ErrorRule(_K.AUTH, "login state error"),
    # permission / purchase
    15003: ErrorRule(_K.PERMISSION, "app has no access permission"),
    20014: ErrorRule(_K.PERMISSION, "app may not read this employee's data"),
    20020: ErrorRule(_K.PERMISSION, "app may not read this tenant's data"),
    20021: ErrorRule(_K.PERMISSION, "app disabled"),
    20022: ErrorRule(_K.PERMISSION, "tenant has not authorised the app"),
    20023: ErrorRule(_K.PERMISSION, "app may not access departments"),
    30003: ErrorRule(_K.PERMISSION, "tenant has no Open API quota purchased"),
    # throttling: which of 14001 / 30004 the per-interface window returns is unverified; both are retried
    14001: ErrorRule(_K.THROTTLED, "interface call limit exceeded"),
    30004: ErrorRule(_K.THROTTLED, "per-second frequency exceeded"),
    30002: ErrorRule(_K.QUOTA, "daily call quota exceeded (resets 00:00 Beijing time)"),
    # parameters / limits
    10003: ErrorRule(_K.REQUEST, "missing parameter appAccessToken"),
    10004: ErrorRule(_K.REQUEST, "missing parameter redirectUri"),
    10005: ErrorRule(_K.REQUEST, "missing parameter responseType"),
    10007: ErrorRule(_K.REQUEST, "missing parameter state"),
    10008: ErrorRule(_K.REQUEST, "missing parameter code"),
    10009: ErrorRule(_K.REQUEST, "missing parameter appAccount"),
    10010: ErrorRule(_K.REQUEST, "missing parameter openUserId"),
    10013: ErrorRule(_K.REQUEST, "missing corpAccessToken, or offset beyond 10000 (deep-paging page)"),
    10014: ErrorRule(_K.REQUEST, "missing parameter corpId"),
    10015: ErrorRule(_K.REQUEST, "missing parameter toUser"),
    11003: ErrorRule(_K.REQUEST, "illegal appAccessToken"),
    11004: ErrorRule(_K.REQUEST, "illegal redirectUri"),
    11005: ErrorRule(_K.REQUEST, "illegal responseType"),
    11006: ErrorRule(_K.REQUEST, "illegal scope"),
    11007: ErrorRule(_K.REQUEST, "illegal state"),
    11008: ErrorRule(_K.REQUEST, "illegal openUserId"),
    11009: ErrorRule(_K.REQUEST, "illegal departmentId"),
    11010: ErrorRule(_K.REQUEST, "illegal code"),
    11011: ErrorRule(_K.REQUEST, "illegal appAccount"),
    11016: ErrorRule(_K.REQUEST, "illegal toUser"),
    11017: ErrorRule(_K.REQUEST, "illegal msgType"),
    11018: ErrorRule(_K.REQUEST, "illegal templateId"),
    12003: ErrorRule(_K.REQUEST, "unsupported message type"),
    12004: ErrorRule(_K.REQUEST, "POST body empty"),
    12005: ErrorRule(_K.REQUEST, "text message empty"),
    15002: ErrorRule(_K.REQUEST, "illegal parameter"),
    30007: ErrorRule(_K.REQUEST, "department does not exist"),
    30027: ErrorRule(_K.REQUEST, "employee does not exist"),
    32000: ErrorRule(_K.REQUEST, "parameter error"),
    40010: ErrorRule(_K.REQUEST, "illegal templateId"),
    # business (simulator-chosen codes; the real values are unpublished)
    BUSINESS_CODES["NOT_FOUND"]: ErrorRule(_K.NOT_FOUND, "record not found (simulator)"),
    BUSINESS_CODES["REQUIRED_MISSING"]: ErrorRule(_K.REJECTED, "required field missing (simulator)"),
    BUSINESS_CODES["DUPLICATE"]: ErrorRule(_K.REJECTED, "duplicate value in a unique field (simulator)"),
    BUSINESS_CODES["INVALID_VALUE"]: ErrorRule(_K.REJECTED, "field value invalid (simulator)"),
    BUSINESS_CODES["LOCKED"]: ErrorRule(_K.REJECTED, "record locked (simulator)"),
    BUSINESS_CODES["NO_DATA_PERMISSION"]: ErrorRule(_K.REJECTED, "no data permission for this record (simulator)"),
    BUSINESS_CODES["OBJECT_NOT_FOUND"]: ErrorRule(_K.REQUEST, "object does not exist (simulator)"),
    BUSINESS_CODES["NOT_INVALIDATED"]: ErrorRule(_K.REJECTED, "only invalidated records can be deleted (simulator)"),
    DUPLICATE_RULE_CODE: ErrorRule(_K.REJECTED, "the tenant's duplicate rule (查重规则) matched an existing record "
                                       "(simulator)"),
}, errors={
    _K.NOT_FOUND: RequestError,   # outside a record's write, "not found" is the request's refusal
})


_BEIJING = timezone(timedelta(hours=8))
#: seconds to wait before retrying a throttled call, by code (the gateway sends no Retry-After)
_THROTTLE_WAIT = {30004: 1.0, 14001: 5.0}


def category_of(code: int, *, record_level: bool = False, token_endpoint: bool = False) -> ErrorKind:
    """The category of ``code``.

    Args:
        code: the ``errorCode``.
        record_level: the call writes one record (unknown codes then mean the record was refused).
        token_endpoint: the call fetched a token (anything not transient there is a credential problem).
    """
    known = CODE_TABLE.get(code)
    if known is not None:
        cat = known.kind
    elif record_level:
        cat = _K.REJECTED      # an unpublished business-validation code: the record is refused
    else:
        cat = _K.REQUEST     # the catch-all: an unknown code anywhere else stops the call, code kept
    if token_endpoint and cat not in (_K.THROTTLED, _K.QUOTA, _K.TRANSIENT, _K.PERMISSION):
        return _K.AUTH
    if not record_level and cat is _K.REJECTED:
        return _K.REQUEST
    return cat


def _seconds_to_beijing_midnight(now: datetime | None = None) -> float:
    now = (now or datetime.now(UTC)).astimezone(_BEIJING)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_DUPLICATE_WORDS = re.compile(r"duplicat|重复|查重", re.IGNORECASE)
_MESSAGE_MAX = 200


def vendor_message(doc: Mapping[str, Any] | None, scrub: Iterable[str] = ()) -> str | None:
    """The vendor's ``errorMessage`` (else ``errorDescription``) fit for an error text, or ``None``.

    Business messages can echo the values written (a name, a mobile), so: the values in ``scrub`` (what the
    call sent) are replaced by ``[value]``, numbers and e-mails that look personal are masked
    (:func:`crmbridge.core.logsafe.mask_text`), and every run of Chinese characters keeps only its first
    character (names carry no pattern to recognise them by). English gateway messages stay readable.
    """
    if not isinstance(doc, Mapping):
        return None
    raw = doc.get("errorMessage")
    if not isinstance(raw, str) or not raw.strip():
        raw = doc.get("errorDescription")
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    for value in sorted({v for v in scrub if isinstance(v, str) and len(v) >= 2}, key=len, reverse=True):
        text = text.replace(value, "[value]")
    text = mask_text(text)
    text = _CJK_RUN.sub(lambda m: m.group(0)[0] + "*" * (len(m.group(0)) - 1), text)
    return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX] + "…"


def _duplicate_hint(doc: Mapping[str, Any] | None) -> bool:
    """Whether an unknown write refusal looks like a duplicate rule's (result shape, or crm-cli's message rule)."""
    if not isinstance(doc, Mapping):
        return False
    data = doc.get("data")
    if isinstance(data, Mapping) and "matchType" in data and isinstance(data.get("dataList"), list):
        return True
    texts = [doc.get(k) for k in ("errorMessage", "errorDescription")]
    return any(isinstance(t, str) and _DUPLICATE_WORDS.search(t) for t in texts)


def duplicate_ids(doc: Mapping[str, Any] | None) -> list[str]:
    """The ``_id`` of the existing records a duplicate-rule refusal names, when its body lists them."""
    data = doc.get("data") if isinstance(doc, Mapping) else None
    rows = data.get("dataList") if isinstance(data, Mapping) else None
    if not isinstance(rows, list):
        return []
    return [str(r["_id"]) for r in rows if isinstance(r, Mapping) and isinstance(r.get("_id"), str)]


def _strings(values: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for v in values.values():
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list | tuple):
            out.extend(x for x in v if isinstance(x, str))
    return out


def _shared_fields(doc: Mapping[str, Any] | None, sent: Mapping[str, Any] | None) -> list[str]:
    """The fields of ``sent`` whose values a listed duplicate shares (what the rule most likely matched on)."""
    data = doc.get("data") if isinstance(doc, Mapping) else None
    rows = data.get("dataList") if isinstance(data, Mapping) else None
    if not isinstance(rows, list) or not sent:
        return []
    skip = {"_id", "dataObjectApiName", "owner", "record_type"}
    return sorted(k for k, v in sent.items() if k not in skip and v not in (None, "", [])
                  and any(isinstance(r, Mapping) and r.get(k) == v for r in rows))


def error_for(code: int, *, where: str, status: int | None = 200, request_id: str | None = None,
              record_level: bool = False, token_endpoint: bool = False, doc: Mapping[str, Any] | None = None,
              scrub: Iterable[str] = (), duplicate_codes: Iterable[int] = (),
              sent: Mapping[str, Any] | None = None) -> Exception:
    """The crmbridge error for a non-zero ``errorCode``.

    A known code's message comes from the table; an unknown code's names the code and the vendor's masked
    ``errorMessage`` (:func:`vendor_message`). A duplicate-rule refusal on a write is a
    :class:`RecordRejectedError` with ``code == "duplicate_rule"`` (``vendor_code``, ``duplicate_ids`` and
    ``duplicate_fields`` set on it: the fields of ``sent`` whose values the listed duplicates share).
    """
    cat = category_of(code, record_level=record_level, token_endpoint=token_endpoint)
    known = code in CODE_TABLE
    if sent:
        scrub = [*scrub, *_strings(sent)]
    said = None if known and code not in duplicate_codes else vendor_message(doc, scrub)
    meaning = CODE_TABLE[code].message if known else f"unknown errorCode {code}"
    if said:
        meaning = f"{meaning}; vendor says: {said}"
    trace = request_id or "-"
    if record_level and cat is _K.REJECTED:
        dup = code == DUPLICATE_RULE_CODE or code in duplicate_codes or (not known and _duplicate_hint(doc))
        if dup:
            rec = RecordRejectedError(f"{VENDOR} duplicate rule (查重规则) refused the record: {meaning} "
                                      f"(errorCode {code}, trace {trace})", where=where, code="duplicate_rule")
            rec.duplicate_ids = duplicate_ids(doc)  # type: ignore[attr-defined]
            rec.duplicate_fields = _shared_fields(doc, sent)  # type: ignore[attr-defined]
        else:
            rec = RecordRejectedError(f"{VENDOR} refused the record: {meaning} (errorCode {code}, trace {trace})",
                                      where=where, code=str(code))
        rec.vendor_code = str(code)  # type: ignore[attr-defined]
        return rec
    if cat is _K.NOT_FOUND and record_level:
        rec = RecordRejectedError(f"{VENDOR} refused the record: {meaning} (errorCode {code}, trace {trace})",
                                  where=where, code=str(code))
        rec.vendor_code = str(code)  # type: ignore[attr-defined]
        return rec
    kwargs: dict[str, Any] = {"vendor": VENDOR, "status": status, "vendor_code": code,
                              "request_id": request_id, "where": where, "details": {"category": cat.value}}
    if cat is _K.QUOTA:
        kwargs["details"]["resume_in_seconds"] = round(_seconds_to_beijing_midnight())
        return RequestError(f"{meaning}; stop and resume after midnight", **kwargs)
    if cat is _K.THROTTLED:
        # 30004 is a per-second limit; 14001 may be the 20-second per-interface window (unverified)
        return ThrottledError(meaning, retry_after=_THROTTLE_WAIT.get(code, 1.0), **kwargs)
    cls = CODE_TABLE.error_class(cat)
    return cls(meaning, **kwargs)


def is_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is the "record not found" answer."""
    code = getattr(exc, "vendor_code", None) or getattr(exc, "code", None)
    try:
        return code is not None and category_of(int(code)) is _K.NOT_FOUND
    except ValueError:
        return False


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` (delta-seconds or an HTTP date) in seconds, or ``None`` if absent or unreadable."""
    return parse_retry_after(value.strip() if value else None, now)


def _body_kind(body: bytes, content_type: str | None) -> str:
    """A short, data-free description of a body that is not a Fxiaoke envelope."""
    if not body or not body.strip():
        return "an empty body"
    ctype = (content_type or "").split(";", 1)[0].strip() or "no content type"
    head = body.lstrip()[:64].lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        kind = "an HTML page"
    elif head.startswith((b"{", b"[")):
        kind = "truncated or malformed JSON"
    else:
        kind = "a non-JSON body"
    return f"{kind} ({len(body)} bytes, {ctype})"


def check_response(status: int, body: bytes, *, where: str, record_level: bool = False,
                   token_endpoint: bool = False, headers: Mapping[str, str] | None = None,
                   scrub: Iterable[str] = (), duplicate_codes: Iterable[int] = (),
                   sent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parse and judge one Fxiaoke response; return the JSON envelope when ``errorCode == 0``.

    Args:
        headers: the response headers (``Retry-After``, ``Content-Type``), when the caller has them.
        scrub: values the call sent, hidden if a vendor message repeats them.
        duplicate_codes: errorCodes the system knows to be duplicate-rule refusals.
        sent: the record a write sent (to name the fields a duplicate-rule refusal matched).

    Raises:
        TransientServerError / ThrottledError: HTTP 5xx / 429, whatever the body (gateway pages).
        BadResponseError: any other non-200, or a 200 that is empty, not JSON, truncated, not an object, or has
            no integer ``errorCode``.
        AdapterError / RecordRejectedError: per :data:`CODE_TABLE`.
    """
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    trace: str | None = None
    try:
        doc = loads(body.decode("utf-8"), vendor=VENDOR, where=where, status=status) if body else None
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, Mapping):
        trace = doc.get("traceId") if isinstance(doc.get("traceId"), str) else None
    endpoint = "token endpoint " if token_endpoint else ""
    if status >= 500 or status == 429:
        wait = retry_after_seconds(hdrs.get("retry-after"))
        shape = "a Fxiaoke envelope" if isinstance(doc, Mapping) else _body_kind(body, hdrs.get("content-type"))
        if status == 429:
            raise ThrottledError(f"HTTP 429 from the {endpoint}gateway with {shape}", retry_after=wait,
                                 vendor=VENDOR, status=status, request_id=trace, where=where)
        raise TransientServerError(f"HTTP {status} from the {endpoint}gateway with {shape}", retry_after=wait,
                                   vendor=VENDOR, status=status, request_id=trace, where=where)
    if status != 200:
        # 302 to the HTML home page means base_url points at www.fxiaoke.com, not the open-* gateway
        hint = " (is base_url the open.* gateway?)" if 300 <= status < 400 else ""
        raise BadResponseError(f"unexpected HTTP {status}{hint} with {_body_kind(body, hdrs.get('content-type'))}",
                               vendor=VENDOR, status=status, request_id=trace, where=where)
    if not isinstance(doc, Mapping):
        what = _body_kind(body, hdrs.get("content-type")) if doc is None else f"JSON {type(doc).__name__}"
        raise BadResponseError(f"HTTP 200 from the {endpoint}gateway is not a Fxiaoke JSON envelope: {what}",
                               vendor=VENDOR, status=status, where=where)
    code = doc.get("errorCode")
    if isinstance(code, bool) or not isinstance(code, int):
        if isinstance(code, str) and code.lstrip("-").isdigit():
            code = int(code)
        else:
            raise BadResponseError("response has no integer errorCode", vendor=VENDOR, status=status,
                                   request_id=trace, where=where)
    if code != 0:
        raise error_for(code, where=where, status=status, request_id=trace, record_level=record_level,
                        token_endpoint=token_endpoint, doc=doc, scrub=scrub, duplicate_codes=duplicate_codes,
                        sent=sent)
    return dict(doc)
