"""The Zoho CRM adapter (REST API v8, China data centre by default).

Reads incrementally with ``sort_by=Modified_Time&sort_order=asc``, ``If-Modified-Since`` = since − overlap,
``page`` up to record 2000 and ``page_token`` beyond (docs/vendors/zoho.md §3); writes with upsert keyed by crmbridge's
external key (``duplicate_check_fields: [key_field]``, ``trigger: []``, ≤100 records per call, §4); reads
deletions from ``/{module}/deleted`` as tombstones (§5); finds by key with COQL (read-after-write, unlike
search, §6); keeps the edition's concurrency (§8). Every response goes through
:func:`crmbridge.adapters.zoho.errors.read_response`, the one classifier.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

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
from crmbridge.adapters.zoho.auth import TokenManager, shared_token_manager
from crmbridge.adapters.zoho.client import ZohoClient, format_time, list_of, parse_time
from crmbridge.adapters.zoho.config import _API_NAME, _LOOPBACK, ZohoConfig
from crmbridge.adapters.zoho.errors import (
    VENDOR,
    classify_item,
    credits_remaining,
    raise_for_request_items,
)
from crmbridge.core.errors import (
    AdapterError,
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    PermissionDeniedError,
    RecordRejectedError,
    RequestError,
    TokenExpiredError,
)
from crmbridge.core.secrets import resolve_secret

__all__ = ["EDITION_CONCURRENCY", "ZohoAdapter", "ZohoConfig"]

log = logging.getLogger(__name__)

#: simultaneous calls per user per OAuth app (docs/vendors/zoho.md §8)
EDITION_CONCURRENCY: Mapping[str, int] = {
    "free": 5, "standard": 10, "professional": 15, "enterprise": 20, "ultimate": 25,
}
#: records reachable with ``page`` alone (§3.2)
DISCRETE_PAGE_LIMIT = 2000
#: records reachable with one chain of page tokens (§3.2); past it a new If-Modified-Since window starts
TOKEN_WINDOW_LIMIT = 100_000
#: fields per list call (§3.2)
MAX_FIELDS = 50
#: field types that list calls do not return (§3.3)
_NOT_IN_LISTS = frozenset({"subform", "multiselectlookup"})
#: ``key_field: id`` in a mapping: update records by their Zoho record id, never create (``_update_by_id``)
RECORD_ID = "id"
#: API domain suffix -> data centre (docs/vendors/zoho.md §1)
_DATA_CENTRES = {".com.cn": "CN", ".com.au": "AU", ".eu": "EU", ".in": "IN", ".jp": "JP", ".ca": "CA", ".sa": "SA",
                 ".uk": "UK", ".com": "US"}
#: clock skew the doctor accepts without a warning, seconds
SKEW_OK = 5


class ZohoAdapter(Adapter):
    """Zoho CRM through its REST API (``/crm/v8``)."""

    name: ClassVar[str] = "zoho"
    role: ClassVar[str] = "crm"
    source_system: ClassVar[str | None] = "ZOHO"
    mandatory_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "Contacts": ("Last_Name",), "Leads": ("Last_Name",), "Accounts": ("Account_Name",),
        "Deals": ("Deal_Name", "Stage"),
    }
    Config: ClassVar[type[AdapterConfig]] = ZohoConfig
    max_batch_size: ClassVar[int] = 100
    default_concurrency: ClassVar[int] = EDITION_CONCURRENCY["enterprise"]

    config: ZohoConfig

    def __init__(self, config: AdapterConfig, *, system: str | None = None,
                 session: requests.Session | None = None, base_dir: Path | None = None, **kwargs: Any) -> None:
        """Args beyond the base class': ``base_dir``, the folder ``file:`` secret references are relative to."""
        if not isinstance(config, ZohoConfig):
            raise ConfigurationError(f"expected a zoho configuration, got {type(config).__name__}",
                                     where=f"systems.{system or 'zoho'}")
        self.default_concurrency = EDITION_CONCURRENCY[config.edition]  # type: ignore[misc]
        super().__init__(config, system=system, session=session, **kwargs)
        where = f"systems.{self.system}"
        secret = resolve_secret(config.client_secret, where=f"{where}.client_secret", base_dir=base_dir)
        refresh = resolve_secret(config.refresh_token, where=f"{where}.refresh_token", base_dir=base_dir)
        cache = None
        if config.token_cache:
            cache = Path(config.token_cache)
            cache = cache if cache.is_absolute() or base_dir is None else Path(base_dir) / cache
        self._tokens: TokenManager = shared_token_manager(f"{config.accounts_url}/oauth/v2/token",
                                                          config.client_id, secret, refresh, cache=cache)
        self._base = f"{config.api_domain}/crm/{config.api_version}"
        #: the transport: authenticated calls, every reply read by the one classifier
        self.client = ZohoClient(self._http, self._tokens, self._base, self.stats)
        self._fields: dict[str, list[dict[str, Any]]] = {}
        self._fields_lock = threading.Lock()
        self._default_fields: dict[str, list[str]] = {}
        self._probed_system = False  # the doctor's system-wide findings are reported once

    # ------------------------------------------------------------------ plumbing
    def _token_post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.client.token_post(url, **kwargs)

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None, headers: Mapping[str, str] | None = None,
              items: bool = False) -> dict[str, Any] | None:
        """One authenticated API call, read and classified (``None`` for 204/304): :meth:`ZohoClient.call`."""
        return self.client.call(method, path, params=params, body=body, headers=headers, items=items)

    def _invalidate_token(self) -> None:
        self.client.invalidate_token()

    def _api(self, obj: str) -> str:
        """The org's module API name for the object name ``obj`` (``modules`` in the configuration)."""
        name = self.config.modules.get(obj, obj)
        if not _API_NAME.match(name):
            raise RequestError(f"{name!r} is not a Zoho module API name", vendor=VENDOR)
        return name

    def _module(self, obj: str) -> str:
        return "/" + quote(self._api(obj))

    def _since_header(self, since: datetime | None) -> str | None:
        if since is None:
            return None
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        # exclusive (or not known to be inclusive): one second earlier, so records modified in the cursor's own
        # second come back even with overlap_seconds 0 (a record of that second on the next page is not lost)
        extra = 0 if self.config.since_boundary == "inclusive" else 1
        return format_time(since - timedelta(seconds=self.config.overlap_seconds + extra))

    def _raw(self, obj: str, rec: Any) -> RawRecord:
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str | int):
            raise BadResponseError(f"{obj} record without an id", vendor=VENDOR)
        mtime = rec.get("Modified_Time")
        return RawRecord(obj, str(rec["id"]), rec, modified_at=parse_time(mtime, obj),
                         version=mtime if isinstance(mtime, str) else None)

    # ------------------------------------------------------------------ metadata
    def _field_meta(self, obj: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        with self._fields_lock:
            cached = self._fields.get(obj)
        if cached is not None and not fresh:
            return cached
        body = self._call("GET", "/settings/fields", params={"module": self._api(obj)})
        fields = list_of(body, "fields", obj) if body is not None else []
        if not all(isinstance(f, dict) and isinstance(f.get("api_name"), str) for f in fields):
            raise BadResponseError(f"field metadata of {obj} has items without api_name", vendor=VENDOR)
        with self._fields_lock:
            self._fields[obj] = fields
        return fields

    def _describe(self, obj: str) -> list[FieldInfo]:
        if obj == self.config.members_relation:
            # a member record: the related module's fields (read with each member) and the relation's own
            related = self._relation(obj)[1]
            return [FieldInfo("Campaign", "lookup", read_only=True), FieldInfo("Member", "lookup", required=True),
                    FieldInfo("Member_Status", "picklist"), *self._describe(related)]
        out = []
        for f in self._field_meta(obj, fresh=True):
            picks = f.get("pick_list_values") if isinstance(f.get("pick_list_values"), list) else []
            values = tuple(v for v in (str(p.get("actual_value") or p.get("display_value")) for p in picks
                                       if isinstance(p, dict)) if v != "-None-") or None  # "-None-" = empty
            length = f.get("length")
            out.append(FieldInfo(name=f["api_name"], type=str(f.get("data_type") or "unknown"),
                                 length=length if isinstance(length, int) else None,
                                 required=bool(f.get("system_mandatory")),
                                 read_only=bool(f.get("read_only") or f.get("field_read_only")),
                                 picklist=values))
        return out

    def _list_fields(self, obj: str, fields: Sequence[str] | None) -> list[str]:
        if not fields and obj in self._default_fields:
            return self._default_fields[obj]
        if fields:
            names = [n for n in dict.fromkeys(fields) if n != "id"]  # id always comes back
            for n in names:
                if not _API_NAME.match(n):
                    raise ConfigurationError(f"{n!r} is not a Zoho field API name", where=f"extract {obj}")
        else:
            meta = self._field_meta(obj)
            names = [f["api_name"] for f in meta if f.get("data_type") not in _NOT_IN_LISTS and f["api_name"] != "id"]
        # Modified_Time always (the cursor), and the key field first when choosing by default
        head = ["Modified_Time"] + ([self.config.key_field] if not fields and self.config.key_field in names else [])
        ordered = list(dict.fromkeys([*head, *names]))
        if len(ordered) > MAX_FIELDS:
            if fields:
                raise ConfigurationError(f"Zoho returns at most {MAX_FIELDS} fields per list call; "
                                         f"{len(ordered)} requested", where=f"extract {obj}")
            log.warning("zoho %s has %d fields; reading the first %d (pass fields= to choose)", obj,
                        len(ordered), MAX_FIELDS)
            ordered = ordered[:MAX_FIELDS]
        if not fields:
            self._default_fields[obj] = ordered
        return ordered

    # ------------------------------------------------------------------ reads
    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None,
                   state: Any) -> Page:
        if obj == self.config.members_relation:
            return self._members_page(obj, state)
        st: dict[str, Any] = state or {"page": 1, "token": None, "read": 0, "ims": self._since_header(since),
                                       "last": None}
        ps = self.config.page_size
        params: dict[str, Any] = {"fields": ",".join(self._list_fields(obj, fields)), "per_page": ps,
                                  "sort_by": "Modified_Time", "sort_order": "asc"}
        if st["token"]:
            params["page_token"] = st["token"]
        else:
            params["page"] = st["page"]
        headers = {"If-Modified-Since": st["ims"]} if st["ims"] else None
        try:
            body = self._call("GET", self._module(obj), params=params, headers=headers)
        except RequestError as exc:
            if exc.vendor_code != "PAGINATION_LIMIT_EXCEEDED" or st["last"] is None:
                raise
            return self._list_page(obj, since=since, fields=fields, state=self._next_window(obj, st))
        if body is None:  # 204 nothing matched, 304 nothing modified: end of data
            return Page([], None)
        records = [self._raw(obj, r) for r in list_of(body, "data", obj)]
        info = body.get("info") if isinstance(body.get("info"), dict) else {}
        if info.get("more_records") is not True or not records:
            return Page(records, None)
        read = st["read"] + len(records)
        last = records[-1].modified_at
        st = {**st, "last": format_time(last) if last else None}
        if read + ps > TOKEN_WINDOW_LIMIT:
            return Page(records, self._next_window(obj, st))
        page = st["page"] + 1
        if st["token"] is None and page * ps <= DISCRETE_PAGE_LIMIT:
            return Page(records, {**st, "page": page, "read": read})
        token = info.get("next_page_token")
        if not isinstance(token, str) or not token:
            raise BadResponseError(f"{obj}: more_records past record {read} without next_page_token",
                                   vendor=VENDOR)
        return Page(records, {**st, "page": page, "token": token, "read": read})

    def _next_window(self, obj: str, st: dict[str, Any]) -> dict[str, Any]:
        """Past 100,000 records a page-token chain ends: start a new If-Modified-Since window at the last record's
        second minus one (records of that second are read again; the engine dedupes by content hash)."""
        if st["last"] is None:
            raise BadResponseError(f"{obj}: record without Modified_Time at the pagination limit", vendor=VENDOR)
        ims = format_time(parse_time(st["last"], obj) - timedelta(seconds=1))  # type: ignore[operator]
        if st["ims"] is not None and parse_time(ims, obj) <= parse_time(st["ims"], obj):  # type: ignore[operator]
            raise RequestError(f"{obj}: a whole pagination window shares one second of Modified_Time",
                               vendor=VENDOR)
        return {"page": 1, "token": None, "read": 0, "ims": ims, "last": None}

    def _list_deleted_page(self, obj: str, *, since: datetime | None, state: Any) -> Page:
        page = state or 1
        ims = self._since_header(since)
        body = self._call("GET", f"{self._module(obj)}/deleted",
                          params={"type": "all", "page": page, "per_page": self.config.page_size},
                          headers={"If-Modified-Since": ims} if ims else None)
        if body is None:
            return Page([], None)
        floor = parse_time(ims, obj) if ims else None
        out = []
        for item in list_of(body, "data", f"{obj}/deleted"):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
                raise BadResponseError(f"{obj}/deleted item without an id", vendor=VENDOR)
            when = parse_time(item.get("deleted_time"), obj)
            if floor is not None and when is not None and when < floor:
                continue
            out.append(RawRecord(obj, str(item["id"]), item, modified_at=when, deleted=True))
        info = body.get("info") if isinstance(body.get("info"), dict) else {}
        return Page(out, page + 1 if info.get("more_records") is True else None)

    def _get(self, obj: str, external_id: str) -> RawRecord | None:
        if obj == self.config.members_relation:
            return self._get_member(obj, external_id)
        if not external_id.isdigit():
            return None
        try:
            body = self._call("GET", f"{self._module(obj)}/{external_id}")
        except RequestError as exc:
            if exc.vendor_code == "INVALID_DATA":  # "the id given seems to be invalid"
                return None
            raise
        if body is None:
            return None
        data = list_of(body, "data", obj)
        return self._raw(obj, data[0]) if data else None

    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        if not _API_NAME.match(key_field):
            raise ConfigurationError(f"{key_field!r} is not a Zoho field API name", where=f"find {obj}")
        value = key.replace("\\", "\\\\").replace("'", "\\'")
        if obj == self.config.members_relation:
            return None  # a membership has no key field at Zoho: PUT on the relation is idempotent
        query = f"select id, Modified_Time from {self._api(obj)} where {key_field} = '{value}' order by id asc limit 2"
        body = self._call("POST", "/coql", body={"select_query": query})
        if body is None:
            return None
        rows = list_of(body, "data", "coql")
        if not rows:
            return None
        if len(rows) > 1:
            log.warning("zoho %s: %d records share %s; using the oldest", obj, len(rows), key_field)
        first = rows[0]
        if not isinstance(first, dict) or "id" not in first:
            raise BadResponseError("COQL row without id", vendor=VENDOR)
        return self._get(obj, str(first["id"]))

    # ------------------------------------------------------------------ doctor
    def _probe_get(self, path: str, params: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> tuple[requests.Response, dict[str, Any] | None]:
        """One read-only call for the doctor: the raw response (its headers) and the classified body. A cached token
        Zoho no longer accepts is refreshed once, as in a run (only a refused refresh means refused credentials)."""
        try:
            return self._probe_once(path, params, headers)
        except TokenExpiredError:
            self._invalidate_token()
            return self._probe_once(path, params, headers)

    def _probe_once(self, path: str, params: Mapping[str, Any] | None,
                    headers: Mapping[str, str] | None) -> tuple[requests.Response, dict[str, Any] | None]:
        return self.client.get_response(path, params=params, headers=headers)

    def _probe(self, obj: str) -> list[Finding]:
        """Read-only probes for ``crmbridge doctor``: authentication (token refresh and a read), the data centre,
        the edition, the page size, the If-Modified-Since boundary (found by reading), clock skew (``Date``), the
        API-credit header, and the deleted-records read. System-wide findings are reported with the first object."""
        out: list[Finding] = []
        if obj == self.config.members_relation:
            return self._probe_members(obj)
        module = self._module(obj)
        newest = {"fields": "Modified_Time", "per_page": 1, "sort_by": "Modified_Time", "sort_order": "desc"}
        try:
            resp, body = self._probe_get(module, newest)
            local = time.time() - resp.elapsed.total_seconds() / 2   # when the server wrote its Date, about
        except (AuthenticationError, TokenExpiredError) as exc:
            return [Finding("authenticated", "fail", f"credentials refused: {exc}", obj=obj)]
        except PermissionDeniedError as exc:
            return [Finding("operation", "fail", f"reading {obj} is not permitted: {exc}", obj=obj)]
        except AdapterError as exc:
            return [Finding("reachable", "fail", f"reading {obj} failed: {type(exc).__name__}: {exc}", obj=obj)]
        first, self._probed_system = not self._probed_system, True
        if first:
            out.append(Finding("authenticated", "ok", f"token refresh ({self._tokens.token_url.split('//')[-1]}) "
                               "and a read succeeded"))
            out.append(self._probe_data_centre())
            out.append(self._probe_clock(resp, local))
            out.append(self._probe_credits(resp))
            out.append(self._probe_edition())
        out.append(Finding("operation", "ok", f"list {obj} answered HTTP {resp.status_code}", obj=obj))
        out.append(self._probe_page_size(obj, module))
        records = body.get("data") if isinstance(body, dict) else None
        stamp = records[0].get("Modified_Time") if isinstance(records, list) and records and isinstance(
            records[0], dict) else None
        out.append(self._probe_boundary(obj, module, stamp if isinstance(stamp, str) else None))
        try:
            self._probe_get(f"{module}/deleted", {"type": "all", "per_page": 1})
            out.append(Finding("operation", "ok", f"deleted-records read of {obj} works", obj=obj))
        except AdapterError as exc:
            out.append(Finding("operation", "fail", f"deleted-records read of {obj} failed (deletions will not "
                               f"propagate): {type(exc).__name__}: {exc}", obj=obj))
        return out

    def _probe_members(self, obj: str) -> list[Finding]:
        """The members relation: the parent module lists, its related list exists under the configured name
        (``/settings/related_lists``), and a member read returns ``Member_Status`` (docs/vendors/zoho.md §15)."""
        parent, related = self._relation(obj)
        try:
            _, body = self._probe_get("/settings/related_lists", {"module": parent})
        except AdapterError as exc:
            return [Finding("operation", "fail", f"related lists of {parent}: {type(exc).__name__}: {exc}", obj=obj)]
        lists = body.get("related_lists") if isinstance(body, dict) else None
        names = sorted(str(r.get("api_name")) for r in lists or [] if isinstance(r, dict))
        if related not in names:
            return [Finding("operation", "fail", f"{parent} has no related list {related!r}; it has: "
                            f"{', '.join(names) or 'none'} (members_relation)", obj=obj)]
        out = [Finding("operation", "ok", f"{parent} has the related list {related}", obj=obj)]
        try:
            page = self._members_page(obj, None)
        except BadResponseError as exc:
            return [*out, Finding("operation", "fail", str(exc), obj=obj)]
        except AdapterError as exc:
            return [*out, Finding("reachable", "fail", f"reading members failed: {type(exc).__name__}: {exc}",
                                  obj=obj)]
        seen = "read" if page.records else "no members to read yet: Member_Status in lists not checked"
        return [*out, Finding("operation", "ok" if page.records else "info", f"campaign members: {seen}", obj=obj)]

    def _probe_data_centre(self) -> Finding:
        host = urlsplit(self.config.api_domain).hostname or ""
        issued = self._tokens.api_domain
        if issued and issued.rstrip("/") != self.config.api_domain:
            return Finding("data_centre", "fail", f"the accounts server issued the token for {issued}, not the "
                           f"configured api_domain {self.config.api_domain}", config={"api_domain": issued})
        if host in _LOOPBACK:
            return Finding("data_centre", "info", f"api_domain {host} is a loopback address (a simulator)")
        dc = next((name for suffix, name in _DATA_CENTRES.items() if host.endswith(suffix)), "unknown")
        status = "ok" if dc == "CN" else "warn"
        return Finding("data_centre", status, f"data centre {dc} ({host})"
                       + ("" if dc == "CN" else "; PRC personal data must stay in the CN data centre"))

    @staticmethod
    def _probe_clock(resp: requests.Response, local: float) -> Finding:
        raw = resp.headers.get("Date")
        try:
            server = email.utils.parsedate_to_datetime(raw).timestamp() if raw else None
        except (TypeError, ValueError, IndexError):
            server = None
        if server is None:
            return Finding("clock_skew", "info", "the response carried no readable Date header")
        skew = server - local
        if abs(skew) <= SKEW_OK:
            return Finding("clock_skew", "ok", f"local clock within {SKEW_OK} s of Zoho's (skew {skew:+.0f} s)")
        return Finding("clock_skew", "warn", f"local clock is {abs(skew):.0f} s {'behind' if skew > 0 else 'ahead of'}"
                       " Zoho's (Date header); fix NTP on this host: change cursors taken from the local clock "
                       "would miss or repeat records",
                       config={"overlap_seconds": max(5, math.ceil(abs(skew)) + 5)})

    def _probe_credits(self, resp: requests.Response) -> Finding:
        remaining = credits_remaining(resp)
        limits = {k: v for k, v in resp.headers.items() if k.lower().startswith(("x-ratelimit", "x-api-credits"))}
        extra = "; " + ", ".join(f"{k}={v}" for k, v in sorted(limits.items())) if limits else ""
        if remaining is None:
            return Finding("rate_limit", "ok", "no X-API-CREDITS-REMAINING header: less than half of the day's API "
                           f"credits used (Zoho sends it only past half; no Retry-After, no X-RATELIMIT-*){extra}")
        return Finding("rate_limit", "warn", f"{remaining} API credits remaining in the rolling 24 h (over half of "
                       f"the day's credits used){extra}")

    def _probe_edition(self) -> Finding:
        try:
            _, body = self._probe_get("/org")
        except AdapterError as exc:
            return Finding("edition", "info", f"org details unavailable ({type(exc).__name__}); edition not checked")
        orgs = body.get("org") if isinstance(body, dict) else None
        lic = orgs[0].get("license_details") if isinstance(orgs, list) and orgs and isinstance(orgs[0], dict) else None
        paid = str((lic or {}).get("paid_type") or "").lower() if isinstance(lic, dict) else ""
        found = next((e for e in EDITION_CONCURRENCY if e in paid), None)
        if found is None and isinstance(lic, dict) and lic.get("paid") is False:
            found = "free"
        if found is None:
            return Finding("edition", "info", "the org's edition could not be read from /org license_details")
        if found != self.config.edition:
            return Finding("edition", "warn", f"the org is {found} edition ({EDITION_CONCURRENCY[found]} concurrent "
                           f"calls), configured {self.config.edition} ({EDITION_CONCURRENCY[self.config.edition]})",
                           config={"edition": found})
        return Finding("edition", "ok", f"{found} edition: {EDITION_CONCURRENCY[found]} concurrent calls")

    def _probe_page_size(self, obj: str, module: str) -> Finding:
        for size in dict.fromkeys((200, self.config.page_size)):
            try:
                _, body = self._probe_get(module, {"fields": "Modified_Time", "per_page": size, "page": 1})
            except RequestError as exc:
                if size == self.config.page_size:
                    return Finding("page_size", "fail", f"per_page={size} refused: {exc}", obj=obj)
                continue
            except AdapterError as exc:
                return Finding("page_size", "info", f"page size not checked: {type(exc).__name__}", obj=obj)
            raw_info = body.get("info") if isinstance(body, dict) else None
            echoed = raw_info.get("per_page") if isinstance(raw_info, dict) else None
            if isinstance(echoed, int) and 0 < echoed < size:
                return Finding("page_size", "warn", f"per_page={size} answered with pages of {echoed}", obj=obj,
                               config={"page_size": echoed} if echoed < self.config.page_size else {})
            if size > self.config.page_size:
                return Finding("page_size", "info", f"per_page={size} accepted; configured page_size "
                               f"{self.config.page_size} costs more calls", obj=obj, config={"page_size": size})
            status = "ok" if size == self.config.page_size else "warn"
            return Finding("page_size", status, f"per_page={size} accepted", obj=obj,
                           config={} if status == "ok" else {"page_size": size})
        return Finding("page_size", "info", "page size not checked", obj=obj)  # pragma: no cover

    def _probe_boundary(self, obj: str, module: str, stamp: str | None) -> Finding:
        """Read the newest record's Modified_Time T back with If-Modified-Since: T. The record comes back when the
        comparison is inclusive (>=), not when it is exclusive (>)."""
        if stamp is None:
            return Finding("since_boundary", "info", f"{obj} is empty: If-Modified-Since boundary not detected",
                           obj=obj)
        when = parse_time(stamp, obj)
        try:
            _, body = self._probe_get(module, {"fields": "Modified_Time", "per_page": 200, "page": 1,
                                               "sort_by": "Modified_Time", "sort_order": "asc"},
                                      {"If-Modified-Since": format_time(when)} if when else None)
        except AdapterError as exc:
            return Finding("since_boundary", "info", f"boundary not detected: {type(exc).__name__}: {exc}", obj=obj)
        rows = body.get("data") if isinstance(body, dict) else None
        times = [parse_time(r.get("Modified_Time"), obj) for r in rows or [] if isinstance(r, dict)]
        detected = "inclusive" if when in times else "exclusive"
        configured = self.config.since_boundary
        text = f"If-Modified-Since is {detected} (a record modified at the header's second " + (
            "comes back)" if detected == "inclusive" else "does not come back)")
        if configured == detected:
            return Finding("since_boundary", "ok", text, obj=obj)
        if configured == "unknown":
            return Finding("since_boundary", "info", text + "; since_boundary unknown is safe (one second re-read)",
                           obj=obj, config={"since_boundary": detected})
        if detected == "exclusive" and self.config.overlap_seconds == 0:
            return Finding("since_boundary", "fail", text + "; configured inclusive with overlap_seconds 0: records "
                           "modified in the cursor's second are lost", obj=obj, config={"since_boundary": detected})
        return Finding("since_boundary", "warn", text + f"; configured {configured}", obj=obj,
                       config={"since_boundary": detected})

    # ------------------------------------------------------------------ writes
    def _write_batch(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        """Upsert by key. Items with an ``expected_version`` go in their own call with If-Unmodified-Since
        (a header, so one call per version); results come back in the batch's order."""
        if obj == self.config.members_relation:
            return self._write_members(obj, batch)
        if any(item.key_field == RECORD_ID for item in batch):
            return self._update_by_id(obj, batch)
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, item in enumerate(batch):
            key_field = item.key_field or self.config.key_field
            groups.setdefault((key_field, item.expected_version), []).append(i)
        results: list[WriteResult | None] = [None] * len(batch)
        path = f"{self._module(obj)}/upsert"
        for (key_field, version), idxs in groups.items():
            rows = [{**batch[i].payload, key_field: batch[i].key} for i in idxs]
            body = {"data": rows, "duplicate_check_fields": [key_field], "trigger": list(self.config.trigger)}
            headers = {"If-Unmodified-Since": version} if version else None
            resp = self._call("POST", path, body=body, headers=headers, items=True)
            items = list_of(resp, "data", obj) if resp is not None else []
            raise_for_request_items(items, where=f"POST {path}")
            if len(items) != len(idxs):
                raise BadResponseError(f"{len(items)} results for {len(idxs)} records", vendor=VENDOR,
                                       where=f"POST {path}")
            for j, (i, item) in enumerate(zip(idxs, items, strict=True)):
                results[i] = self._write_result(batch[i], item, j, f"POST {path}")
        return [r for r in results if r is not None]

    def _update_by_id(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        """Update records by their Zoho record id (``key_field: id``): ``PUT /crm/{v}/{Module}`` with ``id`` in
        each item (docs/vendors/zoho.md §4.1), for records crmbridge did not create and that carry no key field (a
        case logged in the CRM, whose status comes back from the bank). Never creates: an item without a record id
        fails, and an id Zoho no longer knows (the record was deleted) is Zoho's ``INVALID_DATA`` on the ``id``,
        a record error. Items with an ``expected_version`` go in their own call with If-Unmodified-Since."""
        where = f"PUT {self._module(obj)}"
        if any(item.key_field != RECORD_ID for item in batch):
            raise RequestError("a Zoho write batch mixes updates by record id and upserts by key", vendor=VENDOR,
                               where=where)
        results: list[WriteResult | None] = [None] * len(batch)
        groups: dict[str | None, list[int]] = {}
        for i, item in enumerate(batch):
            if item.external_id is None:
                results[i] = WriteResult(item.key, WriteStatus.FAILED, error=RecordRejectedError(
                    "no Zoho record id to update (key_field id only updates records Zoho already holds)",
                    code="no_record_id", where=where))
            else:
                groups.setdefault(item.expected_version, []).append(i)
        for version, idxs in groups.items():
            rows = [{**batch[i].payload, RECORD_ID: batch[i].external_id} for i in idxs]
            body = {"data": rows, "trigger": list(self.config.trigger)}
            headers = {"If-Unmodified-Since": version} if version else None
            resp = self._call("PUT", self._module(obj), body=body, headers=headers, items=True)
            items = list_of(resp, "data", obj) if resp is not None else []
            raise_for_request_items(items, where=where)
            if len(items) != len(idxs):
                raise BadResponseError(f"{len(items)} results for {len(idxs)} records", vendor=VENDOR, where=where)
            for j, (i, z) in enumerate(zip(idxs, items, strict=True)):
                results[i] = self._write_result(batch[i], z, j, where)
        return [r for r in results if r is not None]

    def _write_result(self, item: WriteItem, z: Any, index: int, where: str) -> WriteResult:
        kind, error = classify_item(z, index=index, where=where)
        details = z.get("details") if isinstance(z.get("details"), dict) else {}
        mtime = details.get("Modified_Time")
        version = mtime if isinstance(mtime, str) else None
        ext = details.get("id")
        ext = str(ext) if isinstance(ext, str | int) else None
        if kind == "success":
            if ext is None:
                raise BadResponseError(f"success result {index} without details.id", vendor=VENDOR, where=where)
            created = z.get("action") == "insert" or (z.get("action") is None and z.get("message") == "record added")
            return WriteResult(item.key, WriteStatus.CREATED if created else WriteStatus.UPDATED, ext, version,
                               parse_time(mtime, where))
        if kind == "conflict":
            return WriteResult(item.key, WriteStatus.CONFLICT, ext or item.external_id, version,
                               parse_time(mtime, where), error)
        return WriteResult(item.key, WriteStatus.FAILED, item.external_id, error=error)

    def _delete_batch(self, obj: str, external_ids: list[str]) -> list[WriteResult]:
        path = self._module(obj)
        params = {"ids": ",".join(external_ids), "wf_trigger": "true" if "workflow" in self.config.trigger
                  else "false"}
        body = self._call("DELETE", path, params=params, items=True)
        items = list_of(body, "data", obj) if body is not None else []
        raise_for_request_items(items, where=f"DELETE {path}")
        if len(items) != len(external_ids):
            raise BadResponseError(f"{len(items)} results for {len(external_ids)} deletions", vendor=VENDOR,
                                   where=f"DELETE {path}")
        out = []
        for j, (ext, z) in enumerate(zip(external_ids, items, strict=True)):
            kind, error = classify_item(z, index=j, where=f"DELETE {path}")
            status = WriteStatus.DELETED if kind == "success" else WriteStatus.FAILED
            out.append(WriteResult(ext, status, ext, error=error))
        return out

    # ------------------------------------------------------------------ campaign members (a related list)
    def _relation(self, obj: str) -> tuple[str, str]:
        parent, _, related = obj.partition(".")
        return self._api(parent), related

    def _members_page(self, obj: str, state: Any) -> Page:
        """Members of every campaign, one related-list page per call: ``{parent}/{id}/{related}`` with ``fields``,
        ``page`` and ``per_page`` (≤200, no page_token). Zoho does not say whether If-Modified-Since on a related
        list sees a member status change, so this is a full scan (the engine's content hash finds the changes)."""
        parent, related = self._relation(obj)
        st: dict[str, Any] = state or {"parents": None, "ppage": 1, "idx": 0, "page": 1}
        if st["parents"] is None or (st["idx"] >= len(st["parents"]) and st.get("pmore")):
            body = self._call("GET", "/" + quote(parent), params={
                "fields": "id,Campaign_Name" if parent == "Campaigns" else "id", "per_page": 200,
                "page": st["ppage"], "sort_by": "id", "sort_order": "asc"})
            rows = list_of(body, "data", parent) if body is not None else []
            info = body.get("info") if body is not None and isinstance(body.get("info"), dict) else {}
            st = {"parents": [(str(r["id"]), r.get("Campaign_Name")) for r in rows if isinstance(r, dict)
                              and isinstance(r.get("id"), str | int)],
                  "ppage": st["ppage"] + 1, "idx": 0, "page": 1, "pmore": info.get("more_records") is True}
            if not st["parents"]:
                return Page([], None, full_scan=True)
        pid, pname = st["parents"][st["idx"]]
        fields = ",".join(dict.fromkeys(["id", *self.config.member_fields]))
        body = self._call("GET", f"/{quote(parent)}/{pid}/{quote(related)}",
                          params={"fields": fields, "page": st["page"], "per_page": self.config.page_size})
        rows = list_of(body, "data", obj) if body is not None else []
        records = []
        for r in rows:
            if not isinstance(r, dict) or not isinstance(r.get("id"), str | int):
                raise BadResponseError(f"{obj} member of {pid} without an id", vendor=VENDOR)
            if "Member_Status" not in r:
                raise BadResponseError(f"{obj}: the related list does not return Member_Status (see "
                                       "docs/vendors/zoho.md §15)", vendor=VENDOR)
            member = {k: v for k, v in r.items() if k not in ("id", "Member_Status")}
            data = {"Campaign": {"id": pid, "name": pname}, "Member": {"id": str(r["id"])},
                    "Member_Status": r["Member_Status"], **member}
            records.append(RawRecord(obj, f"{pid}:{r['id']}", data, modified_at=parse_time(
                r.get("Modified_Time"), obj)))
        info = body.get("info") if body is not None and isinstance(body.get("info"), dict) else {}
        if info.get("more_records") is True and rows:
            nxt: dict[str, Any] | None = {**st, "page": st["page"] + 1}
        elif st["idx"] + 1 < len(st["parents"]):
            nxt = {**st, "idx": st["idx"] + 1, "page": 1}
        elif st.get("pmore"):
            nxt = {**st, "idx": st["idx"] + 1, "page": 1}
        else:
            nxt = None
        return Page(records, nxt, full_scan=True)

    def _get_member(self, obj: str, external_id: str) -> RawRecord | None:
        pid, _, mid = external_id.partition(":")
        if not (pid.isdigit() and mid.isdigit()):
            return None
        parent, related = self._relation(obj)
        fields = ",".join(dict.fromkeys(["id", *self.config.member_fields]))
        try:
            body = self._call("GET", f"/{quote(parent)}/{pid}/{quote(related)}/{mid}", params={"fields": fields})
        except RequestError as exc:
            if exc.vendor_code == "INVALID_DATA":  # the campaign is gone
                return None
            raise
        rows = list_of(body, "data", obj) if body is not None else []
        if not rows or not isinstance(rows[0], dict):
            return None
        r = rows[0]
        data = {"Campaign": {"id": pid}, "Member": {"id": mid}, "Member_Status": r.get("Member_Status"),
                **{k: v for k, v in r.items() if k not in ("id", "Member_Status")}}
        return RawRecord(obj, external_id, data, modified_at=parse_time(r.get("Modified_Time"), obj))

    @staticmethod
    def _ref(value: Any) -> str | None:
        if isinstance(value, dict):
            value = value.get("id")
        return str(value) if isinstance(value, str | int) and str(value).isdigit() else None

    def _write_members(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        """Set member statuses: one ``PUT {parent}/{id}/{related}`` per campaign with ``{"data": [{"id": member,
        "Member_Status": …}]}`` (≤100 per call, the batch maximum). The payload names ``Campaign`` and ``Member``
        (ids or ``{"id": …}`` lookups) and ``Member_Status``."""
        parent, related = self._relation(obj)
        results: list[WriteResult | None] = [None] * len(batch)
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(batch):
            pid, mid = self._ref(item.payload.get("Campaign")), self._ref(item.payload.get("Member"))
            if pid is None or mid is None:
                results[i] = WriteResult(item.key, WriteStatus.FAILED, item.external_id, error=RecordRejectedError(
                    "a campaign member needs Campaign and Member ids (the parent not yet in Zoho?)",
                    code="missing_parent"))
                continue
            groups.setdefault(pid, []).append(i)
        for pid, idxs in groups.items():
            path = f"/{quote(parent)}/{pid}/{quote(related)}"
            rows = [{"id": self._ref(batch[i].payload["Member"]),
                     **{k: v for k, v in batch[i].payload.items() if k not in ("Campaign", "Member", "id")}}
                    for i in idxs]
            try:
                resp = self._call("PUT", path, body={"data": rows}, items=True)
            except RequestError as exc:
                if exc.vendor_code != "INVALID_DATA":
                    raise
                for i in idxs:  # the campaign itself is unknown to Zoho
                    results[i] = WriteResult(batch[i].key, WriteStatus.FAILED, batch[i].external_id,
                                             error=RecordRejectedError(f"campaign {pid}: {exc}", code="invalid_parent"))
                continue
            items = list_of(resp, "data", obj) if resp is not None else []
            raise_for_request_items(items, where=f"PUT {path}")
            if len(items) != len(idxs):
                raise BadResponseError(f"{len(items)} results for {len(idxs)} members", vendor=VENDOR,
                                       where=f"PUT {path}")
            for j, (i, z) in enumerate(zip(idxs, items, strict=True)):
                kind, error = classify_item(z, index=j, where=f"PUT {path}")
                ext = f"{pid}:{rows[j]['id']}"
                results[i] = (WriteResult(batch[i].key, WriteStatus.UPDATED if batch[i].external_id
                                          else WriteStatus.CREATED, ext) if kind == "success"
                              else WriteResult(batch[i].key, WriteStatus.FAILED, batch[i].external_id, error=error))
        return [r for r in results if r is not None]
