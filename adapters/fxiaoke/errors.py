"""Fxiaoke ``errorCode`` classification: the ONE table, and the one place a response is judged.

Fxiaoke answers almost every error with HTTP 200 and ``errorCode != 0`` (FXIAOKE.md §1, §11), so every
response goes through :func:`check_response`. The table below maps each documented (and each observed)
code to what crmbridge does next; where sources disagree every variant is listed. ``errorMessage`` is
never parsed (the docs warn it may change) and never copied into error text: it can echo field values,
i.e. personal data.

Categories (what happens next):

=========== =========================================================== ==========================
category    meaning                                                      crmbridge error
=========== =========================================================== ==========================
TOKEN       corpAccessToken invalid or expired                          TokenExpiredError (refresh once)
AUTH        credentials refused (appId, appSecret, permanentCode, ...)  AuthenticationError
PERMISSION  the app or operator lacks a permission / quota purchase     PermissionDeniedError
THROTTLE    per-second / per-interface window exceeded                  ThrottledError (retried)
QUOTA       daily quota used up (resets 00:00 Beijing)                  RequestError (stop the run)
PARAMETER   crmbridge sent something malformed or beyond a limit        RequestError
NOT_FOUND   the record does not exist                                   None from get / FAILED
BUSINESS    the record broke a business rule (required, duplicate...)   RecordRejectedError (FAILED)
SYSTEM      system error / busy / timeout                               TransientServerError
=========== =========================================================== ==========================

Codes marked *(simulator)* are the business codes crmbridge's simulator uses. Fxiaoke does not publish
the codes of its business-validation errors (FXIAOKE.md §11: "values unverified"); an unknown code is
therefore classified as BUSINESS on a per-record write (the record fails, the run goes on) and as
PARAMETER anywhere else, keeping the code for support.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    PermissionDeniedError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TokenExpiredError,
    TransientServerError,
)

__all__ = [
    "BUSINESS_CODES",
    "CODE_TABLE",
    "Category",
    "VENDOR",
    "category_of",
    "check_response",
    "error_for",
    "is_not_found",
]

VENDOR = "fxiaoke"


class Category(enum.StrEnum):
    TOKEN = "token"
    AUTH = "auth"
    PERMISSION = "permission"
    THROTTLE = "throttle"
    QUOTA = "quota"
    PARAMETER = "parameter"
    NOT_FOUND = "not_found"
    BUSINESS = "business"
    SYSTEM = "system"


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
}

_C = Category
#: errorCode → (category, short English meaning). The meaning is safe to show: it never holds record data.
CODE_TABLE: dict[int, tuple[Category, str]] = {
    # system (retryable)
    -2: (_C.SYSTEM, "system error"),
    -1: (_C.SYSTEM, "system busy"),
    50009: (_C.SYSTEM, "service error, e.g. timeout"),
    # token: 20016 documented + observed for forged tokens in both auth styles; 20005 for the app token
    20005: (_C.TOKEN, "access token missing or expired"),
    20016: (_C.TOKEN, "corpAccessToken missing or expired"),
    # credentials (documented table, plus 10006 observed for a wrong or missing appSecret)
    10001: (_C.AUTH, "missing parameter appId"),
    10002: (_C.AUTH, "missing parameter appSecret"),
    10006: (_C.AUTH, "appSecret missing or illegal (observed; documented as missing scope)"),
    10012: (_C.AUTH, "missing parameter permanentCode"),
    11001: (_C.AUTH, "illegal appId"),
    11002: (_C.AUTH, "illegal appSecret"),
    11013: (_C.AUTH, "illegal permanentCode"),
    11014: (_C.AUTH, "illegal corpAccessToken"),
    11015: (_C.AUTH, "illegal corpId"),
    20006: (_C.AUTH, "appId or appSecret wrong"),
    20010: (_C.AUTH, "code missing or expired"),
    20012: (_C.AUTH, "openUserId not found (check open_user_id / admin_mobile)"),
    20015: (_C.AUTH, "permanent code wrong"),
    20017: (_C.AUTH, "corpId not found / no credentials sent"),
    12002: (_C.AUTH, "login state error"),
    # permission / purchase
    15003: (_C.PERMISSION, "app has no access permission"),
    20014: (_C.PERMISSION, "app may not read this employee's data"),
    20020: (_C.PERMISSION, "app may not read this tenant's data"),
    20021: (_C.PERMISSION, "app disabled"),
    20022: (_C.PERMISSION, "tenant has not authorised the app"),
    20023: (_C.PERMISSION, "app may not access departments"),
    30003: (_C.PERMISSION, "tenant has no Open API quota purchased"),
    # throttling: which of 14001 / 30004 the per-interface window returns is unverified; both are retried
    14001: (_C.THROTTLE, "interface call limit exceeded"),
    30004: (_C.THROTTLE, "per-second frequency exceeded"),
    30002: (_C.QUOTA, "daily call quota exceeded (resets 00:00 Beijing time)"),
    # parameters / limits
    10003: (_C.PARAMETER, "missing parameter appAccessToken"),
    10004: (_C.PARAMETER, "missing parameter redirectUri"),
    10005: (_C.PARAMETER, "missing parameter responseType"),
    10007: (_C.PARAMETER, "missing parameter state"),
    10008: (_C.PARAMETER, "missing parameter code"),
    10009: (_C.PARAMETER, "missing parameter appAccount"),
    10010: (_C.PARAMETER, "missing parameter openUserId"),
    10013: (_C.PARAMETER, "missing corpAccessToken, or offset beyond 10000 (deep-paging page)"),
    10014: (_C.PARAMETER, "missing parameter corpId"),
    10015: (_C.PARAMETER, "missing parameter toUser"),
    11003: (_C.PARAMETER, "illegal appAccessToken"),
    11004: (_C.PARAMETER, "illegal redirectUri"),
    11005: (_C.PARAMETER, "illegal responseType"),
    11006: (_C.PARAMETER, "illegal scope"),
    11007: (_C.PARAMETER, "illegal state"),
    11008: (_C.PARAMETER, "illegal openUserId"),
    11009: (_C.PARAMETER, "illegal departmentId"),
    11010: (_C.PARAMETER, "illegal code"),
    11011: (_C.PARAMETER, "illegal appAccount"),
    11016: (_C.PARAMETER, "illegal toUser"),
    11017: (_C.PARAMETER, "illegal msgType"),
    11018: (_C.PARAMETER, "illegal templateId"),
    12003: (_C.PARAMETER, "unsupported message type"),
    12004: (_C.PARAMETER, "POST body empty"),
    12005: (_C.PARAMETER, "text message empty"),
    15002: (_C.PARAMETER, "illegal parameter"),
    30007: (_C.PARAMETER, "department does not exist"),
    30027: (_C.PARAMETER, "employee does not exist"),
    32000: (_C.PARAMETER, "parameter error"),
    40010: (_C.PARAMETER, "illegal templateId"),
    # business (simulator-chosen codes; the real values are unpublished)
    BUSINESS_CODES["NOT_FOUND"]: (_C.NOT_FOUND, "record not found (simulator)"),
    BUSINESS_CODES["REQUIRED_MISSING"]: (_C.BUSINESS, "required field missing (simulator)"),
    BUSINESS_CODES["DUPLICATE"]: (_C.BUSINESS, "duplicate value in a unique field (simulator)"),
    BUSINESS_CODES["INVALID_VALUE"]: (_C.BUSINESS, "field value invalid (simulator)"),
    BUSINESS_CODES["LOCKED"]: (_C.BUSINESS, "record locked (simulator)"),
    BUSINESS_CODES["NO_DATA_PERMISSION"]: (_C.BUSINESS, "no data permission for this record (simulator)"),
    BUSINESS_CODES["OBJECT_NOT_FOUND"]: (_C.PARAMETER, "object does not exist (simulator)"),
    BUSINESS_CODES["NOT_INVALIDATED"]: (_C.BUSINESS, "only invalidated records can be deleted (simulator)"),
}

_CLASS_OF = {
    _C.TOKEN: TokenExpiredError,
    _C.AUTH: AuthenticationError,
    _C.PERMISSION: PermissionDeniedError,
    _C.THROTTLE: ThrottledError,
    _C.QUOTA: RequestError,
    _C.PARAMETER: RequestError,
    _C.NOT_FOUND: RequestError,
    _C.SYSTEM: TransientServerError,
}

_BEIJING = timezone(timedelta(hours=8))
#: seconds to wait before retrying a throttled call, by code (the gateway sends no Retry-After)
_THROTTLE_WAIT = {30004: 1.0, 14001: 5.0}


def category_of(code: int, *, record_level: bool = False, token_endpoint: bool = False) -> Category:
    """The category of ``code``.

    Args:
        code: the ``errorCode``.
        record_level: the call writes one record (unknown codes then mean the record was refused).
        token_endpoint: the call fetched a token (anything not transient there is a credential problem).
    """
    known = CODE_TABLE.get(code)
    cat = known[0] if known else (_C.BUSINESS if record_level else _C.PARAMETER)
    if token_endpoint and cat not in (_C.THROTTLE, _C.QUOTA, _C.SYSTEM, _C.PERMISSION):
        return _C.AUTH
    if not record_level and cat is _C.BUSINESS:
        return _C.PARAMETER
    return cat


def _seconds_to_beijing_midnight(now: datetime | None = None) -> float:
    now = (now or datetime.now(UTC)).astimezone(_BEIJING)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def error_for(code: int, *, where: str, status: int | None = 200, request_id: str | None = None,
              record_level: bool = False, token_endpoint: bool = False) -> Exception:
    """The crmbridge error for a non-zero ``errorCode`` (message from the table, never ``errorMessage``)."""
    cat = category_of(code, record_level=record_level, token_endpoint=token_endpoint)
    meaning = CODE_TABLE[code][1] if code in CODE_TABLE else "unknown errorCode"
    if cat is _C.BUSINESS or (cat is _C.NOT_FOUND and record_level):
        return RecordRejectedError(f"{VENDOR} refused the record: {meaning} (errorCode {code}, "
                                   f"trace {request_id or '-'})", where=where, code=str(code))
    kwargs: dict[str, Any] = {"vendor": VENDOR, "status": status, "vendor_code": code,
                              "request_id": request_id, "where": where, "details": {"category": cat.value}}
    if cat is _C.QUOTA:
        kwargs["details"]["resume_in_seconds"] = round(_seconds_to_beijing_midnight())
        return RequestError(f"{meaning}; stop and resume after midnight", **kwargs)
    cls = _CLASS_OF[cat]
    if cat is _C.THROTTLE:
        # 30004 is a per-second limit; 14001 may be the 20-second per-interface window (unverified)
        return ThrottledError(meaning, retry_after=_THROTTLE_WAIT.get(code, 1.0), **kwargs)
    return cls(meaning, **kwargs)


def is_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is the "record not found" answer."""
    code = getattr(exc, "vendor_code", None) or getattr(exc, "code", None)
    try:
        return code is not None and category_of(int(code)) is _C.NOT_FOUND
    except ValueError:
        return False


