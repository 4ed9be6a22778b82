"""The complaint-service adapter: CRM cases in, handling status out (docs/vendors/complaints.md).

One object, ``complaints``. Writes: a complaint the service has not seen is created with ``POST /complaints`` and an
``Idempotency-Key`` (crmbridge's key of the case, so a retried POST after a lost answer replays instead of creating
twice); one it has (the cross-reference's id, or found by ``source_case_id``) is changed with ``PATCH`` and
``If-Match`` when the write carries the version it is based on. Reads: ``GET /complaints?updated_since=…`` pages by
cursor, oldest change first, so the status the bank's complaint team sets comes back to the CRM. Complaints are
never deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import requests

from crmbridge.adapters.base import (
    Adapter,
    AdapterConfig,
    FieldInfo,
    Finding,
    Page,
    RawRecord,
    WriteItem,
    WriteResult,
    WriteStatus,
)
from crmbridge.adapters.complaints.client import ComplaintClient, parse_time
from crmbridge.adapters.complaints.config import ComplaintsConfig
from crmbridge.adapters.complaints.errors import VENDOR, to_record_error
from crmbridge.adapters.errortable import Classified, ErrorKind
from crmbridge.core.errors import (
    AdapterError,
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    RequestError,
)
from crmbridge.core.secrets import resolve_secret

__all__ = ["ComplaintsAdapter", "ComplaintsConfig", "OBJECT"]

OBJECT = "complaints"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the service's fields (docs/vendors/complaints.md §2), for ``mapping validate --against``
FIELDS = (
    FieldInfo("source_system", "string", 64, required=True), FieldInfo("source_case_id", "string", 64, required=True),
    FieldInfo("party_id", "string", 64, required=True), FieldInfo("channel_code", "string", 64),
    FieldInfo("business_code", "string", 64), FieldInfo("reason_code", "string", 64),
    FieldInfo("priority", "string", required=True, picklist=("LOW", "MEDIUM", "HIGH", "URGENT")),
    FieldInfo("summary", "text", 2000, required=True), FieldInfo("received_at", "datetime", required=True),
    FieldInfo("due_at", "datetime"), FieldInfo("sla_breached", "boolean"),
    FieldInfo("complaint_id", "string", read_only=True), FieldInfo("version", "integer", read_only=True),
    FieldInfo("updated_at", "datetime", read_only=True), FieldInfo("closed_at", "datetime", read_only=True),
    FieldInfo("resolution", "text", read_only=True),
    FieldInfo("status", "string", read_only=True,
              picklist=("RECEIVED", "ACCEPTED", "IN_PROGRESS", "RESOLVED", "CLOSED", "REJECTED")),
)
_PATCHABLE = ("priority", "summary", "due_at", "channel_code", "business_code", "reason_code", "sla_breached")


class ComplaintsAdapter(Adapter):
    """The bank's complaint service."""

    name: ClassVar[str] = "complaints"
    role: ClassVar[str] = "system_of_record"   # a bank system: it receives the complaint text in full
    source_system: ClassVar[str | None] = "COMPLAINTS"
    Config: ClassVar[type[AdapterConfig]] = ComplaintsConfig
    max_batch_size: ClassVar[int] = 20   # one complaint per call; a batch is a unit of retry
    default_concurrency: ClassVar[int] = 4
    supports_upsert: ClassVar[bool] = False   # POST creates; the engine journals intents, the adapter finds first
    mandatory_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        OBJECT: ("party_id", "priority", "summary", "received_at")}

    config: ComplaintsConfig

    def __init__(self, config: AdapterConfig, *, system: str | None = None,
                 session: requests.Session | None = None, base_dir: Path | None = None, **kwargs: Any) -> None:
        if not isinstance(config, ComplaintsConfig):
            raise ConfigurationError(f"expected a complaints configuration, got {type(config).__name__}",
                                     where=f"systems.{system or 'complaints'}")
        super().__init__(config, system=system, session=session, base_dir=base_dir, **kwargs)
        key = resolve_secret(config.api_key, where=f"systems.{self.system}.api_key", base_dir=base_dir)
        self.client = ComplaintClient(self._http, config.base_url, key.get_secret_value())

    @staticmethod
    def _object(obj: str) -> None:
        if obj != OBJECT:
            raise ConfigurationError(f"the complaint service has one object, {OBJECT!r}, not {obj!r}",
                                     where="complaints adapter")

    def _raw(self, rec: Any) -> RawRecord:
        if not isinstance(rec, dict) or not isinstance(rec.get("complaint_id"), str):
            raise BadResponseError("complaint without complaint_id", vendor=VENDOR)
        version = rec.get("version")
        return RawRecord(OBJECT, rec["complaint_id"], rec, modified_at=parse_time(rec.get("updated_at"), OBJECT),
                         version=str(version) if isinstance(version, int) else None)

    # ------------------------------------------------------------------ reads
    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None, state: Any) -> Page:
        self._object(obj)
        params: dict[str, Any] = {"page_size": self.config.page_size}
        if state:
            params["cursor"] = state
        if since is not None:
            if since.tzinfo is None:
                raise ValueError("since must be timezone-aware")
            params["updated_since"] = (since - timedelta(seconds=self.config.overlap_seconds)).isoformat()
        body, _ = self.client.call("GET", f"/complaints?{urlencode(params)}")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BadResponseError("complaint list without items", vendor=VENDOR)
        nxt = body.get("next_cursor")
        if nxt is not None and not isinstance(nxt, str):
            raise BadResponseError("next_cursor is not a string", vendor=VENDOR)
        return Page([self._raw(r) for r in items], nxt or None)

    def _get(self, obj: str, external_id: str) -> RawRecord | None:
        self._object(obj)
        body, _ = self.client.call("GET", f"/complaints/{quote(external_id, safe='')}",
                                   outcomes=(ErrorKind.NOT_FOUND,))
        return None if isinstance(body, Classified) else self._raw(body)

    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        self._object(obj)
        if key_field != "source_case_id":
            raise ConfigurationError(f"complaints are found by source_case_id, not {key_field!r}",
                                     where="complaints adapter")
        body, _ = self.client.call("GET", f"/complaints?{urlencode({'source_case_id': key, 'page_size': 2})}")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BadResponseError("complaint list without items", vendor=VENDOR)
        return self._raw(items[0]) if items else None

    def _probe(self, obj: str) -> list[Finding]:
        """``crmbridge doctor``: the API key is accepted and the list answers (one read of one complaint)."""
        self._object(obj)
        try:
            body, resp = self.client.call("GET", "/complaints?page_size=1")
        except AuthenticationError as exc:
            return [Finding("authenticated", "fail", f"API key refused: {exc}", obj=obj)]
        except AdapterError as exc:
            return [Finding("reachable", "fail", f"listing complaints failed: {type(exc).__name__}: {exc}", obj=obj)]
        ok = isinstance(body, dict) and isinstance(body.get("items"), list)
        said = f"list answered HTTP {resp.status_code}"
        if not ok:
            said += " without items (not the complaint service's API?)"
        return [Finding("authenticated", "ok", "the API key is accepted", obj=obj),
                Finding("operation", "ok" if ok else "fail", said, obj=obj)]

    def _describe(self, obj: str) -> list[FieldInfo]:
        self._object(obj)
        return list(FIELDS)

    # ------------------------------------------------------------------ writes
    def _write_batch(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        self._object(obj)
        return [self._write_one(item) for item in batch]

    def _write_one(self, item: WriteItem) -> WriteResult:
        target, base = item.external_id, None
        if target is None and not item.known_new:
            found = self._find(OBJECT, "source_case_id", item.key)
            target, base = (found.external_id, found.version) if found else (None, None)
        if target is None:
            return self._create(item)
        return self._update(item, target, base)

    def _create(self, item: WriteItem) -> WriteResult:
        body = {**item.payload, "source_case_id": item.key}
        body.setdefault("source_system", self.config.source_system)
        reply, resp = self.client.call("POST", "/complaints", json=body, headers={"Idempotency-Key": item.key},
                                       outcomes=(ErrorKind.VALIDATION, ErrorKind.REJECTED))
        if isinstance(reply, Classified):
            return WriteResult(item.key, WriteStatus.FAILED, error=to_record_error(reply),
                               request_id=reply.request_id)
        rec = self._raw(reply)
        replayed = resp.headers.get("Idempotent-Replayed") == "true"
        return WriteResult(item.key, WriteStatus.UNCHANGED if replayed else WriteStatus.CREATED, rec.external_id,
                           rec.version, rec.modified_at)

    def _update(self, item: WriteItem, target: str, found_version: str | None = None) -> WriteResult:
        """PATCH the patchable fields (``If-Match`` when the write names its base version); UNCHANGED when the
        version did not move (the service bumps it only on a real change)."""
        changes = {k: v for k, v in item.payload.items() if k in _PATCHABLE}
        ignored = set(item.payload) - set(changes) - {"source_case_id", "source_system", "party_id", "received_at"}
        if ignored:
            raise RequestError(f"complaint fields {sorted(ignored)} cannot be changed after creation", vendor=VENDOR)
        headers = {"If-Match": f'"{item.expected_version}"'} if item.expected_version else None
        path = f"/complaints/{quote(target, safe='')}"
        if not changes:
            current = self._get(OBJECT, target)
            if current is None:
                return WriteResult(item.key, WriteStatus.FAILED, target, error=RequestError(
                    f"complaint {target} no longer exists", vendor=VENDOR))
            return WriteResult(item.key, WriteStatus.UNCHANGED, target, current.version, current.modified_at)
        before = item.expected_version or found_version
        reply, _ = self.client.call("PATCH", path, json=changes, headers=headers, outcomes=(
            ErrorKind.VALIDATION, ErrorKind.REJECTED, ErrorKind.CONFLICT, ErrorKind.NOT_FOUND))
        if isinstance(reply, Classified):
            status = WriteStatus.CONFLICT if reply.kind is ErrorKind.CONFLICT else WriteStatus.FAILED
            return WriteResult(item.key, status, target, error=to_record_error(reply), request_id=reply.request_id)
        rec = self._raw(reply)
        unchanged = before is not None and rec.version == before
        return WriteResult(item.key, WriteStatus.UNCHANGED if unchanged else WriteStatus.UPDATED, target,
                           rec.version, rec.modified_at)
