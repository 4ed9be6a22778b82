"""The "memory" adapter: a client of the generic JSON record store served by :class:`MemorySimulator`.

It is the smallest complete adapter: OAuth-style client-credentials token with expiry, keyset pagination
with a ``since`` filter, batched upsert by a key field with per-item results, optimistic versions,
delete and tombstones. It proves the base class and the contract suite on something simple.

It is a test adapter, not a built-in: a test session makes it known as ``memory``
(:func:`register`, as crmbridge's own ``tests/conftest.py`` does, or the ``crmbridge_memory`` fixture of
:mod:`crmbridge.testing.plugin`); a production configuration cannot name it.

Configuration (YAML)::

    systems:
      scratch:
        adapter: memory
        base_url: http://127.0.0.1:8900
        client_id: crm-client
        client_secret: env:MEMORY_SECRET
        page_size: 100
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import requests
from pydantic import Field

from crmbridge.adapters._json import response_json
from crmbridge.adapters.base import (
    Adapter,
    AdapterConfig,
    FieldInfo,
    Page,
    RawRecord,
    WriteItem,
    WriteResult,
    WriteStatus,
)
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
from crmbridge.core.retry import retry_after_seconds
from crmbridge.core.secrets import SecretRef, resolve_secret

__all__ = ["ERROR_TABLE", "MemoryAdapter", "MemoryConfig"]

VENDOR = "memory"
SYSTEM_FIELDS = frozenset({"id", "version", "modified_at"})

#: The one place a memory-store response is classified: (HTTP status, error code or ``None`` for any)
#: → the crmbridge error raised. Looked up by exact code first, then by status, then by status class.
ERROR_TABLE: Mapping[tuple[int, str | None], type[AdapterError]] = {
    (400, None): RequestError,
    (401, "invalid_client"): AuthenticationError,
    (401, "token_expired"): TokenExpiredError,
    (401, "invalid_token"): TokenExpiredError,
    (401, None): AuthenticationError,
    (403, None): PermissionDeniedError,
    (404, None): RequestError,
    (405, None): RequestError,
    (409, None): RequestError,
    (429, None): ThrottledError,
    (500, None): TransientServerError,
}

_RESULT_STATUS = {"created": WriteStatus.CREATED, "updated": WriteStatus.UPDATED,
                  "unchanged": WriteStatus.UNCHANGED, "conflict": WriteStatus.CONFLICT}


class MemoryConfig(AdapterConfig):
    """Configuration of a memory-store system."""

    adapter: Literal["memory"] = "memory"
    base_url: str = Field(description="root URL of the store, e.g. http://127.0.0.1:8900")
    client_id: str
    client_secret: SecretRef = Field(description="secret reference, env:NAME or file:PATH")
    page_size: int = Field(100, ge=1, le=200, description="records per list call (the store allows 200)")


def _parse_ts(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadResponseError(f"unparsable timestamp in {where}", vendor=VENDOR) from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MemoryAdapter(Adapter):
    """Adapter for the memory record store."""

    name: ClassVar[str] = VENDOR
    Config: ClassVar[type[AdapterConfig]] = MemoryConfig
    role = "system_of_record"   # a test store standing in for either end: mappings to it keep values in clear
    max_batch_size: ClassVar[int] = 50
    default_concurrency: ClassVar[int] = 2

    config: MemoryConfig

    def __init__(self, config: AdapterConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self._base = self.config.base_url.rstrip("/")
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    # ---------------------------------------------------------------- hooks
    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None,
                   state: Any) -> Page:
        params: dict[str, Any] = {"limit": self.config.page_size}
        if since is not None:
            params["since"] = _iso(since)
        if state is not None:
            params["cursor"] = state
        body = self._call("GET", f"/records/{obj}", params=params)
        rows = self._rows(body, "records")
        nxt = body.get("next_cursor")
        if nxt is not None and not isinstance(nxt, str):
            raise BadResponseError("next_cursor is not a string", vendor=VENDOR)
        if nxt is not None and not rows:
            raise BadResponseError("empty page with a next cursor", vendor=VENDOR)
        return Page([self._record(obj, r) for r in rows], nxt or None)

    def _list_deleted_page(self, obj: str, *, since: datetime | None, state: Any) -> Page:
        params: dict[str, Any] = {"limit": self.config.page_size}
        if since is not None:
            params["since"] = _iso(since)
        if state is not None:
            params["cursor"] = state
        body = self._call("GET", f"/deleted/{obj}", params=params)
        out = [RawRecord(obj, str(r["id"]), dict(r), _parse_ts(r.get("deleted_at"), "deleted_at"),
                         deleted=True) for r in self._rows(body, "records", need=("id",))]
        return Page(out, body.get("next_cursor") or None)

    def _get(self, obj: str, external_id: str) -> RawRecord | None:
        body = self._call("GET", f"/records/{obj}/{external_id}", missing_ok=True)
        return None if body is None else self._record(obj, body)

    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        body = self._call("GET", f"/records/{obj}", params={"key_field": key_field, "key": key})
        rows = self._rows(body, "records")
        if len(rows) > 1:
            raise BadResponseError(f"{len(rows)} records share one key in {key_field}", vendor=VENDOR)
        return self._record(obj, rows[0]) if rows else None

    def _write_batch(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        key_fields = {it.key_field for it in batch if it.external_id is None}
        if len(key_fields) > 1:
            raise RequestError("one batch mixes key fields", vendor=VENDOR)
        key_field = key_fields.pop() if key_fields else None
        items = []
        for it in batch:
            fields = {k: v for k, v in it.payload.items() if k not in SYSTEM_FIELDS}
            if it.key_field:
                fields[it.key_field] = it.key
            items.append({"id": it.external_id, "fields": fields, "expected_version": it.expected_version})
        body = self._call("POST", f"/records/{obj}/upsert", json={"key_field": key_field, "items": items})
        rows = self._rows(body, "results", need=("status",))
        if len(rows) != len(batch):
            raise BadResponseError(f"{len(rows)} results for {len(batch)} items", vendor=VENDOR)
        return [self._result(it, r) for it, r in zip(batch, rows, strict=True)]

    def _delete_batch(self, obj: str, external_ids: list[str]) -> list[WriteResult]:
        out = []
        for rid in external_ids:
            # a record already gone (e.g. deleted by a retried call) is deleted: deletes are idempotent
            self._call("DELETE", f"/records/{obj}/{rid}", missing_ok=True)
            out.append(WriteResult(rid, WriteStatus.DELETED, external_id=rid))
        return out

    def _describe(self, obj: str) -> list[FieldInfo]:
        page = self._list_page(obj, since=None, fields=None, state=None)
        names = sorted({k for r in page.records for k in r.data})
        return [FieldInfo(n, "string", read_only=n in SYSTEM_FIELDS) for n in names]

    def _invalidate_token(self) -> None:
        with self._token_lock:
            self._token = None

    # ---------------------------------------------------------------- wire
    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            secret = resolve_secret(self.config.client_secret, where=f"systems.{self.system}.client_secret")
            resp = self._http("POST", f"{self._base}/token",
                              json={"client_id": self.config.client_id,
                                    "client_secret": secret.get_secret_value()})
            body = self._classify(resp, token_call=True)
            token, lifetime = body.get("access_token"), body.get("expires_in")
            if not isinstance(token, str) or not isinstance(lifetime, int | float):
                raise BadResponseError("token response lacks access_token/expires_in", vendor=VENDOR,
                                       status=resp.status_code)
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, float(lifetime) * 0.9)
            return token

    def _call(self, method: str, path: str, *, missing_ok: bool = False, **kw: Any) -> Any:
        token = self._access_token()
        resp = self._http(method, f"{self._base}{path}", headers={"Authorization": f"Bearer {token}"}, **kw)
        if missing_ok and resp.status_code == 404:
            return None
        return self._classify(resp)

    @staticmethod
    def _classify(resp: requests.Response, *, token_call: bool = False) -> Any:
        """Read a response: the parsed body on success, else the error ``ERROR_TABLE`` names."""
        status = resp.status_code
        rid = resp.headers.get("X-Request-Id")
        if status == 204:
            return {}
        try:
            body = response_json(resp, vendor=VENDOR, request_id=rid)
        except ValueError as exc:
            raise BadResponseError("response is not JSON", vendor=VENDOR, status=status,
                                   request_id=rid) from exc
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise BadResponseError("response is not a JSON object", vendor=VENDOR, status=status)
            return body
        err = body.get("error") if isinstance(body, dict) else None
        code = err.get("code") if isinstance(err, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        if token_call and status == 401:
            code = "invalid_client"
        cls = (ERROR_TABLE.get((status, code)) or ERROR_TABLE.get((status, None))
               or ERROR_TABLE.get((status // 100 * 100, None)) or RequestError)
        kw: dict[str, Any] = {"vendor": VENDOR, "status": status, "vendor_code": code, "request_id": rid}
        if issubclass(cls, ThrottledError | TransientServerError | TokenExpiredError):
            kw["retry_after"] = _retry_after(resp)
        raise cls(str(message or f"HTTP {status}"), **kw)

    @staticmethod
    def _rows(body: Any, key: str, need: tuple[str, ...] = ("id", "version", "modified_at")) -> list[dict]:
        rows = body.get(key)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadResponseError(f"'{key}' is not a list of objects", vendor=VENDOR)
        for r in rows:
            if key == "results" and r.get("status") == "error":
                continue
            missing = [n for n in need if n not in r]
            if missing:
                raise BadResponseError(f"'{key}' item lacks {', '.join(missing)}", vendor=VENDOR)
        return rows

    @staticmethod
    def _record(obj: str, row: Mapping[str, Any]) -> RawRecord:
        if "id" not in row:
            raise BadResponseError("record lacks id", vendor=VENDOR)
        return RawRecord(obj, str(row["id"]), dict(row), _parse_ts(row.get("modified_at"), "modified_at"),
                         None if row.get("version") is None else str(row["version"]))

    @staticmethod
    def _result(item: WriteItem, row: Mapping[str, Any]) -> WriteResult:
        status = _RESULT_STATUS.get(str(row.get("status")))
        if status is None:
            err = row.get("error") if isinstance(row.get("error"), dict) else {}
            if row.get("status") != "error":
                raise BadResponseError(f"unknown item status {row.get('status')!r}", vendor=VENDOR)
            return WriteResult(item.key, WriteStatus.FAILED, external_id=item.external_id,
                               error=RecordRejectedError(str(err.get("message") or "rejected"),
                                                         field=err.get("field"), code=err.get("code")))
        rid = row.get("id")
        return WriteResult(item.key, status, external_id=None if rid is None else str(rid),
                           version=None if row.get("version") is None else str(row["version"]),
                           modified_at=_parse_ts(row.get("modified_at"), "modified_at"))


def _retry_after(resp: requests.Response) -> float | None:
    return retry_after_seconds(resp.headers.get("Retry-After"))


def register() -> None:
    """Make this adapter (and :class:`MemorySimulator`) known as ``memory`` for the rest of this process."""
    from crmbridge.adapters import registry
    from crmbridge.testing.memory.simulator import MemorySimulator

    registry.register("memory", MemoryAdapter, simulator=MemorySimulator)
