"""Core-banking SOAP adapter (FLEXCUBE ``FCUBSCustomerService`` by default; T24 TWS and others by configuration).

The adapter reads customers changed since a timestamp (paged by keyset, page number or continuation key), reads one
customer, and writes back the contact fields a CRM owns (mobile, e-mail, address) with optimistic concurrency on
the core's record version (FLEXCUBE ``MODNO``, T24 ``CURR.NO``). Everything about the wire (operation names,
element paths, header values, where the business status and error codes are, how timestamps look) is
configuration, so a differently shaped WSDL needs a new configuration and mapping, not new code.

Example (YAML, FLEXCUBE; ``header``, ``status``, ``record`` and ``operations`` default to the FLEXCUBE shape, so
only what differs is written; ``tests/corebank_soap/corebank_soap_support.py:t24_config`` is a full T24 example)::

    systems:
      core:
        adapter: corebank_soap
        wsdl: package:fcubs_customer.wsdl          # or https://host/FCUBSCustomerService/FCUBSCustomerService?wsdl
        endpoint: https://fcubs.bank.local/FCUBSCustomerService/FCUBSCustomerService
        username: CRMSVC
        password: env:CORE_SOAP_PASSWORD
        timezone: Asia/Shanghai
        header:
          values: {SOURCE: CRMBRIDGE, UBSCOMP: FCUBS, USERID: CRMSVC, BRANCH: "000", MODULEID: ST,
                   SERVICE: FCUBSCustomerService}
        business_errors:                           # the bank's own codes, tried before the built-in table
          - {code: "ST-LOCK-\\d+", kind: throttled}
        operations:
          list: {paging: {page_size: 100}}

Identity: core banking has no crmbridge key field. :meth:`CorebankSoapAdapter._find` answers only for the
record's own id field (the CIF number, e.g. ``CUSTNO``): it is a ``get``. Any other key field returns ``None``:
the core cannot be searched by crmbridge's party id, and crmbridge never creates customers in the core.

Writes: one ``ModifyCustomer`` per item (``max_batch_size = 1``), only for the configured CRM-owned ``writable``
paths (golden fields are refused), with ``expected_version`` as the modification number. A stale number is a
:attr:`WriteStatus.CONFLICT`, never an overwrite; if the core already holds exactly the values being written
(a retried call that was applied, or a repeated write) the result is ``UNCHANGED``. Paths a mapping emits only
to identify the record type (``CTYPE``; T24 ``Sector``) are dropped (``operations.modify.ignore``).

Change list: ``operations.list.since_boundary`` (``inclusive | exclusive | unknown``, default ``unknown``) is what
the core's changed-since filter does with the boundary instant; ``unknown`` loses nothing under either. A reply
with no records at ``operations.list.records`` while it reports more pages, a total, a continuation key or records
at another path is a :class:`BadResponseError` naming the path. ``crmbridge doctor`` (:meth:`_probe`) finds the
semantics, the largest page accepted, clock skew and rate-limit headers by reading. ``docs/corebank_soap.md``
documents the keys and the simulator modes.

Reads: each customer element becomes a :class:`RawRecord` whose ``data`` is the element as plain dicts, lists and
strings; ``external_id``, ``version`` and ``modified_at`` come from the ``record`` paths (naive core timestamps are
read in ``timezone``, default Asia/Shanghai); a closed customer (``record.closed_path`` in ``closed_values``,
FLEXCUBE ``RECORD_STAT=C``) is a ``deleted=True`` tombstone in the normal change feed.
"""

from __future__ import annotations

import difflib
import email.utils
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import requests
from pydantic import ConfigDict, SecretStr

from crmbridge.adapters._paths import join_path, key_names
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
from crmbridge.adapters.corebank_soap.auth import header_values
from crmbridge.adapters.corebank_soap.client import (
    BusinessStatus,
    IntegerGuard,
    SoapClient,
    get_path,
    is_integer_text,
    new_message_id,
    set_path,
)
from crmbridge.adapters.corebank_soap.config import (  # noqa: F401 (the configuration models, importable here as before)
    FCUBS_ACCOUNTS,
    BusinessErrorRule,
    CorebankSoapConfig,
    GetOperation,
    HeaderConfig,
    ListOperation,
    ModifyOperation,
    OperationsConfig,
    PagingConfig,
    PivotConfig,
    RecordConfig,
    StatusConfig,
)
from crmbridge.adapters.corebank_soap.metadata import wsdl_fields
from crmbridge.adapters.errortable import ErrorKind, ErrorRule
from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    ConflictError,
    CrmBridgeError,
    PermissionDeniedError,
    RecordError,
    RecordRejectedError,
    RequestError,
    RetryableError,
    TokenExpiredError,
    ValidationError,
)
from crmbridge.core.secrets import resolve_secret

__all__ = ["FCUBS_ACCOUNTS", "CorebankSoapAdapter", "CorebankSoapConfig"]

