"""Core-banking REST adapter: Apache Fineract's clients API by default, any bank's JSON customer service by
configuration.

Everything about the wire is configuration: authentication (HTTP Basic or bearer, static or OAuth2 client
credentials), extra headers (Fineract's ``Fineract-Platform-TenantId``), per-resource paths, the pagination style
(``offset`` offset/limit, ``page`` page/size, ``next_link`` links to follow, ``cursor`` tokens), JSON paths of the
record list, the item, the id, the modification time and the version, the modified-since parameter (or none:
then a request with ``since`` is a full scan, marked ``Page.full_scan``, and the engine's content hashes find
what changed), and how a write carries the version it is based on. A different bank's REST service is a new
configuration, not new code.

Example (YAML, Fineract; values shown are the defaults of :data:`FINERACT_CLIENTS`)::

    systems:
      core_rest:
        adapter: corebank_rest
        base_url: https://fineract.bank.local/fineract-provider/api
        auth: {type: basic, username: crm_sync, password: env:FINERACT_PASSWORD}
        headers: {Fineract-Platform-TenantId: default}
        verify: /etc/ssl/bank-ca.pem
        timezone: Asia/Shanghai
        resources:
          Client:
            list_path: /v1/clients
            item_path: /v1/clients/{id}
            write_path: /v1/clients/{id}
            find_paths: {externalId: /v1/clients/external-id/{key}}
            params: {orderBy: id, sortOrder: ASC}
            pagination: {style: offset, page_size: 200, total_path: totalFilteredRecords}
            paths: {list: pageItems, item: "", id: id, modified: null, version: null}
            writable: [mobileNo, emailAddress, externalId]
            ignore: [legalForm, legalFormId]     # what the mapping emits only to say the party type
            embed:                               # ID documents (resident ID, USCC): one more call per client
              identifiers: {path: "/v1/clients/{id}/identifiers", key: documentType.name, value: documentKey}

Identity and writes: the core is the golden source and crmbridge never creates customers there. A write
updates one existing customer (``max_batch_size = 1``): by ``external_id``, or found by ``key_field`` through a
configured ``find_paths`` entry (Fineract: ``externalId``). Only ``writable`` fields go out (``ignore`` fields are
dropped silently, anything else fails the record). A write based on ``expected_version`` sends the version as the
resource says (``version_in: body | header``); a stale version (409/412 or a configured business code) is
``WriteStatus.CONFLICT`` - unless the core already holds exactly what was written (a retried call that had been
applied), which is ``UNCHANGED``. With ``version_in: none`` the adapter reads the record first and compares.

Change lists (docs/corebank_rest.md): ``since_boundary`` (``unknown`` by default: asked ``since_overlap_seconds``
early, repeats dropped by id + version/content, so neither an inclusive nor an exclusive filter loses the boundary
second), ``resume: keyset`` (re-ask from the newest stamp read, so an edit during the read cannot shift a record out
of reach), an optional pinned ``until_param``. A reply with no records that says records remain is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests

from crmbridge.adapters._paths import vendor_get
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
from crmbridge.adapters.corebank_rest.auth import RestAuth
from crmbridge.adapters.corebank_rest.client import (
    RestClient,
    format_since,
    parse_vendor_datetime,
    resolve_link,
)
from crmbridge.adapters.corebank_rest.config import (
    FINERACT_CLIENTS,
    FINERACT_LOANS,
    FINERACT_SAVINGS_ACCOUNTS,
    AuthConfig,
    CorebankRestConfig,
    EmbedConfig,
    PaginationConfig,
    PathsConfig,
    ResourceConfig,
)
from crmbridge.adapters.corebank_rest.errors import (
    VENDOR,
    Classified,
    ErrorKind,
    bad_response,
    scrub,
    to_record_error,
)
from crmbridge.adapters.corebank_rest.metadata import json_type, sample_fields
from crmbridge.core.errors import (
    AdapterError,
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    PermissionDeniedError,
    RecordRejectedError,
    RequestError,
    RetryableError,
    ValidationError,
)

__all__ = [
    "AuthConfig",
    "CorebankRestAdapter",
    "CorebankRestConfig",
    "EmbedConfig",
    "FINERACT_CLIENTS",
    "FINERACT_LOANS",
    "FINERACT_SAVINGS_ACCOUNTS",
    "PaginationConfig",
    "PathsConfig",
    "ResourceConfig",
]

log = logging.getLogger(__name__)
class CorebankRestAdapter(Adapter):
    """Adapter for a core-banking customer service over REST/JSON."""

    name: ClassVar[str] = VENDOR
    #: the bank's golden source of customer data: receives personal data in full
    role: ClassVar[str] = "system_of_record"
    Config: ClassVar[type[AdapterConfig]] = CorebankRestConfig
    max_batch_size: ClassVar[int] = 1
    default_concurrency: ClassVar[int] = 2

    config: CorebankRestConfig

    def __init__(self, config: AdapterConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        cfg = self.config
        self._base = cfg.base_url.rstrip("/")
        #: the transport (calls, replies read and classified) and the credentials it sends
        self.client = RestClient(self._http, base_url=self._base, headers=cfg.headers, auth_type=cfg.auth.type,
                                 rules=tuple(r.rule() for r in cfg.business_errors), error_paths=cfg.error_paths,
                                 request_id_header=cfg.request_id_header)
        self.auth = RestAuth(cfg.auth, self.client, where=f"systems.{self.system}.auth")
        self.client.auth_headers = self.auth.headers
        self._tz: tzinfo = ZoneInfo(cfg.timezone)
        self.session.verify = cfg.verify

    # ---------------------------------------------------------------- hooks: reading
    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None,
                   state: Any) -> Page:
        """One page of a read. ``state`` (this adapter's own dict) carries the position (``skip`` records into
        the anchored query, or a cursor / next link), the keyset ``anchor``, the pinned ``until`` and what this
        read already yielded (``seen``: id -> (version or content hash, stamp)), so a repeat is dropped."""
        res = self._resource(obj)
        pg = res.pagination
        st: dict[str, Any] = dict(state or {})
        keyset = self._keyset(res)
        full_scan = since is not None and res.modified_since_param is None
        anchor: datetime | None = st.get("anchor", since)
        params: dict[str, Any] = dict(res.params)
        if anchor is not None and res.modified_since_param:
            params[res.modified_since_param] = format_since(self._ask_from(res, anchor), res.modified_since_format,
                                                            self._tz)
        if res.until_param and st.get("until") is not None:
            params[res.until_param] = st["until"]
        if fields and res.fields_param:
            wanted = [res.paths.id, *(p for p in (res.paths.modified, res.paths.version) if p)]
            params[res.fields_param] = ",".join(dict.fromkeys([*(w.split(".")[0] for w in wanted), *fields]))
        url = self.client.url(res.list_path)
        skip: int = st.get("skip", 0)
        if pg.style == "offset":
            params[pg.offset_param] = skip
            params[pg.limit_param] = pg.page_size
        elif pg.style == "page":
            params[pg.page_param] = pg.first_page + skip // pg.page_size
            params[pg.size_param] = pg.page_size
        elif pg.style in ("next_link", "cursor"):
            params[pg.size_param] = pg.page_size
            if pg.style == "cursor" and "cursor" in st:
                params[pg.cursor_param] = st["cursor"]
            if pg.style == "next_link" and "url" in st:
                url, params = st["url"], {}  # the link carries its own query
        where = f"GET {requests.utils.urlparse(url).path}"
        body, resp = self.client.call("GET", url, params=params)
        rows = self._rows(obj, res, body, resp, where)
        parts = [rows]
        if keyset and pg.style == "page" and st.get("inside") and res.reread and skip >= pg.page_size:
            # page numbers cannot step back a few records: inside one stamp, the page before is read again
            # (after this one), so a record of that stamp edited away, shifting the rest back by one, cannot hide
            # the record that was next
            back, back_resp = self.client.call("GET", url, params={**params, pg.page_param: params[pg.page_param] - 1})
            parts.append(self._rows(obj, res, back, back_resp, where))
        if keyset and pg.style == "next_link" and st.get("back") and res.reread:
            back, back_resp = self.client.call("GET", st["back"])   # the same, for links: the page read last
            parts.append(self._rows(obj, res, back, back_resp, where))
        if not rows:
            self._check_empty(obj, res, body, resp, where, skip, first=state is None)
        if res.until_param and st.get("until") is None:
            st["until"] = self._until_value(obj, res, body, resp, where)
        seen: dict[str, tuple[str, datetime | None]] = dict(st.get("seen", {}))
        records: list[RawRecord] = []
        stamps: list[datetime] = []
        for part in parts:
            last: datetime | None = None  # each reply is sorted on its own
            for row in part:
                rec = self._record(obj, res, row)
                if rec.modified_at is None:
                    continue
                if keyset and last is not None and rec.modified_at < last:
                    raise BadResponseError(
                        f"{obj}: the list at {where} is not sorted by '{res.paths.modified}' (resources.{obj}"
                        ".paths.modified): keyset paging needs it ascending: sort it in resources."
                        f"{obj}.params, or set resources.{obj}.resume: position", vendor=VENDOR,
                        status=resp.status_code, where=f"systems.{self.system}.resources.{obj}")
                last = rec.modified_at
                stamps.append(rec.modified_at)
        for row in (row for part in parts for row in part):
            rec = self._record(obj, res, row)
            fingerprint = rec.version if rec.version is not None else _content_hash(row)
            if seen.get(rec.external_id, ("",))[0] == fingerprint:
                continue  # re-read in this read (an overlap or a page step), unchanged: yielded already
            seen[rec.external_id] = (fingerprint, rec.modified_at)
            records.append(self._record(obj, res, self._embedded(res, row)) if res.embed else rec)
        if self._at_end(pg, body, st, len(rows), skip):
            return Page(records, None, full_scan=full_scan)
        if keyset:
            top = max(stamps) if stamps else None
            if top is not None and (anchor is None or top > anchor):
                # re-ask from the newest stamp read: edits before it cannot shift it
                st.update(anchor=top, skip=0, inside=False)
                st.pop("url", None)
                st.pop("back", None)
            elif pg.style == "next_link":  # a page inside one stamp: follow the link, re-reading this page after
                st.update(self._next_position(obj, pg, body, st, len(rows), skip), back=resp.url, inside=True,
                          anchor=anchor)
            else:  # a page inside one stamp: step on, re-reading a few records
                step = pg.page_size if pg.style == "page" else pg.page_size - min(res.reread, pg.page_size // 2)
                st.update(anchor=anchor, skip=skip + step, inside=True)
            floor = self._ask_from(res, st["anchor"]) if st["anchor"] is not None else None
            st["seen"] = {k: v for k, v in seen.items() if floor is None or v[1] is None or v[1] >= floor}
            return Page(records, st, full_scan=full_scan)
        # by position a record is read twice only when one inserted before it pushes it onto the next page: the
        # last page's records are enough to recognise it (a whole scan's ids would not fit in memory)
        page_ids = {str(vendor_get(row, res.paths.id)) for row in rows}
        st["seen"] = {k: v for k, v in seen.items() if k in page_ids}
        nxt = self._next_position(obj, pg, body, st, len(rows), skip)
        if nxt is None:
            return Page(records, None, full_scan=full_scan)
        st.update(nxt)
        return Page(records, st, full_scan=full_scan)

    def _rows(self, obj: str, res: ResourceConfig, body: Any, resp: requests.Response,
              where: str) -> list[dict[str, Any]]:
        rows = vendor_get(body, res.paths.list)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise self._no_list(obj, res, body, resp, where)
        return rows

    @staticmethod
    def _keyset(res: ResourceConfig) -> bool:
        return (res.resume == "keyset" and res.modified_since_param is not None and res.paths.modified is not None
                and res.pagination.style in ("offset", "page", "next_link"))

    @staticmethod
    def _ask_from(res: ResourceConfig, at: datetime) -> datetime:
        """The filter value that keeps every record stamped at or after ``at`` under the configured semantics
        (``unknown``: under either)."""
        if res.since_boundary == "inclusive":
            return at
        return at - timedelta(seconds=res.since_overlap_seconds)

    def _at_end(self, pg: PaginationConfig, body: Any, st: Mapping[str, Any], got: int, skip: int) -> bool:
        """Whether the page just read is the last one of its (anchored) query."""
        if pg.style == "none":
            return True
        more = self._flag_at(body, pg.has_more_path)
        if more is False:
            return True
        if pg.style == "offset":
            total = self._int_at(body, pg.total_path)
            return got == 0 or got < pg.page_size or (total is not None and skip + got >= total)
        if pg.style == "page":
            if pg.next_path is not None and vendor_get(body, pg.next_path) in (None, ""):
                return True
            pages = self._int_at(body, pg.total_pages_path)
            if pages is not None and skip // pg.page_size + 1 >= pages:
                return True
            return got == 0 or (pg.next_path is None and got < pg.page_size)
        return vendor_get(body, pg.next_path) in (None, "")

    def _next_position(self, obj: str, pg: PaginationConfig, body: Any, st: Mapping[str, Any], got: int,
                       skip: int) -> dict[str, Any] | None:
        if pg.style == "offset":
            # step back a few records: one removed before this page (a pending client deleted) must not shift
            # the next one out of reach; the repeats are dropped as seen
            return {"skip": skip + got - min(self._resource(obj).reread, got // 2)}
        if pg.style == "page":
            return {"skip": skip + pg.page_size}
        nxt = vendor_get(body, pg.next_path)
        if not isinstance(nxt, str | int):
            raise BadResponseError(f"{obj}: next page value at '{pg.next_path}' is not a string", vendor=VENDOR)
        if got == 0 and pg.style == "cursor" and str(nxt) == str(st.get("cursor")):
            raise BadResponseError(f"{obj}: the cursor did not advance", vendor=VENDOR)
        if pg.style == "cursor":
            return {"cursor": str(nxt)}
        try:
            url = resolve_link(self._base, str(nxt))
        except ValueError as exc:
            raise BadResponseError(f"{obj}: {exc}", vendor=VENDOR) from exc
        if url == st.get("url"):
            raise BadResponseError(f"{obj}: the next link points at the same page", vendor=VENDOR)
        return {"url": url}

    def _no_list(self, obj: str, res: ResourceConfig, body: Any, resp: requests.Response,
                 where: str) -> BadResponseError:
        """The reply has no record list where the configuration says: a vendor error carried in a 2xx, or a
        wrong ``paths.list``."""
        code = _first_str(body, self.config.error_paths.get("code", ()))
        if code is not None:
            message = _first_str(body, self.config.error_paths.get("message", ()))
            return BadResponseError(
                f"{obj}: {where} answered HTTP {resp.status_code} with vendor error code '{scrub(code, 80)}'"
                + (f": {scrub(message)}" if message else "") + f" instead of a record list at "
                f"'{res.paths.list or '$'}'", vendor=VENDOR, status=resp.status_code, vendor_code=code,
                request_id=resp.headers.get(self.config.request_id_header))
        keys = sorted(body)[:8] if isinstance(body, dict) else []
        return BadResponseError(
            f"{obj}: no record list at '{res.paths.list or '$'}' (resources.{obj}.paths.list) in the reply of "
            f"{where}" + (f"; its keys: {', '.join(scrub(k, 40) for k in keys)}" if keys else ""),
            vendor=VENDOR, status=resp.status_code, where=f"systems.{self.system}.resources.{obj}.paths.list")

    def _check_empty(self, obj: str, res: ResourceConfig, body: Any, resp: requests.Response, where: str,
                     skip: int, *, first: bool) -> None:
        """A reply with no records must not say that records remain (a wrong records path read as an empty
        list synced nothing, successfully)."""
        pg = res.pagination
        said: list[str] = []
        if self._flag_at(body, pg.has_more_path):
            said.append(f"'{pg.has_more_path}' says more pages follow")
        total = self._int_at(body, pg.total_path)
        if total is not None and total > (skip if pg.style in ("offset", "page") else 0) and \
                (first or pg.style in ("offset", "page")):
            said.append(f"'{pg.total_path}' says {total} records")
        pages = self._int_at(body, pg.total_pages_path)
        if pages is not None and pg.style == "page" and skip // pg.page_size + 1 < pages:
            said.append(f"'{pg.total_pages_path}' says {pages} pages")  # (an empty list is often "1 page")
        if pg.style == "next_link" and vendor_get(body, pg.next_path) not in (None, ""):
            said.append(f"'{pg.next_path}' links a next page")  # (a cursor may page through empty replies)
        if said:
            raise BadResponseError(
                f"{obj}: 0 records at '{res.paths.list or '$'}' (resources.{obj}.paths.list) in the reply of "
                f"{where}, but {' and '.join(said)}: is the records path right?", vendor=VENDOR,
                status=resp.status_code, where=f"systems.{self.system}.resources.{obj}.paths.list")

    def _until_value(self, obj: str, res: ResourceConfig, body: Any, resp: requests.Response, where: str) -> str:
        """The upper bound pinned for the rest of the read: the first reply's as-of time."""
        if res.until_path is not None:
            value = vendor_get(body, res.until_path)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
            raise BadResponseError(f"{obj}: no as-of time at '{res.until_path}' (resources.{obj}.until_path) in "
                                   f"the reply of {where}", vendor=VENDOR, status=resp.status_code)
        try:
            served = parsedate_to_datetime(resp.headers.get("Date", ""))
        except (TypeError, ValueError) as exc:
            raise BadResponseError(f"{obj}: the reply of {where} has no usable Date header to pin "
                                   f"resources.{obj}.until_param from; set until_path", vendor=VENDOR,
                                   status=resp.status_code) from exc
        return format_since(served, res.modified_since_format, self._tz)

    def _get(self, obj: str, external_id: str) -> RawRecord | None:
        res = self._resource(obj)
        return self._fetch_one(obj, res, self.client.url(res.item_path.format(id=quote(str(external_id), safe=""))))

    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        res = self._resource(obj)
        if key_field == res.paths.id:
            return self._get(obj, key)
        path = res.find_paths.get(key_field)
        if path is None:
            log.debug("%s cannot be searched by %s", obj, key_field)
            return None
        return self._fetch_one(obj, res, self.client.url(path.format(key=quote(str(key), safe=""))))

    def _fetch_one(self, obj: str, res: ResourceConfig, url: str) -> RawRecord | None:
        body, resp = self.client.call("GET", url, outcomes=(ErrorKind.NOT_FOUND,))
        if isinstance(body, Classified):
            return None
        row = vendor_get(body, res.paths.item)
        if not isinstance(row, dict):
            raise bad_response(f"no record at '{res.paths.item or '$'}'", resp)
        return self._record(obj, res, self._embedded(res, row))

    def _embedded(self, res: ResourceConfig, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with its configured sub-resources fetched in."""
        if not res.embed:
            return row
        rid = vendor_get(row, res.paths.id)
        if rid is None:
            return row  # _record reports the missing id
        out = dict(row)
        for name, emb in res.embed.items():
            body, resp = self.client.call("GET", self.client.url(emb.path.format(id=quote(str(rid), safe=""))),
                                    outcomes=(ErrorKind.NOT_FOUND,))
            if isinstance(body, Classified):
                out[name] = None
                continue
            items = vendor_get(body, emb.list)
            if not isinstance(items, list):
                raise bad_response(f"embed {name}: no list at '{emb.list or '$'}'", resp)
            if emb.key is None:
                out[name] = items
            else:
                out[name] = {str(vendor_get(i, emb.key)): vendor_get(i, emb.value) for i in items
                             if vendor_get(i, emb.key) is not None}
        return out

    def _describe(self, obj: str) -> list[FieldInfo]:
        res = self._resource(obj)
        page = self._list_page(obj, since=None, fields=None, state=None)
        return sample_fields([r.data for r in page.records], res.writable, writable=bool(res.write_path))

    # ---------------------------------------------------------------- doctor
    def _probe(self, obj: str) -> list[Finding]:
        """Read-only probes for ``crmbridge doctor``: reachable and authenticated, the page size the service
        accepts, the modified-since filter's boundary found by reading, clock skew, rate-limit headers."""
        res = self._resource(obj)
        where = f"GET {requests.utils.urlparse(self.client.url(res.list_path)).path}"
        try:
            body, resp, size = self._probe_page_size(obj, res)
        except (AuthenticationError, PermissionDeniedError) as exc:
            return [Finding("reachable", "ok", f"{where} answered", obj),
                    Finding("authenticated", "fail", f"{type(exc).__name__}: {exc}", obj)]
        except RetryableError as exc:
            return [Finding("reachable", "fail", f"{where}: {type(exc).__name__}: {exc}", obj)]
        except AdapterError as exc:
            return [Finding("reachable", "ok", f"{where} answered", obj),
                    Finding("operation", "fail", f"{where}: {type(exc).__name__}: {exc}", obj)]
        out = [Finding("reachable", "ok", f"{where} answered HTTP {resp.status_code}", obj),
               Finding("authenticated", "ok", f"{self.config.auth.type} credentials accepted", obj)]
        pg = res.pagination
        rows = self._rows(obj, res, body, resp, where)
        key = f"resources.{obj}.pagination.page_size"
        if size != pg.page_size:
            out.append(Finding("page_size", "fail", f"pages of {pg.page_size} are refused; {size} is accepted",
                               obj, {key: size}))
        elif len(rows) < size and (self._flag_at(body, pg.has_more_path)
                                   or (self._int_at(body, pg.total_path) or 0) > len(rows)
                                   or (pg.next_path is not None and vendor_get(body, pg.next_path) not in (None, ""))):
            out.append(Finding("page_size", "warn", f"asked for {size} records, got {len(rows)} while more exist: "
                               f"the service caps pages at {len(rows)}", obj, {key: len(rows)}))
        else:
            out.append(Finding("page_size", "ok", f"pages of {size} accepted", obj))
        try:
            out.append(self._probe_boundary(obj, res, rows, where, size))
        except AdapterError as exc:
            out.append(Finding("since_boundary", "fail", f"{type(exc).__name__}: {exc}", obj))
        out.append(_clock_skew(obj, resp))
        out.append(_rate_limit_headers(obj, resp))
        return out

    def _probe_page_size(self, obj: str, res: ResourceConfig) -> tuple[Any, requests.Response, int]:
        """The first page at the configured size, or (a 400/422 refusing the size) at the largest of a few
        smaller sizes that is accepted."""
        size = res.pagination.page_size
        while True:
            try:
                body, resp = self.client.call("GET", self.client.url(res.list_path),
                                              params=self._probe_params(res, size))
                return body, resp, size
            except RequestError as exc:
                if exc.status not in (400, 422) or size <= 10:
                    raise
                size = max(10, size // 2)

    def _probe_params(self, res: ResourceConfig, size: int, since: str | None = None) -> dict[str, Any]:
        pg = res.pagination
        params: dict[str, Any] = dict(res.params)
        if pg.style == "offset":
            params.update({pg.offset_param: 0, pg.limit_param: size})
        elif pg.style == "page":
            params.update({pg.page_param: pg.first_page, pg.size_param: size})
        elif pg.style in ("next_link", "cursor"):
            params[pg.size_param] = size
        if since is not None and res.modified_since_param:
            params[res.modified_since_param] = since
        return params

    def _probe_boundary(self, obj: str, res: ResourceConfig, rows: list[dict[str, Any]], where: str,
                        size: int) -> Finding:
        """Ask modified-since a record's own stamp: whether that record comes back is the boundary."""
        key = f"resources.{obj}.since_boundary"
        if res.modified_since_param is None or res.paths.modified is None:
            return Finding("since_boundary", "info", "no modified-since filter configured: every read is a full "
                                                     "scan, compared by content", obj)
        stamps = [r.modified_at for r in (self._record(obj, res, row) for row in rows)
                  if r.modified_at is not None and r.modified_at.microsecond == 0]
        if not stamps:
            return Finding("since_boundary", "info", "no record with a whole-second modification time to probe "
                                                     f"with; keep {key}: unknown", obj)
        at = max(stamps)  # the newest: the fewest records come back after it
        body, resp = self.client.call("GET", self.client.url(res.list_path), params=self._probe_params(
            res, size, format_since(at, res.modified_since_format, self._tz)))
        back = [r.modified_at for r in (self._record(obj, res, row) for row in self._rows(obj, res, body, resp, where))
                if r.modified_at is not None]
        if any(s < at for s in back):
            return Finding("since_boundary", "fail", f"asked {res.modified_since_param} = a record's stamp, got "
                           "older records: the filter is ignored or not the modification time", obj)
        found = "inclusive" if at in back else "exclusive"
        said = res.since_boundary
        came = "came" if found == "inclusive" else "did not come"
        detail = f"asked {res.modified_since_param} = a record's own stamp: it {came} back ({found})"
        if said == found:
            return Finding("since_boundary", "ok", f"{detail}; configured {said}", obj)
        if said == "unknown":
            return Finding("since_boundary", "info", f"{detail}; configured unknown (safe: each read asks "
                           f"{res.since_overlap_seconds}s earlier and drops repeats)", obj, {key: found})
        status = "fail" if said == "inclusive" else "warn"  # inclusive on an exclusive core loses that second
        return Finding("since_boundary", status, f"{detail}; configured {said}", obj, {key: found})

    # ---------------------------------------------------------------- hooks: writing
    def _write_batch(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        return [self._write_one(obj, self._resource(obj), item) for item in batch]

    def _write_one(self, obj: str, res: ResourceConfig, item: WriteItem) -> WriteResult:
        def failed(code: str, message: str, field: str | None = None) -> WriteResult:
            return WriteResult(item.key, WriteStatus.FAILED, external_id=item.external_id,
                               error=RecordRejectedError(message, field=field, code=code))

        if res.write_path is None:
            return failed("read_only", f"{obj} is read-only in this configuration")
        body_out = {k: v for k, v in item.payload.items() if k not in res.ignore}
        if res.writable is not None:
            golden = sorted(k for k in body_out if k not in res.writable)
            if golden:
                return failed("not_writable", f"{golden[0]} is owned by core banking and not written back",
                              golden[0])
        target = item.external_id
        if target is None:
            found = self._find(obj, item.key_field, item.key) if item.key_field else None
            if found is None:
                return failed("not_found", "no core-banking customer carries this key; crmbridge does not "
                                           "create customers in core banking")
            target = found.external_id
        headers: dict[str, str] = {}
        if item.expected_version is not None:
            if res.version_in == "body":
                body_out[res.version_name] = _version_value(item.expected_version)
            elif res.version_in == "header":
                headers[res.version_name] = item.expected_version
            else:
                current = self._get(obj, target)
                if current is None:
                    return failed("not_found", "the customer no longer exists")
                if current.error is not None:   # never compare against (or write over) an unusable version
                    return WriteResult(item.key, WriteStatus.FAILED, external_id=target, error=current.error)
                if res.paths.version is not None and current.version != item.expected_version:
                    return self._conflict_or_unchanged(obj, item, target, current)
        url = self.client.url(res.write_path.format(id=quote(str(target), safe="")))
        body, resp = self.client.call(res.write_method, url, json=body_out, headers=headers,
                                outcomes=(ErrorKind.NOT_FOUND, ErrorKind.CONFLICT, ErrorKind.VALIDATION,
                                          ErrorKind.REJECTED))
        if isinstance(body, Classified):
            if body.kind is ErrorKind.CONFLICT:
                return self._conflict_or_unchanged(obj, item, target, None)
            return WriteResult(item.key, WriteStatus.FAILED, external_id=target, error=to_record_error(body))
        if resp.status_code != 204 and not resp.content.strip():
            self._check_silent_write(obj, res, item, target, body_out, resp, url)
        status = WriteStatus.UPDATED
        if res.paths.changes is not None:
            changes = vendor_get(body, res.paths.changes)
            if isinstance(changes, dict) and not ({k for k in changes if k not in ("locale", "dateFormat")}):
                status = WriteStatus.UNCHANGED
        after = None
        row = vendor_get(body, res.paths.item) if body else None
        if isinstance(row, dict) and vendor_get(row, res.paths.id) is not None:
            after = self._record(obj, res, row)
        elif res.refetch_after_write:
            after = self._get(obj, target)
        return WriteResult(item.key, status, external_id=str(target),
                           version=after.version if after else None, modified_at=after.modified_at if after else None)

    def _check_silent_write(self, obj: str, res: ResourceConfig, item: WriteItem, target: str,
                            sent: Mapping[str, Any], resp: requests.Response, url: str) -> None:
        """A write answered by a 2xx with an empty body: some services do, and so does a gateway that never
        passed the call on. Only the core holding what was written makes it a success."""
        current = self._get(obj, target)
        skip = {res.version_name} if res.version_in == "body" else set()
        if current is None or any(current.data.get(k) != v for k, v in sent.items() if k not in skip):
            raise BadResponseError(
                f"{obj}: {res.write_method} {requests.utils.urlparse(url).path} answered HTTP {resp.status_code} "
                "with an empty body and the core does not hold what was written (a gateway answering?)",
                vendor=VENDOR, status=resp.status_code, request_id=resp.headers.get(self.config.request_id_header))

    def _conflict_or_unchanged(self, obj: str, item: WriteItem, target: str,
                               current: RawRecord | None) -> WriteResult:
        """A stale version: CONFLICT - unless the core already holds exactly what was written (a retried
        write that had been applied before its reply was lost), which is UNCHANGED."""
        current = current or self._get(obj, target)
        res = self._resource(obj)
        if current is not None and all(current.data.get(k) == v for k, v in item.payload.items()
                                       if k not in res.ignore):
            return WriteResult(item.key, WriteStatus.UNCHANGED, external_id=target, version=current.version,
                               modified_at=current.modified_at)
        return WriteResult(item.key, WriteStatus.CONFLICT, external_id=target,
                           version=None if current is None else current.version)

    def _invalidate_token(self) -> None:
        self.auth.invalidate()

    # ---------------------------------------------------------------- wire
    def _resource(self, obj: str) -> ResourceConfig:
        try:
            return self.config.resources[obj]
        except KeyError:
            raise ConfigurationError(f"unknown object {obj!r}; configured: {', '.join(self.config.resources)}",
                                     where=f"systems.{self.system}.resources") from None

    def _record(self, obj: str, res: ResourceConfig, row: Mapping[str, Any]) -> RawRecord:
        rid = vendor_get(row, res.paths.id)
        if rid is None or isinstance(rid, dict | list | bool) or str(rid) == "":
            raise BadResponseError(f"a record has no id at '{res.paths.id}'", vendor=VENDOR)
        modified = None
        if res.paths.modified is not None:
            try:
                modified = parse_vendor_datetime(vendor_get(row, res.paths.modified), self._tz,
                                                 res.paths.modified_format)
            except (ValueError, OverflowError) as exc:
                raise BadResponseError(f"record {rid}: unparsable modification time at "
                                       f"'{res.paths.modified}'", vendor=VENDOR) from exc
        version = vendor_get(row, res.paths.version) if res.paths.version else None
        problem = _version_problem(version, etag=res.version_in == "header")
        error = None if problem is None else ValidationError(
            f"{res.paths.version} (the record's version) {problem}: not synced until the core sends a valid one (a "
            "record stored without its version loses the stale-version check)", field=res.paths.version,
            code="bad_version", where=f"{self.system}:{obj}/{rid}")
        return RawRecord(obj, str(rid), dict(row), modified,
                         None if version is None or error is not None else str(version), error=error)

    @staticmethod
    def _flag_at(body: Any, path: str | None) -> bool | None:
        if path is None:
            return None
        v = vendor_get(body, path)
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        return None if v is None else bool(v)

    @staticmethod
    def _int_at(body: Any, path: str | None) -> int | None:
        if path is None:
            return None
        v = vendor_get(body, path)
        if v is None:
            return None
        try:
            return int(v)
        except (TypeError, ValueError) as exc:
            raise BadResponseError(f"'{path}' is not a number", vendor=VENDOR) from exc


def _clock_skew(obj: str, resp: requests.Response, now: datetime | None = None) -> Finding:
    try:
        served = parsedate_to_datetime(resp.headers.get("Date", ""))
    except (TypeError, ValueError):
        return Finding("clock_skew", "info", "the service sends no Date header: clock skew unknown", obj)
    skew = (served - (now or datetime.now(UTC))).total_seconds()
    detail = f"the service's clock is {abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} this host's"
    # a change filter compares the core's stamps: skew matters when it exceeds the jobs' overlap window
    return Finding("clock_skew", "warn" if abs(skew) > 30 else "ok",
                   detail + ("; keep the jobs' overlap_seconds above it" if abs(skew) > 30 else ""), obj)


def _rate_limit_headers(obj: str, resp: requests.Response) -> Finding:
    seen = {k: v for k, v in resp.headers.items()
            if "ratelimit" in k.lower().replace("-", "") or k.lower() == "retry-after"}
    if not seen:
        return Finding("rate_limit", "info", "no rate-limit headers in the reply", obj)
    return Finding("rate_limit", "info", "rate-limit headers: " + ", ".join(f"{k}: {scrub(v, 40)}"
                                                                            for k, v in sorted(seen.items())), obj)


def _content_hash(row: Mapping[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(row, sort_keys=True, default=str).encode("utf-8"), digest_size=12).hexdigest()


def _first_str(body: Any, paths: Sequence[str]) -> str | None:
    for p in paths:
        v = vendor_get(body, p)
        if isinstance(v, str | int) and not isinstance(v, bool) and str(v):
            return str(v)
    return None


_INTEGER = re.compile(r"[+-]?\d{1,18}")


def _version_problem(v: Any, *, etag: bool) -> str | None:
    """Why ``v`` cannot be a record's version, or None. A version is an integer (a JSON number or a string of
    digits, below 10^18); a service that sends it as an ``If-Match`` header (``version_in: header``) may use any
    ETag text of at most 64 printable characters (what the state database keeps)."""
    if v is None:
        return None
    if isinstance(v, bool) or isinstance(v, float | dict | list):
        return f"is a JSON {json_type(v)}, not an integer"
    if isinstance(v, int):   # the state database keeps a version in 64 characters
        return None if -10**18 < v < 10**18 else f"is an integer of {len(str(abs(v)))} digits, too large"
    text = str(v)
    if etag:
        if not text.strip() or len(text) > 64 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            return f"is not a usable ETag (a {len(text)}-character value)"
        return None
    if not _INTEGER.fullmatch(text.strip()):
        return f"is not an integer (a {len(text)}-character value)"
    return None


def _version_value(v: str) -> int | str:
    return int(v) if v.isdigit() else v
