"""The building blocks of every vendor's error table: what a failure means (:class:`ErrorKind`, the outcome code),
one row of a table (:class:`ErrorRule`), a classified failure (:class:`Classified`) and the lookup
(:class:`ErrorTable`) that maps a vendor code, an HTTP status, a SOAP fault or an exception to a row: the outcome
and the crmbridge error class raised for it.

Each vendor's ``errors.py`` holds only its facts (the rows, in its own order, and the few outcomes whose
exception differs) and how it reads a reply; the types and the matching are shared, so "a 5xx is transient" or "a
code is matched in full" mean the same in every vendor. A table has two parts, either may be empty:

* ``codes``: exact vendor codes (Zoho's ``INVALID_TOKEN``, Fxiaoke's ``20016``), looked up first;
* ``rules``: ordered rows, first match wins, each matching any of: HTTP ``status`` (``"5xx"`` for a class), a
  vendor ``code`` (a regular expression matched in full), the ``channel`` the failure came by (SOAP: exception,
  http, fault, business), an ``exception`` class, the ``auth`` type in use, a ``text`` pattern in the vendor's
  message. A row's unset conditions match anything.

Rows a system's configuration adds (``business_errors``) are passed as ``extra`` and tried before the table.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from crmbridge.core.errors import (
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

__all__ = ["DEFAULT_ERRORS", "RECORD_KINDS", "Classified", "ErrorKind", "ErrorRule", "ErrorTable"]


class ErrorKind(enum.StrEnum):
    """What a failure means for the caller: the outcome code of a classified failure."""

    AUTH = "auth"                    # credentials (or tenant) refused: stop the run, fix the configuration
    TOKEN_EXPIRED = "token_expired"  # access token or WS-Security token refused: a fresh one, once
    PERMISSION = "permission"        # the integration user lacks a right: stop the run
    THROTTLED = "throttled"          # rate limited: retried with backoff, honouring Retry-After
    QUOTA = "quota"                  # a daily quota is used up: stop, resume when it resets
    TRANSIENT = "transient"          # 5xx, timeouts, resets, a busy system: retried
    NOT_FOUND = "not_found"          # no such record: a get returns None, a write is a record failure
    CONFLICT = "conflict"            # the record changed since the expected version: never an overwrite
    VALIDATION = "validation"        # the vendor refused the record's values: dead letter
    REJECTED = "rejected"            # any other refusal of this one record (duplicate, locked...): dead letter
    REQUEST = "request"              # crmbridge sent something the service refuses (a bug, a limit, configuration)
    CONFIGURATION = "configuration"  # the configuration does not fit the service (paths, WSDL): stop, fix it
    BAD_RESPONSE = "bad_response"    # an unparsable, unsafe or wrongly shaped reply


#: outcomes that concern one record rather than the call: a failed write result, not an exception
RECORD_KINDS = frozenset({ErrorKind.NOT_FOUND, ErrorKind.CONFLICT, ErrorKind.VALIDATION, ErrorKind.REJECTED})

#: the crmbridge exception an outcome raises when it answers a whole call (a table may override some)
DEFAULT_ERRORS: Mapping[ErrorKind, type[CrmBridgeError]] = {
    ErrorKind.AUTH: AuthenticationError,
    ErrorKind.TOKEN_EXPIRED: TokenExpiredError,
    ErrorKind.PERMISSION: PermissionDeniedError,
    ErrorKind.THROTTLED: ThrottledError,
    ErrorKind.QUOTA: RequestError,
    ErrorKind.TRANSIENT: TransientServerError,
    ErrorKind.NOT_FOUND: RecordRejectedError,
    ErrorKind.CONFLICT: ConflictError,
    ErrorKind.VALIDATION: RecordRejectedError,
    ErrorKind.REJECTED: RecordRejectedError,
    ErrorKind.REQUEST: RequestError,
    ErrorKind.CONFIGURATION: ConfigurationError,
    ErrorKind.BAD_RESPONSE: BadResponseError,
}


@lru_cache(maxsize=512)
def _pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row of an error table.

    Attributes:
        kind: the outcome.
        message: crmbridge's own message (no vendor text, no values).
        status: the HTTP status, or a class ``"4xx"``/``"5xx"``; ``None``: any.
        code: a regular expression matched in full against the vendor code; ``None``: any (a row of a table's
            ``codes`` part is found by its exact code and leaves this unset).
        channel: where the failure came from (the SOAP adapter's ``exception``, ``http``, ``fault``,
            ``business``); ``None``: any.
        exception: an exception class the failure must be an instance of; ``None``: any.
        auth: the authentication type in use (``basic``, ``bearer``); ``None``: any.
        text: a regular expression searched (case-insensitive) in the vendor's message; ``None``: any.
        error: the crmbridge exception raised for this row when it is not the table's for ``kind``.
    """

    kind: ErrorKind
    message: str = ""
    status: int | str | None = None
    code: str | None = None
    channel: str | None = None
    exception: type[BaseException] | None = None
    auth: str | None = None
    text: str | None = None
    error: type[CrmBridgeError] | None = None

    def matches(self, *, status: int | None = None, code: str | None = None, channel: str | None = None,
                exc: BaseException | None = None, auth: str | None = None, text: str | None = None) -> bool:
        """Whether the failure described by the keyword facts fits this row (unset conditions match anything;
        a condition the failure has no fact for does not match)."""
        if self.channel is not None and self.channel != channel:
            return False
        if self.status is not None and not _status_matches(self.status, status):
            return False
        if self.exception is not None and not isinstance(exc, self.exception):
            return False
        if self.auth is not None and self.auth != auth:
            return False
        if self.code is not None and (code is None or not _pattern(self.code).fullmatch(code)):
            return False
        return self.text is None or re.search(self.text, text or "", re.IGNORECASE) is not None