log = logging.getLogger(__name__)

_Strict = ConfigDict(extra="forbid")


class CorebankSoapAdapter(Adapter):
    """The core-banking SOAP adapter (see the module docstring)."""

    name: ClassVar[str] = "corebank_soap"
    #: the bank's golden source of customer data: receives personal data in full
    role: ClassVar[str] = "system_of_record"
    Config: ClassVar[type[AdapterConfig]] = CorebankSoapConfig
    max_batch_size: ClassVar[int] = 1
    default_concurrency: ClassVar[int] = 2

    config: CorebankSoapConfig

    def __init__(self, config: AdapterConfig, *, system: str | None = None,
                 session: requests.Session | None = None, **kw: Any) -> None:
        if not isinstance(config, CorebankSoapConfig):
            config = CorebankSoapConfig.model_validate(config.model_dump())
        super().__init__(config, system=system, session=session, **kw)
        c = self.config
        self._tz = ZoneInfo(c.timezone)
        self._warned_no_overlap = False
        self._password: SecretStr | None = (resolve_secret(c.password, where=f"{self.system}.password")
                                            if c.password else None)
        rules = tuple(ErrorRule(r.kind, r.message, channel="business", code=r.code) for r in c.business_errors)
        status = BusinessStatus(path=c.status.path, success=tuple(c.status.success), errors=c.status.errors,
                                code=c.status.code, text=c.status.text, code_pattern=c.status.code_pattern,
                                rules=rules)
        # the version must be an integer: checked in the raw reply, per record (see IntegerGuard)
        version_name = key_names(c.record.version)[-1] if c.record.version else None
        self._guard = IntegerGuard({version_name: c.record.version} if version_name and c.record.version else {},
                                   c.record.id)
        self.client = SoapClient(
            wsdl=c.wsdl, session=self.session, username=c.username, password=self._password, wsse=c.wsse,
            use_digest=c.wsse_digest, service=c.service, port=c.port, endpoint=c.endpoint,
            load_timeout=c.load_timeout, operation_timeout=lambda: (self.config.connect_timeout, self.config.timeout),
            huge_tree=c.huge_tree, status=status, on_call=self.stats.count_call, slot=self._gate.slot,
            vendor=self.name, plugins=[self._guard])

    # ------------------------------------------------------------------ request building
    def _body(self, business_name: str | None, static: Mapping[str, Any]) -> dict[str, Any]:
        h = self.config.header
        body: dict[str, Any] = {}
        if h.path:
            extra = [(h.message_id, new_message_id()), (h.operation, business_name or "")]
            set_path(body, h.path, header_values(h.values, username=self.config.username,
                                                 password=self._password,
                                                 extra=[(p, v) for p, v in extra if p and v]))
        for path, value in static.items():
            set_path(body, path, value)
        return body

    def _local(self, ts: datetime) -> datetime:
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts.astimezone(self._tz).replace(tzinfo=None)

    # ------------------------------------------------------------------ reading
    def _to_raw(self, obj: str, data: Any) -> RawRecord:
        if not isinstance(data, Mapping):
            raise BadResponseError("a customer record is not a structure", vendor=self.name)
        rc = self.config.record
        data = dict(data)
        for p in rc.pivots:
            entries = get_path(data, p.path)
            if isinstance(entries, Mapping):
                entries = [entries]
            if isinstance(entries, list):
                pivoted = {str(e.get(p.key)): e.get(p.value) for e in entries
                           if isinstance(e, Mapping) and e.get(p.key) is not None}
                set_path(data, p.path, pivoted)
        ext = get_path(data, rc.id)
        if ext is None or str(ext).strip() == "":
            raise BadResponseError(f"a customer record has no id at {rc.id}", vendor=self.name)
        version = get_path(data, rc.version) if rc.version else None
        closed = rc.closed_path is not None and str(get_path(data, rc.closed_path, "")) in rc.closed_values
        error = None
        refused = self._guard.refused().get(str(ext).strip())
        if refused:
            path, length = refused[0]
            error = ValidationError(
                f"{path} (the record's version) is not an integer (a {length}-character value): not synced until "
                "the core sends a valid one (a record stored without its version loses the stale-version check)",
                field=path, code="bad_version", where=f"{self.system}:{obj}/{ext}")
        elif version is not None and not isinstance(version, int) and not is_integer_text(str(version)):
            error = ValidationError(f"{rc.version} (the record's version) is not an integer", field=rc.version,
                                    code="bad_version", where=f"{self.system}:{obj}/{ext}")
        return RawRecord(object=obj, external_id=str(ext), data=data, modified_at=self._modified_at(data, ext),
                         version=None if version is None or error is not None else str(version), deleted=closed,
                         error=error)

    def _modified_at(self, data: Mapping[str, Any], ext: Any) -> datetime | None:
        rc = self.config.record
        raw = get_path(data, rc.modified_at) if rc.modified_at else None
        if raw is None:
            return None
        try:
            ts = (datetime.strptime(str(raw), rc.modified_at_format) if rc.modified_at_format
                  else datetime.fromisoformat(str(raw)))
        except ValueError:
            log.warning("customer %s: unparsable %s; modified_at left empty", ext, rc.modified_at)
            return None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=self._tz)
        return ts.astimezone(UTC)

    # ------------------------------------------------------------------ the change list
    def _unit(self) -> timedelta:
        """The smallest step the since criterion can express (its format's finest field)."""
        fmt = self.config.operations.list.since_format
        for code, unit in (("%f", timedelta(microseconds=1)), ("%S", timedelta(seconds=1)),
                           ("%s", timedelta(seconds=1)), ("%T", timedelta(seconds=1)), ("%X", timedelta(seconds=1)),
                           ("%c", timedelta(seconds=1)), ("%M", timedelta(minutes=1)), ("%R", timedelta(minutes=1)),
                           ("%H", timedelta(hours=1)), ("%I", timedelta(hours=1))):
            if code in fmt:
                return unit
        return timedelta(days=1)

    def _instant(self, ts: datetime) -> datetime:
        """What the since criterion can express of ``ts``: core local time, truncated to ``since_format``."""
        fmt = self.config.operations.list.since_format
        return datetime.strptime(self._local(ts).strftime(fmt), fmt)

    def _lower(self, instant: datetime) -> datetime:
        """The since to send for watermark ``instant``: itself if the filter is known to include it, else from the
        overlap before it (an exclusive filter then still lets the watermark's own instant through)."""
        op = self.config.operations.list
        if op.since_boundary == "inclusive":
            return instant
        overlap = (timedelta(seconds=op.since_overlap_seconds) if op.since_overlap_seconds
                   else self._unit())
        return instant - overlap

    def _certain(self, inst: datetime, lower: datetime | None) -> bool:
        """Whether the query from ``lower`` returns records of instant ``inst`` under every possible semantics."""
        if lower is None:
            return True
        return inst >= lower if self.config.operations.list.since_boundary == "inclusive" else inst > lower

    def _list_call(self, obj: str, *, since: datetime | None, page_no: int | None, size: int,
                   until: str | None = None, token: str | None = None) -> tuple[list[RawRecord], dict[str, Any]]:
        """One call of the list operation; ``since`` is a core-local naive instant (already lowered)."""
        op = self.config.operations.list
        pg = op.paging
        body = self._body(op.name, op.static)
        if since is not None:
            for path, value in op.since_static.items():
                set_path(body, path, value)
            set_path(body, op.since, since.strftime(op.since_format))
        if pg.size:
            set_path(body, pg.size, size)
        if pg.mode in ("page_number", "keyset"):
            if not pg.page:
                raise ConfigurationError(f"{pg.mode} paging needs 'page'", where="operations.list.paging.page")
            set_path(body, pg.page, page_no)
        elif token is not None:
            if not pg.token:
                raise ConfigurationError("continuation paging needs 'token'", where="operations.list.paging.token")
            set_path(body, pg.token, token)
        if until is not None and op.until:
            set_path(body, op.until, until)
        where = f"{op.operation} page {page_no}" if page_no is not None else op.operation
        reply = self.client.call(op.operation, body, where=where, records=op.records)
        items = get_path(reply, op.records, [])
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list):
            raise BadResponseError(f"records at the configured path {op.records} are not a list",
                                   vendor=self.name, where=where)
        if not items:
            self._check_empty(reply, page_no, size, where)
        return [self._to_raw(obj, item) for item in items], reply

    def _check_empty(self, reply: Mapping[str, Any], page_no: int | None, size: int, where: str) -> None:
        """A reply without records at the configured path must also say there are none: a more-pages flag, a total
        beyond this page, a continuation key or records elsewhere in the body mean the path is wrong."""
        op = self.config.operations.list
        pg = op.paging
        said: str | None = None
        flag = get_path(reply, pg.has_more) if pg.has_more else None
        if flag is not None and _truthy(flag):
            said = f"more pages ({pg.has_more}={flag})"
        total = get_path(reply, pg.total) if pg.total else None
        if said is None and total is not None:
            try:
                n = int(str(total).strip())
            except ValueError:
                n = 0
            before = (page_no - pg.first_page) * size if page_no is not None and pg.mode != "continuation" else 0
            if n > before:
                said = f"a total of {n} ({pg.total})"
        token = get_path(reply, pg.next_token) if pg.mode == "continuation" and pg.next_token else None
        if said is None and token not in (None, ""):
            said = f"a continuation key ({pg.next_token})"
        found = _find_records(reply, self.config.record.id)
        if said is None and found is not None:
            said = f"records at {found}"
        if said is not None:
            raise BadResponseError(
                f"{op.operation}: no records at the configured path {op.records} (operations.list.records), yet "
                f"the reply reports {said}; check operations.list.records", vendor=self.name, where=where)

    def _more(self, reply: Mapping[str, Any], got: int, size: int) -> bool:
        """Whether pages follow: the reply's more-pages flag, else a full page."""
        pg = self.config.operations.list.paging
        flag = get_path(reply, pg.has_more) if pg.has_more else None
        return _truthy(flag) if flag is not None else got >= size

    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None,
                   state: Any) -> Page:
        op = self.config.operations.list
        pg = op.paging
        if pg.mode == "keyset":
            return self._keyset_page(obj, since, state)
        lower = None if since is None else self._lower(self._instant(since))
        pin = state[1] if state is not None else None
        if pg.mode == "page_number":
            page_no = pg.first_page if state is None else state[0]
            records, reply = self._list_call(obj, since=lower, page_no=page_no, size=pg.page_size, until=pin)
            pin = self._pin(reply, pin)
            more = self._more(reply, len(records), pg.page_size) and bool(records)
            return Page(records, (page_no + 1, pin) if more else None)
        if not pg.next_token:
            raise ConfigurationError("continuation paging needs 'next_token'",
                                     where="operations.list.paging.next_token")
        key = state[0] if state is not None else None
        records, reply = self._list_call(obj, since=lower, page_no=None, size=pg.page_size, until=pin, token=key)
        pin = self._pin(reply, pin)
        token = get_path(reply, pg.next_token)
        nxt = str(token) if token not in (None, "") and records else None
        if nxt is not None and nxt == key:
            raise BadResponseError("the continuation key did not advance", vendor=self.name,
                                   where=f"{op.operation} ({pg.next_token})")
        return Page(records, (nxt, pin) if nxt is not None else None)

    def _pin(self, reply: Mapping[str, Any], pin: str | None) -> str | None:
        """The pinned upper bound: taken from the first page's reply (``until_from``), then kept."""
        op = self.config.operations.list
        if pin is not None or not op.until_from:
            return pin
        value = get_path(reply, op.until_from)
        if value in (None, ""):
            raise BadResponseError(f"{op.operation}: the reply has no as-of value at the configured path "
                                   f"{op.until_from} (operations.list.until_from)", vendor=self.name,
                                   where=op.operation)
        return str(value)

    def _keyset_page(self, obj: str, since: datetime | None, state: _Keyset | None) -> Page:
        """One keyset page: ask changed-since the newest instant read (lowered by the overlap unless the filter
        is known to be inclusive), step page numbers only through records sharing that window, and drop what this
        extract has yielded already (same id and version).

        Each page after a query's first is chosen to begin with a record read already; a page that begins with
        one not read means records before it left the window (edited during the read), and the page before is
        read again. Nothing is skipped under an inclusive, exclusive or unknown filter, however many records share
        one instant.
        """
        op = self.config.operations.list
        pg = op.paging
        if state is None:
            state = _Keyset(lower=None if since is None else self._lower(self._instant(since)),
                            page_no=pg.first_page, size=min(pg.page_size, pg.max_page_size), until=None,
                            check=False, seen={})
        records, reply = self._list_call(obj, since=state.lower, page_no=state.page_no, size=state.size,
                                         until=state.until)
        until = self._pin(reply, state.until)
        insts: list[datetime] = []
        for r in records:
            if r.modified_at is None:
                raise BadResponseError(f"customer {r.external_id} has no readable {self.config.record.modified_at}: "
                                       "keyset paging needs it (configure paging.mode page_number or continuation)",
                                       vendor=self.name, where=op.operation)
            insts.append(self._instant(r.modified_at))
        if any(b < a for a, b in zip(insts, insts[1:], strict=False)):
            raise BadResponseError("the change list is not in modification order, which keyset paging needs "
                                   "(configure paging.mode page_number or continuation)", vendor=self.name,
                                   where=op.operation)
        seen = state.seen
        fps = [_fingerprint(r) for r in records]
        if state.check and records and seen.get(records[0].external_id, ("",))[0] != fps[0]:
            # the page should begin with a record read already: records before it left the window
            return Page([], replace(state, page_no=state.page_no - 1, until=until,
                                    check=state.page_no - 1 > pg.first_page))
        fresh: list[RawRecord] = []
        for r, fp, inst in zip(records, fps, insts, strict=True):
            if seen.get(r.external_id, ("",))[0] != fp:
                fresh.append(r)
            seen[r.external_id] = (fp, inst)
        more = self._more(reply, len(records), state.size)
        if not more or not records:
            return Page(fresh, None)
        lower = self._lower(insts[-1])
        if state.lower is None or lower > state.lower:   # the window moves on: a new query
            for k in [k for k, (_, inst) in seen.items() if inst < lower]:
                del seen[k]
            g_min = sum(1 for _, inst in seen.values() if self._certain(inst, lower))
            g_max = len(seen)
        else:                                            # the same window: its next positions
            lower = state.lower
            g_min = g_max = (state.page_no - pg.first_page) * state.size + len(records)
        page_no, size, check = self._next_position(g_min, g_max)
        return Page(fresh, _Keyset(lower=lower, page_no=page_no, size=size, until=until, check=check, seen=seen))

    def _next_position(self, g_min: int, g_max: int) -> tuple[int, int, bool]:
        """The page (number, size) of a query whose first ``g_min`` (at most ``g_max``) records were read: it holds
        record ``g_min - 1`` (so a shift shows) and as many after it as possible; and whether to check that."""
        pg = self.config.operations.list.paging
        cap = max(1, pg.max_page_size)
        if g_min <= 0 and g_max <= 0:
            return pg.first_page, min(pg.page_size, cap), False
        if g_max < pg.page_size and g_max + 1 <= cap:
            # page 1 enlarged by the records read again (dropped): page_size new records a call
            return pg.first_page, min(pg.page_size + g_max, cap), False
        last = max(g_min, 1) - 1                          # position of the last record surely read

        def new(n: int) -> int:
            return n - 1 - last % n

        sizes = [n for n in range(min(pg.page_size + 2, cap), max(0, pg.page_size // 2), -1)]
        best = max(sizes, key=new) if sizes else 1
        if new(best) <= 0:
            best = next((n for n in range(min(pg.page_size + 3, cap), cap + 1) if new(n) > 0), 0)
        if best <= 0:   # no page size overlaps and advances (tiny limits): step on without the overlap check
            if not self._warned_no_overlap:
                self._warned_no_overlap = True
                log.warning("%s: max_page_size %d leaves no page that overlaps the last record read; a customer "
                            "edited during the read of a crowded instant may be skipped (allow at least "
                            "page_size + 2)", self.system, cap)
            n = min(pg.page_size, cap)
            return pg.first_page + (last + 1) // n, n, False
        page_no = pg.first_page + last // best
        return page_no, best, page_no > pg.first_page


    def _get(self, obj: str, external_id: str) -> RawRecord | None:
        op = self.config.operations.get
        body = self._body(op.name, op.static)
        set_path(body, op.id, external_id)
        try:
            reply = self.client.call(op.operation, body, where=f"{op.operation} {external_id}")
        except RecordRejectedError as exc:
            if (exc.code or "").startswith(ErrorKind.NOT_FOUND.value):
                return None
            raise
        data = get_path(reply, op.record)
        if data is None:
            found = _find_records(reply, self.config.record.id)
            if found is not None:   # a wrong path would make every customer "not found"
                raise BadResponseError(f"{op.operation}: no record at the configured path {op.record} "
                                       f"(operations.get.record), yet the reply holds one at {found}",
                                       vendor=self.name, where=f"{op.operation} {external_id}")
            return None
        return self._to_raw(obj, data)

    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        """Core banking holds no crmbridge key: only its own id field (the CIF number) can be looked up."""
        if key_field in (self.config.record.id, "external_id", "id"):
            return self._get(obj, key)
        return None

    # ------------------------------------------------------------------ writing
    def _write_batch(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        return [self._write_one(obj, item) for item in batch]

    def _write_one(self, obj: str, item: WriteItem) -> WriteResult:
        op = self.config.operations.modify
        if op is None:
            return _failed(item, RecordRejectedError("this core system is configured read-only",
                                                     code="read_only"))
        if not item.external_id:
            return _failed(item, RecordRejectedError(
                "crmbridge does not create customers in core banking; the write needs the CIF number",
                code="create_unsupported"))
        fields = {p: v for p, v in _flatten(item.payload).items() if p not in op.ignore}
        refused = sorted(p for p in fields if p not in op.writable)
        if refused:
            return _failed(item, RecordRejectedError(
                f"fields owned by core banking cannot be written back: {', '.join(refused)}",
                code="golden_field", field=refused[0]))
        version = item.expected_version
        if version is None and op.version:
            if op.require_version:
                return _failed(item, RecordRejectedError("the write has no expected version",
                                                         code="version_required"))
            current = self._get(obj, item.external_id)
            if current is None:
                return _failed(item, RecordRejectedError("no such customer", code="not_found"))
            if current.error is not None:   # never write without the version the core holds
                return _failed(item, current.error)
            version = current.version
        body = self._body(op.name, op.static)
        record: dict[str, Any] = {}
        set_path(record, op.id, item.external_id)
        if op.version and version is not None:
            set_path(record, op.version, version)
        for path, value in fields.items():
            set_path(record, path, value)
        set_path(body, op.record, _ordered(record))
        where = f"{op.operation} {item.external_id}"
        try:
            reply = self.client.call(op.operation, body, where=where)
        except ConflictError:
            return self._after_conflict(obj, item, fields, version)
        except RecordError as exc:
            return _failed(item, exc)
        data = get_path(reply, op.result) if op.result else None
        if isinstance(data, Mapping):
            raw = self._to_raw(obj, data)
            return WriteResult(item.key, WriteStatus.UPDATED, raw.external_id, raw.version, raw.modified_at)
        return WriteResult(item.key, WriteStatus.UPDATED, item.external_id)

    def _after_conflict(self, obj: str, item: WriteItem, fields: Mapping[str, Any],
                        version: str | None) -> WriteResult:
        """A stale version: UNCHANGED if the core already holds exactly these values, else CONFLICT."""
        current = self._get(obj, item.external_id) if item.external_id else None
        if current is None:
            return _failed(item, RecordRejectedError("no such customer", code="not_found"))
        if all(_same(get_path(current.data, p), v) for p, v in fields.items()):
            return WriteResult(item.key, WriteStatus.UNCHANGED, current.external_id, current.version,
                               current.modified_at)
        err = RecordRejectedError(
            f"stale modification number: the write was based on {version}, the core holds {current.version}",
            where=f"{obj} {item.external_id}", code="conflict:stale_version")
        return WriteResult(item.key, WriteStatus.CONFLICT, current.external_id, current.version,
                           current.modified_at, err)

    # ------------------------------------------------------------------ doctor
    def _probe(self, obj: str) -> list[Finding]:
        """Read-only probes for ``crmbridge doctor``: the operations the configuration names exist in the WSDL;
        the service answers and accepts the credentials (one list call); the largest page it accepts; whether
        its changed-since filter includes the boundary instant (found by reading); clock skew; rate-limit
        headers."""
        out: list[Finding] = []
        ops = self.config.operations
        try:
            names = set(self.client.operations())
        except CrmBridgeError as exc:
            return [Finding("reachable", "fail", f"the WSDL could not be loaded from {self.config.wsdl}: {exc}",
                            obj=obj)]
        for role, o in (("list", ops.list), ("get", ops.get), ("modify", ops.modify)):
            if o is None:
                continue
            if o.operation in names:
                out.append(Finding("operation", "ok", f"{role}: {o.operation} exists in the WSDL", obj=obj))
            else:
                close = difflib.get_close_matches(o.operation, sorted(names), n=1)
                out.append(Finding("operation", "fail", f"{role}: the WSDL has no operation {o.operation}; it has "
                                   f"{', '.join(sorted(names))}", obj=obj,
                                   config={f"operations.{role}.operation": close[0]} if close else {}))
        if ops.list.operation not in names:
            return out
        records: list[RawRecord] = []
        started = time.monotonic()
        try:
            first, _ = self._probe_list(obj, since=None, size=1)
        except (AuthenticationError, PermissionDeniedError, TokenExpiredError) as exc:
            out.append(Finding("reachable", "ok", "the service answered", obj=obj))
            out.append(Finding("authenticated", "fail", f"the service refused the service user: {exc}", obj=obj))
            return out
        except RetryableError as exc:
            out.append(Finding("reachable", "fail", f"{ops.list.operation} failed: {type(exc).__name__}: {exc}",
                               obj=obj))
            return out
        except CrmBridgeError as exc:
            out.append(Finding("reachable", "ok", "the service answered", obj=obj))
            out.append(Finding("operation", "fail", f"list: {ops.list.operation} (one record, no since) failed: "
                               f"{type(exc).__name__}: {exc}", obj=obj))
            return out
        records += first
        headers = self.client.last_headers()
        out.append(Finding("reachable", "ok", f"{ops.list.operation} answered in "
                           f"{(time.monotonic() - started) * 1000:.0f} ms", obj=obj))
        out.append(Finding("authenticated", "ok", f"the service accepted the service user "
                           f"{self.config.username or '(in the header)'}", obj=obj))
        finding, largest = self._probe_page_size(obj)
        out.append(finding)
        try:
            boundary, seen = self._probe_boundary(obj, first, largest)
        except CrmBridgeError as exc:
            boundary, seen = Finding("since_boundary", "warn", f"the probe failed: {type(exc).__name__}: {exc}",
                                     obj=obj), []
        out.append(boundary)
        records += seen
        out.extend(self._probe_clock(obj, headers, records))
        limits = {k: v for k, v in headers.items()
                  if any(t in k.lower() for t in ("ratelimit", "rate-limit", "retry-after", "throttl", "quota"))}
        out.append(Finding("rate_limit", "info", "rate-limit headers: " + ", ".join(f"{k}: {v}" for k, v in
                                                                                   sorted(limits.items()))
                           if limits else "the service sends no rate-limit headers", obj=obj))
        return out

    def _probe_list(self, obj: str, *, since: datetime | None, size: int
                    ) -> tuple[list[RawRecord], dict[str, Any]]:
        pg = self.config.operations.list.paging
        page_no = None if pg.mode == "continuation" else pg.first_page
        return self._retrying(lambda: self._list_call(obj, since=since, page_no=page_no, size=size))

    def _probe_page_size(self, obj: str) -> tuple[Finding, int | None]:
        """The largest page the service accepts, asked for records changed since now (small replies)."""
        pg = self.config.operations.list.paging
        if not pg.size:
            return Finding("page_size", "info", "the list has no page-size parameter (paging.size)", obj=obj), None
        now = self._local(datetime.now(UTC))
        calls = 0

        def accepted(n: int) -> bool:
            nonlocal calls
            calls += 1
            try:
                self._probe_list(obj, since=now, size=n)
            except (RequestError, RecordRejectedError, BadResponseError):
                return False
            return True

        limit = 100_000
        if accepted(pg.max_page_size):
            lo, hi = pg.max_page_size, None
            n = pg.max_page_size * 2
            while n <= limit and calls < 5:
                if not accepted(n):
                    hi = n
                    break
                lo, n = n, n * 2
            if hi is None:
                return Finding("page_size", "ok", f"pages of {lo} records are accepted (max_page_size "
                               f"{pg.max_page_size})", obj=obj), lo
        else:
            lo, hi = 0, pg.max_page_size
        while hi - lo > 1 and calls < 14:
            mid = (lo + hi) // 2
            if accepted(mid):
                lo = mid
            else:
                hi = mid
        exact = "" if hi - lo <= 1 else f" (between {lo} and {hi})"
        if lo >= pg.max_page_size:
            return Finding("page_size", "info", f"the largest page accepted is {lo}{exact}; max_page_size is "
                           f"{pg.max_page_size}", obj=obj, config={"operations.list.paging.max_page_size": lo}), lo
        if lo < pg.page_size:
            return Finding("page_size", "fail", f"the service refuses pages of {pg.page_size} (page_size); the "
                           f"largest it accepts is {lo}{exact}", obj=obj,
                           config={"operations.list.paging.page_size": max(lo, 1),
                                   "operations.list.paging.max_page_size": max(lo, 1)}), max(lo, 1)
        return Finding("page_size", "warn", f"the service refuses pages of {pg.max_page_size} (max_page_size); the "
                       f"largest it accepts is {lo}{exact}", obj=obj,
                       config={"operations.list.paging.max_page_size": lo}), lo

    def _probe_boundary(self, obj: str, first: list[RawRecord], largest: int | None
                        ) -> tuple[Finding, list[RawRecord]]:
        """Whether the changed-since filter includes the boundary instant: ask changed-since a record's own stamp
        and see whether it comes back."""
        op = self.config.operations.list
        key = "operations.list.since_boundary"
        probe = next((r for r in first if r.modified_at is not None
                      and self._local(r.modified_at) == self._instant(r.modified_at)), None)
        if probe is None or probe.modified_at is None:
            return Finding("since_boundary", "warn", "no record with a stamp the since criterion can express "
                           f"exactly ({op.since_format}) was found; the semantics stay undetected "
                           f"(configured: {op.since_boundary})", obj=obj), []
        at = self._instant(probe.modified_at)
        pg = op.paging
        size = min(max(pg.page_size, 100), largest or pg.max_page_size)
        seen: list[RawRecord] = []
        found: RawRecord | None = None
        passed = False
        state: Any = None
        for _ in range(20):
            if pg.mode == "continuation":
                records, reply = self._retrying(lambda s=state: self._list_call(obj, since=at, page_no=None,
                                                                                 size=size, token=s))
                token = get_path(reply, pg.next_token) if pg.next_token else None
                state = str(token) if token not in (None, "") and records else None
            else:
                page_no = pg.first_page if state is None else state
                records, reply = self._retrying(lambda p=page_no: self._list_call(obj, since=at, page_no=p,
                                                                                   size=size))
                state = page_no + 1 if self._more(reply, len(records), size) and records else None
            seen += records
            found = next((r for r in records if r.external_id == probe.external_id), None)
            if found is not None:
                break
            if any(r.modified_at is not None and self._instant(r.modified_at) > at for r in records):
                passed = True
                break
            if state is None:
                break
        where = f"record {probe.external_id} stamped {at.strftime(op.since_format)}"
        if found is not None and _fingerprint(found) != _fingerprint(probe):
            return Finding("since_boundary", "warn", f"{where} changed during the probe; run doctor again",
                           obj=obj), seen
        if found is None and not passed and state is not None:
            return Finding("since_boundary", "warn", f"{where}: more than 20 pages share its instant; the semantics "
                           "stay undetected", obj=obj), seen
        detected = "inclusive" if found is not None else "exclusive"
        said = (f"asked changed-since {at.strftime(op.since_format)}, {where} "
                f"{'came back' if found is not None else 'did not come back'}: the filter is {detected}")
        if op.since_boundary == detected:
            return Finding("since_boundary", "ok", said, obj=obj), seen
        if op.since_boundary == "unknown":
            return Finding("since_boundary", "info", f"{said}; 'unknown' is safe, setting it saves the overlap "
                           "re-reads", obj=obj, config={key: detected}), seen
        if op.since_boundary == "inclusive":   # records sharing the boundary instant would be lost
            return Finding("since_boundary", "fail", f"{said}, but inclusive is configured: customers sharing "
                           "a page's last instant would be skipped", obj=obj, config={key: detected}), seen
        return Finding("since_boundary", "warn", f"{said}; exclusive is configured (safe, re-reads the overlap)",
                       obj=obj, config={key: detected}), seen

    def _probe_clock(self, obj: str, headers: Mapping[str, str], records: list[RawRecord]) -> list[Finding]:
        out: list[Finding] = []
        now = datetime.now(UTC)
        date = headers.get("Date") or headers.get("date")
        if date:
            try:
                server = email.utils.parsedate_to_datetime(date)
            except (TypeError, ValueError):
                server = None
            if server is not None:
                if server.tzinfo is None:
                    server = server.replace(tzinfo=UTC)
                skew = (server - now).total_seconds()
                out.append(Finding("clock_skew", "ok" if abs(skew) <= 30 else "warn",
                                   f"the service's clock (Date header) is {round(skew):+d} s from this host's",
                                   obj=obj))
        else:
            out.append(Finding("clock_skew", "info", "the service sends no Date header", obj=obj))
        ahead = [r.modified_at for r in records if r.modified_at is not None
                 and r.modified_at > now + timedelta(minutes=2)]
        if ahead:
            by = (max(ahead) - now).total_seconds() / 3600
            out.append(Finding("clock_skew", "warn", f"record stamps are up to {by:.1f} h in the future: the core's "
                               f"time zone is probably not {self.config.timezone} (or its clock is ahead)", obj=obj))
        return out

    # ------------------------------------------------------------------ metadata
    def _describe(self, obj: str) -> list[FieldInfo]:
        """The record's elements from the WSDL (:func:`crmbridge.adapters.corebank_soap.metadata.wsdl_fields`)."""
        op = self.config.operations.get
        try:
            elem_type = self.client.element_type(op.operation, output=True)
        except (KeyError, AttributeError):
            return []
        writable = set(self.config.operations.modify.writable) if self.config.operations.modify else set()
        return wsdl_fields(elem_type, op.record, writable)

    def close(self) -> None:
        self.client.close()
        super().close()


# ---------------------------------------------------------------------------------------------- helpers
@dataclass
class _Keyset:
    """Where a keyset read stands: the query (``lower``, the pinned ``until``), its page, and the records this
    extract has yielded whose instant the query can return again (id → (fingerprint, instant))."""

    lower: datetime | None
    page_no: int
    size: int
    until: str | None
    check: bool
    seen: dict[str, tuple[str, datetime]] = field(default_factory=dict)


def _truthy(flag: Any) -> bool:
    return str(flag).strip().upper() in ("Y", "YES", "TRUE", "1")


def _fingerprint(r: RawRecord) -> str:
    """What makes a re-read record the same: its version and stamp, else its content."""
    if r.version is not None:
        return f"v:{r.version}|{r.modified_at.isoformat() if r.modified_at else ''}"
    return "h:" + hashlib.sha256(json.dumps(r.data, sort_keys=True, default=str).encode()).hexdigest()


def _find_records(data: Any, id_field: str, path: str = "", depth: int = 0) -> str | None:
    """The path of the first structure in a reply that holds the record id field (records at another path)."""
    if depth > 8:
        return None
    if isinstance(data, list):
        for item in data[:3]:
            found = _find_records(item, id_field, path, depth + 1)
            if found is not None:
                return found
        return None
    if not isinstance(data, Mapping):
        return None
    if id_field in data and path:
        return path
    for k, v in data.items():
        found = _find_records(v, id_field, join_path([*key_names(path), str(k)]) if path else join_path([str(k)]),
                              depth + 1)
        if found is not None:
            return found
    return None


def _failed(item: WriteItem, err: RecordError) -> WriteResult:
    return WriteResult(item.key, WriteStatus.FAILED, item.external_id, error=err)


def _flatten(payload: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Payload → ``{path: value}``, paths in the one path language. A one-element list (a mapping's
    ``group[0].field``) is flattened as its element: a single-valued multi-value group (T24 ``gPHONE1.mPHONE1``) is
    written as one entry."""
    out: dict[str, Any] = {}
    for k, v in payload.items():
        names = (*prefix, str(k))
        if isinstance(v, list) and len(v) == 1 and isinstance(v[0], Mapping):
            v = v[0]
        if isinstance(v, Mapping):
            out.update(_flatten(v, names))
        else:
            out[join_path(names)] = v
    return out


def _same(a: Any, b: Any) -> bool:
    return ("" if a is None else str(a)) == ("" if b is None else str(b))


def _ordered(record: dict[str, Any]) -> dict[str, Any]:
    """zeep fills a sequence by name, so order does not matter; kept as a seam for vendors that need it."""
    return record