def check_response(status: int, body: bytes, *, where: str, record_level: bool = False,
                   token_endpoint: bool = False) -> dict[str, Any]:
    """Parse and judge one Fxiaoke response; return the JSON envelope when ``errorCode == 0``.

    Raises:
        BadResponseError: not JSON, not an object, or no integer ``errorCode``.
        AdapterError / RecordRejectedError: per :data:`CODE_TABLE`.
    """
    trace: str | None = None
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, Mapping):
        trace = doc.get("traceId") if isinstance(doc.get("traceId"), str) else None
    if status >= 500 or status == 429:
        cls = ThrottledError if status == 429 else TransientServerError
        raise cls(f"HTTP {status} from gateway", vendor=VENDOR, status=status, request_id=trace, where=where)
    if status != 200:
        # 302 to the HTML home page means base_url points at www.fxiaoke.com, not the open-* gateway
        hint = " (is base_url the open.* gateway?)" if 300 <= status < 400 else ""
        raise BadResponseError(f"unexpected HTTP {status}{hint}", vendor=VENDOR, status=status,
                               request_id=trace, where=where)
    if not isinstance(doc, Mapping):
        raise BadResponseError("response is not a JSON object", vendor=VENDOR, status=status, where=where)
    code = doc.get("errorCode")
    if isinstance(code, bool) or not isinstance(code, int):
        if isinstance(code, str) and code.lstrip("-").isdigit():
            code = int(code)
        else:
            raise BadResponseError("response has no integer errorCode", vendor=VENDOR, status=status,
                                   request_id=trace, where=where)
    if code != 0:
        raise error_for(code, where=where, status=status, request_id=trace, record_level=record_level,
                        token_endpoint=token_endpoint)
    return dict(doc)