def _status_matches(want: int | str, status: int | None) -> bool:
    if status is None:
        return False
    if isinstance(want, str):   # a class: "5xx"
        return len(str(status)) == 3 and str(status)[0] == want[0]
    return status == want


@dataclass(frozen=True, slots=True)
class Classified:
    """A failure after classification: its outcome, crmbridge's message and what the vendor said about it."""

    kind: ErrorKind
    message: str
    status: int | None = None
    vendor_code: str | None = None
    field: str | None = None
    request_id: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class ErrorTable:
    """A vendor's error table: exact ``codes`` first, then the ordered ``rules``; ``errors`` overrides the
    exception of some outcomes (:data:`DEFAULT_ERRORS` for the rest)."""

    rules: tuple[ErrorRule, ...] = ()
    codes: Mapping[Hashable, ErrorRule] = field(default_factory=dict)
    errors: Mapping[ErrorKind, type[CrmBridgeError]] = field(default_factory=dict)

    def lookup(self, *, extra: Iterable[ErrorRule] = (), code: Hashable | None = None, status: int | None = None,
               channel: str | None = None, exc: BaseException | None = None, auth: str | None = None,
               text: str | None = None) -> ErrorRule | None:
        """The row for a failure: an exact code entry, else the first of ``extra`` and then :attr:`rules` that
        matches the facts given; ``None`` when nothing does (the vendor's catch-all decides)."""
        if code is not None and code in self.codes:
            return self.codes[code]
        text_code = None if code is None else str(code)
        for rule in (*extra, *self.rules):
            if rule.matches(status=status, code=text_code, channel=channel, exc=exc, auth=auth, text=text):
                return rule
        return None

    def error_class(self, rule: ErrorRule | ErrorKind) -> type[CrmBridgeError]:
        """The crmbridge exception raised for a row (its own ``error``, else the table's for its kind)."""
        if isinstance(rule, ErrorRule):
            if rule.error is not None:
                return rule.error
            rule = rule.kind
        return self.errors.get(rule) or DEFAULT_ERRORS[rule]

    # a table reads like the mapping of its exact codes (``code in TABLE``, ``TABLE[code]``, ``TABLE.get(code)``)
    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def __getitem__(self, code: Hashable) -> ErrorRule:
        return self.codes[code]

    def get(self, code: Hashable, default: ErrorRule | None = None) -> ErrorRule | None:
        return self.codes.get(code, default)

    def __iter__(self) -> Iterator[ErrorRule]:
        """Every row: the code entries, then the ordered rules."""
        yield from self.codes.values()
        yield from self.rules

    def kinds(self) -> set[ErrorKind]:
        return {r.kind for r in self}
