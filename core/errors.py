"""The crmbridge exception tree.

Every error crmbridge raises derives from :class:`CrmBridgeError`. The branches are
named by **what the runtime does next**, so callers catch by consequence, never by vendor::

    CrmBridgeError
    ├── ConfigurationError          stop before any work; message names the file / key path
    │   ├── MappingError            a mapping file is malformed or refers to unknown things
    │   ├── SecretError             a secret reference is literal, unset or unreadable
    │   └── UnknownAdapterError     an adapter name is not registered (lists the known ones)
    ├── RecordError                 one record is bad: dead-letter it, the run goes on
    │   ├── ValidationError         fails canonical validation (checksum, phone, mandatory field)
    │   ├── ForbiddenDataError      carries C3 authentication data, which crmbridge refuses
    │   └── RecordRejectedError     the target refused this record (field, vendor code)
    ├── ConflictError               stale version / concurrent edit: goes to the conflict queue
    ├── AdapterError                a call to an external system failed (vendor, status, code, request id)
    │   ├── RetryableError          transient: the shared retry policy retries it
    │   │   ├── ThrottledError      rate limited (honours retry_after when the vendor sends one)
    │   │   ├── TransientServerError 5xx, timeouts, dropped connections
    │   │   └── TokenExpiredError   token expired or invalidated: refresh once and retry
    │   ├── AuthenticationError     credentials refused: stop the run (it is configuration)
    │   ├── PermissionDeniedError   the integration user lacks a permission: stop the run
    │   ├── RequestError            crmbridge sent something the vendor refused (a bug or a limit)
    │   └── BadResponseError        garbage, truncated or unparsable body
    └── FatalSyncError              abort the run; the cursor stays where the last committed batch left it
        ├── SystemUnavailableError  a system is down as a whole (circuit breaker): exit "unreachable"
        └── LeaseHeldError          another process holds the job's lease: the run was refused (exit "refused")

Messages carry masked values only; never a secret or personal data in clear.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AdapterError",
    "AuthenticationError",
    "BadResponseError",
    "ConfigurationError",
    "ConflictError",
    "CrmBridgeError",
    "FatalSyncError",
    "ForbiddenDataError",
    "LeaseHeldError",
    "MappingError",
    "PermissionDeniedError",
    "RecordError",
    "RecordRejectedError",
    "RequestError",
    "RetryableError",
    "SecretError",
    "SystemUnavailableError",
    "ThrottledError",
    "TokenExpiredError",
    "TransientServerError",
    "UnknownAdapterError",
    "ValidationError",
]


class CrmBridgeError(Exception):
    """Root of every error crmbridge raises.

    Attributes:
        where: where the problem is (a file and line, a key path, a record reference). Never personal data.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigurationError(CrmBridgeError):
    """Configuration is wrong; nothing runs until it is fixed."""


class MappingError(ConfigurationError):
    """A mapping file is malformed or refers to a transform, code table or canonical path that does not exist."""


class SecretError(ConfigurationError):
    """A secret is given literally, or its ``env:``/``file:`` reference cannot be resolved."""


class UnknownAdapterError(ConfigurationError):
    """An adapter name that is not registered. The message lists the known names."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown adapter {name!r}; known adapters: {', '.join(sorted(known)) or '(none)'}")
        self.name = name
        self.known = sorted(known)


class RecordError(CrmBridgeError):
    """One record cannot be processed. It goes to the dead letters and the run continues.

    Attributes:
        field: the canonical or vendor field at fault, when known.
        code: a short machine-readable reason (``invalid_checksum``, ``unparsable_phone``, ``MANDATORY_NOT_FOUND``...).
    """

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, where=where)
        self.field = field
        self.code = code


class ValidationError(RecordError):
    """The record fails canonical validation."""


class ForbiddenDataError(RecordError):
    """The record carries C3 authentication data (passwords, PINs, CVV, track data), which crmbridge never carries."""


class RecordRejectedError(RecordError):
    """The target system refused this record."""


class ConflictError(CrmBridgeError):
    """A write was based on a stale version, or both sides changed the same field."""

    def __init__(self, message: str, *, where: str | None = None, current_version: str | None = None) -> None:
        super().__init__(message, where=where)
        self.current_version = current_version


class AdapterError(CrmBridgeError):
    """A call to an external system failed.

    Attributes:
        vendor: adapter name (``zoho``, ``fxiaoke``...).
        status: HTTP status, when there was one.
        vendor_code: the vendor's own error code (``INVALID_TOKEN``, ``20016``, ``MSGSTAT=FAILURE/ST-SAVE-001``).
        request_id: the vendor's trace or request id, for support tickets.
    """

    def __init__(self, message: str, *, vendor: str | None = None, status: int | None = None,
                 vendor_code: str | int | None = None, request_id: str | None = None,
                 where: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, where=where)
        self.vendor = vendor
        self.status = status
        self.vendor_code = None if vendor_code is None else str(vendor_code)
        self.request_id = request_id
        self.details = details or {}

    def __str__(self) -> str:
        parts = [p for p in (self.vendor, f"HTTP {self.status}" if self.status else None,
                             self.vendor_code) if p]
        head = f"[{' '.join(parts)}] " if parts else ""
        tail = f" (request id {self.request_id})" if self.request_id else ""
        return f"{head}{super().__str__()}{tail}"


class RetryableError(AdapterError):
    """Transient failure: the shared retry policy may try again.

    Attributes:
        retry_after: seconds the vendor asked us to wait, if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ThrottledError(RetryableError):
    """Rate limit or concurrency limit hit."""


class TransientServerError(RetryableError):
    """5xx, timeout, dropped connection."""


class TokenExpiredError(RetryableError):
    """The access token expired or was invalidated; refresh it once and retry."""


class AuthenticationError(AdapterError):
    """Credentials were refused. A configuration problem: the run stops."""


class PermissionDeniedError(AdapterError):
    """The integration user lacks a permission or scope. The run stops."""


class RequestError(AdapterError):
    """The vendor refused the request itself (bad parameter, limit exceeded)."""


class BadResponseError(AdapterError):
    """The response could not be understood: garbage, truncated, wrong shape or encoding."""


class FatalSyncError(CrmBridgeError):
    """The run cannot continue. The cursor stays at the last committed batch."""


class SystemUnavailableError(FatalSyncError):
    """A system does not answer as a whole: consecutive calls failed after every retry (the circuit breaker), or
    its change list cannot be read. The run stops with the cursor at the last committed batch and the
    "unreachable" exit code; records of a batch that was not recorded are read again by the next run.

    Attributes:
        system: the configured system name.
    """

    def __init__(self, message: str, *, system: str, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.system = system


class LeaseHeldError(FatalSyncError):
    """The run was refused before it started: another process holds the job's lease (it is running the job). Not a
    failure of the job: nothing was read or written. ``crmbridge run`` exits with the "refused" code; the
    scheduler skips the fire.

    Attributes:
        job: the job.
        holder: the lease holder (``host:pid:nonce``), or None if the lease ended meanwhile.
        run_id: the run row recording the refused attempt (status ``refused``), once recorded.
    """

    def __init__(self, job: str, holder: str | None, *, where: str | None = None) -> None:
        super().__init__(f"job {job} is already running (lease held by {holder}); this run was refused",
                         where=where)
        self.job = job
        self.holder = holder
        self.run_id: int | None = None

    def __str__(self) -> str:
        recorded = f" (recorded as run {self.run_id})" if self.run_id is not None else ""
        return super().__str__() + recorded
