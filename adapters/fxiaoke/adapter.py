"""The Fxiaoke (纷享销客 / ShareCRM) adapter: v2 object-data API with corpAccessToken credentials.

Spec: ``docs/vendors/fxiaoke.md``. What the sync engine should know:

* **Reads** (``extract``) filter ``last_modified_time`` from ``since − overlap_seconds`` (epoch ms), order by
  ``last_modified_time`` then ``_id`` ascending, and page by keyset: each page restarts the filter at the last
  record's ``last_modified_time``, skipping the ids already emitted at that boundary (never ``offset`` steps: a
  record edited during the read moves to the end and would shift the next page's first record out of reach;
  ``offset`` stays 0, well inside the documented 10,000 ceiling). A page whose records all share one millisecond
  switches to an ``_id GT`` keyset within that millisecond. The page state is a JSON-serialisable dict.
  Records may repeat across runs (overlap); none are skipped. Whether the service's ``GTE`` really includes
  the boundary millisecond is configuration (``since_boundary``): ``inclusive`` sends ``GTE t``; ``exclusive``
  and ``unknown`` (the default) send ``GTE t−1`` and drop rows before ``t`` themselves, which reads every
  record at ``t`` whether ``GTE`` means ≥ or > (a keyset restart at a millisecond shared across a page edge
  otherwise loses the rest of that millisecond on a service whose ``GTE`` excludes it).
* **Tombstones**: a row with ``life_status == "invalid"`` or ``is_deleted == true`` comes out with
  ``RawRecord.deleted=True``. Whether ``data/query`` shows invalidated rows unasked is unverified, so
  ``extract_deleted`` asks explicitly (``life_status EQ invalid``). Hard-deleted rows vanish without trace.
* **Writes**: Fxiaoke has no upsert. ``external_id`` set → update; otherwise a lookup by ``key_field``
  (``data/query`` with ``EQ``) decides update or create — the lookup is the write-intent check that stops a
  duplicate create after a timed-out create was in fact stored. An unchanged record is not written
  (``UNCHANGED``: it would bump ``last_modified_time`` and echo back). ``owner`` goes through changeOwner.
  ``max_batch_size`` is 1: Fxiaoke writes one record per call, and a retry then repeats exactly one
  record's lookup-and-write. Parallelism comes from ``max_concurrency``.
* ``triggerWorkFlow`` / ``triggerApprovalFlow`` are sent ``false`` unless configured (§9).
* **Duplicate rules (查重规则)**: ``optionInfo.isDuplicateSearch`` (and ``checkDuplicateSearch`` on custom
  creates) follows ``WriteItem.duplicate_search``, else the system's ``duplicate_search`` (default ``false``:
  crmbridge's own key lookup already keeps one record per key, and a tenant rule on fields crmbridge
  minimises or masks, such as names, matches unrelated customers). A refusal by a rule is a FAILED record
  with ``code == "duplicate_rule"`` naming the fields and the masked values involved.
* **Tokens**: one corpAccessToken per process, or with ``token_cache`` one per system, shared by its processes
  through an encrypted file (:mod:`crmbridge.adapters.fxiaoke.auth`); the token endpoint allows 10 calls a minute.
* ``doctor`` (:meth:`FxiaokeAdapter._probe`) checks the token, the page-size limit, the change filter's
  boundary (by reading), clock skew, rate-limit signals and says how to check for a duplicate rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar

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
from crmbridge.adapters.fxiaoke.client import FxiaokeClient
from crmbridge.adapters.fxiaoke.config import MAX_LIMIT, FxiaokeConfig
from crmbridge.adapters.fxiaoke.errors import is_not_found
from crmbridge.adapters.fxiaoke.metadata import field_infos
from crmbridge.canonical.masking import mask
from crmbridge.core.errors import AdapterError, ConfigurationError, RecordRejectedError
from crmbridge.core.logsafe import mask_text
from crmbridge.core.secrets import resolve_secret

__all__ = ["FxiaokeAdapter", "FxiaokeConfig"]

LMT = "last_modified_time"


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _from_ms(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000.0, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _lmt(row: Mapping[str, Any]) -> int:
    try:
        return int(row.get(LMT) or 0)
    except (TypeError, ValueError):
        return 0


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a is not None and b is not None and str(a) == str(b)


def _mask_field(name: str, value: Any) -> str:
    """A value for an error text: masked by what the field holds, never in clear."""
    if value is None or value == "" or value == []:
        return "(empty)"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_mask_field(name, v) for v in value) + "]"
    text, low = str(value), name.lower()
    if low == "name" or "name" in low:
        return mask("name", text)
    if "email" in low:
        return mask("email", text)
    if any(k in low for k in ("mobile", "tel", "phone")):
        masked = mask_text(text)
        return masked if masked != text else mask("generic", text)
    return mask("generic", text)


def _owner_list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


class FxiaokeAdapter(Adapter):
    """Fxiaoke CRM (preset ``…Obj`` and custom ``…__c`` objects)."""

    name: ClassVar[str] = "fxiaoke"
    role: ClassVar[str] = "crm"
    source_system: ClassVar[str | None] = "FXIAOKE"
    mandatory_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "AccountObj": ("name",), "ContactObj": ("name",), "LeadsObj": ("name",),
    }
    Config: ClassVar[type[AdapterConfig]] = FxiaokeConfig
    max_batch_size: ClassVar[int] = 1
    default_concurrency: ClassVar[int] = 1
    supports_upsert: ClassVar[bool] = False   # create/update only: the engine journals write intents
    fills_fields: ClassVar[frozenset[str]] = frozenset({"owner"})   # default_owner, else the operator

    def __init__(self, config: AdapterConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        cfg = self.cfg
        cache = None
        if cfg.token_cache:
            cache = Path(cfg.token_cache)
            cache = cache if cache.is_absolute() or self.base_dir is None else Path(self.base_dir) / cache
        self.client = FxiaokeClient(
            self._http, base_url=cfg.base_url, app_id=cfg.app_id,
            app_secret=lambda: resolve_secret(cfg.app_secret, where="fxiaoke.app_secret"),
            permanent_code=lambda: resolve_secret(cfg.permanent_code, where="fxiaoke.permanent_code"),
            open_user_id=cfg.open_user_id, admin_mobile=cfg.admin_mobile,
            token_calls_per_minute=cfg.token_calls_per_minute, sleep=self._sleep,
            duplicate_codes=cfg.duplicate_rule_codes, token_cache=cache)

    @property
    def cfg(self) -> FxiaokeConfig:
        config = self.config
        if not isinstance(config, FxiaokeConfig):  # only a programming error gets here (Config is FxiaokeConfig)
            raise ConfigurationError(f"fxiaoke adapter given a {type(config).__name__}, not FxiaokeConfig",
                                     where=f"systems.{self.system}")
        return config

    # ------------------------------------------------------------------ reads
    def _api(self, obj: str) -> str:
        """The tenant's object API name for the object name ``obj`` (``objects`` in the configuration)."""
        return self.cfg.objects.get(obj, obj)

    def _to_raw(self, obj: str, row: Mapping[str, Any]) -> RawRecord:
        version = row.get("version")
        deleted = row.get("life_status") == "invalid" or row.get("is_deleted") is True
        return RawRecord(object=obj, external_id=str(row["_id"]), data=dict(row),
                         modified_at=_from_ms(row.get(LMT)), version=None if version is None else str(version),
                         deleted=deleted)

    def _first_state(self, since: datetime | None) -> dict[str, Any]:
        ts = None if since is None else max(0, _ms(since) - int(self.cfg.overlap_seconds * 1000))
        return {"mode": "ts", "ts": ts, "strict": False, "offset": 0, "seen": [], "tail_ts": None, "tail": []}

    def _page(self, obj: str, state: dict[str, Any] | None, since: datetime | None,
              fields: Sequence[str] | None, extra_filters: list[dict[str, Any]]) -> Page:
        st = dict(state) if state is not None else self._first_state(since)
        limit = self.cfg.page_size
        filters = list(extra_filters)
        low: int | None = None  # rows before this time were asked for only to be safe at the boundary
        if st["mode"] == "ts":
            if st["ts"] is not None:
                # time values as strings, the documented form (§4; the Python clients send ints; both work)
                if st["strict"]:
                    filters.append({"field_name": LMT, "operator": "GT", "field_values": [str(st["ts"])]})
                elif self.cfg.since_boundary == "inclusive":
                    filters.append({"field_name": LMT, "operator": "GTE", "field_values": [str(st["ts"])]})
                else:  # exclusive or unknown: one millisecond earlier reads everything at ts either way
                    low = st["ts"]
                    filters.append({"field_name": LMT, "operator": "GTE", "field_values": [str(st["ts"] - 1)]})
            orders = [{"fieldName": LMT, "isAsc": True}, {"fieldName": "_id", "isAsc": True}]
        else:  # a whole page of rows shares one millisecond: _id keyset inside it
            filters += [{"field_name": LMT, "operator": "EQ", "field_values": [str(st["ts"])]},
                        {"field_name": "_id", "operator": "GT", "field_values": [st["last_id"]]}]
            orders = [{"fieldName": "_id", "isAsc": True}]
        projection = sorted({*fields, "_id", LMT, "life_status", "is_deleted"}) if fields else []
        rows = self.client.query(self._api(obj), {"limit": limit, "offset": st["offset"], "filters": filters,
                                       "orders": orders, "fieldProjection": projection})
        kept = rows if low is None else [r for r in rows if _lmt(r) >= low]
        seen = set(st["seen"])
        records = [self._to_raw(obj, r) for r in kept if str(r["_id"]) not in seen]
        # ids emitted at the highest last_modified_time so far: the boundary a keyset restart re-reads
        tail_ts, tail = st["tail_ts"], list(st["tail"])
        for r in kept:
            t = _lmt(r)
            if tail_ts is None or t > tail_ts:
                tail_ts, tail = t, [str(r["_id"])]
            elif t == tail_ts:
                tail.append(str(r["_id"]))
        st.update(tail_ts=tail_ts, tail=tail)
        if len(rows) < limit:
            if st["mode"] == "id":  # the crowded millisecond is done; go on strictly after it
                return Page(records, {"mode": "ts", "ts": st["ts"], "strict": True, "offset": 0, "seen": [],
                                      "tail_ts": None, "tail": []})
            return Page(records, None)
        if not kept:
            # a full page of the extra millisecond before the boundary (a service whose GTE includes it): step over
            # it by offset (it holds only rows already read; offset stays far below the 10,000 ceiling)
            return Page(records, {**st, "offset": st["offset"] + limit})
        # the next page starts again from the newest time read (keyset), not at the next offset: a record edited
        # while the list is read moves to its end, and offsets would shift every later record one place back, so
        # the one at the next page's edge would never be read (and the cursor would pass it)
        last = kept[-1]
        if st["mode"] == "ts" and tail_ts is not None and tail_ts != st["ts"]:
            return Page(records, {"mode": "ts", "ts": tail_ts, "strict": False, "offset": 0, "seen": tail,
                                  "tail_ts": None, "tail": []})
        return Page(records, {"mode": "id", "ts": _lmt(last), "last_id": str(last["_id"]), "offset": 0,
                              "seen": [], "tail_ts": None, "tail": []})

    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None,
                   state: Any) -> Page:
        return self._page(obj, state, since, fields, [])

    def _list_deleted_page(self, obj: str, *, since: datetime | None, state: Any) -> Page:
        inv = [{"field_name": "life_status", "operator": "EQ", "field_values": ["invalid"]}]
        return self._page(obj, state, since, None, inv)

    def _get(self, obj: str, external_id: str) -> RawRecord | None:
        try:
            return self._to_raw(obj, self.client.get(self._api(obj), external_id))
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def _find_all(self, obj: str, key_field: str, key: str) -> list[dict[str, Any]]:
        return self.client.query(self._api(obj), {"limit": 2, "offset": 0, "fieldProjection": [],
                                       "filters": [{"field_name": key_field, "operator": "EQ",
                                                    "field_values": [key]}],
                                       "orders": [{"fieldName": "_id", "isAsc": True}]})

    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        rows = self._find_all(obj, key_field, key)
        return self._to_raw(obj, rows[0]) if rows else None

    # ------------------------------------------------------------------ writes
    def _write_batch(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        out = []
        for item in batch:
            try:
                out.append(self._write_one(obj, item))
            except RecordRejectedError as exc:
                if exc.code == "duplicate_rule":
                    exc = self._duplicate_refusal(obj, item, exc)
                out.append(WriteResult(item.key, WriteStatus.FAILED, item.external_id, error=exc))
            except AdapterError as exc:
                if not is_not_found(exc):
                    raise
                out.append(WriteResult(item.key, WriteStatus.FAILED, item.external_id, error=RecordRejectedError(
                    f"{obj} record to update does not exist (errorCode {exc.vendor_code})",
                    where=f"{obj}._id", code=exc.vendor_code)))
        return out

    def _duplicate_search(self, item: WriteItem) -> bool:
        """The job's choice for this write, else the system's ``duplicate_search``."""
        return self.cfg.duplicate_search if item.duplicate_search is None else item.duplicate_search

    def _duplicate_refusal(self, obj: str, item: WriteItem, exc: RecordRejectedError) -> RecordRejectedError:
        """A duplicate-rule refusal that names the fields involved (masked values only) and what to do."""
        configured = self.cfg.duplicate_rule_fields.get(obj) or []
        fields = list(configured) or list(getattr(exc, "duplicate_fields", []))
        payload = {**item.payload, (item.key_field or self.cfg.key_field): item.key}
        shown = ", ".join(f"{f}={_mask_field(f, payload.get(f))}" for f in fields) if fields else \
            "fields unknown (set duplicate_rule_fields, or read the rule in 管理后台 → 对象管理 → 查重规则)"
        ids = list(getattr(exc, "duplicate_ids", []))
        matched = f" existing {obj} record(s) {', '.join(ids[:5])}" if ids else " an existing record"
        code = getattr(exc, "vendor_code", None)
        err = RecordRejectedError(
            f"Fxiaoke's duplicate rule (查重规则) refused this {obj} write: it matches{matched} on {shown}; "
            f"crmbridge sent isDuplicateSearch={str(self._duplicate_search(item)).lower()} (job duplicate_search="
            f"{'unset, system default' if item.duplicate_search is None else item.duplicate_search}). Set "
            f"duplicate_search: false to let crmbridge's key ({item.key_field or self.cfg.key_field}) decide, or "
            f"change the rule (errorCode {code})",
            where=f"{obj}.{'+'.join(fields) if fields else 'duplicate_rule'}",
            field=fields[0] if fields else None, code="duplicate_rule")
        err.vendor_code = code  # type: ignore[attr-defined]
        err.duplicate_ids = ids  # type: ignore[attr-defined]
        err.duplicate_fields = fields  # type: ignore[attr-defined]
        return err

    def _write_one(self, obj: str, item: WriteItem) -> WriteResult:
        cfg = self.cfg
        key_field = item.key_field or cfg.key_field
        payload = dict(item.payload)
        owner = payload.pop("owner", None)
        flags = {"trigger_workflow": cfg.trigger_workflow, "trigger_approval_flow": cfg.trigger_approval_flow,
                 "duplicate_search": self._duplicate_search(item)}
        current: dict[str, Any] | None = None
        target = item.external_id
        if target is None:
            found = [] if item.known_new else self._find_all(obj, key_field, item.key)
            if len(found) > 1:
                return WriteResult(item.key, WriteStatus.FAILED, error=RecordRejectedError(
                    f"{len(found)} {obj} records share this {key_field}; resolve the duplicate in Fxiaoke",
                    where=f"{obj}.{key_field}", field=key_field, code="ambiguous_key"))
            if not found:
                if payload.get(key_field, item.key) != item.key:  # created under another key: never found again
                    return WriteResult(item.key, WriteStatus.FAILED, error=RecordRejectedError(
                        f"payload {key_field} differs from the write key", where=f"{obj}.{key_field}",
                        field=key_field, code="key_mismatch"))
                fields = {**payload, key_field: item.key}
                fields["owner"] = _owner_list(owner) if owner is not None else [
                    cfg.default_owner or self.client.open_user_id()]
                new_id = self.client.create(self._api(obj), fields, **flags)
                return WriteResult(item.key, WriteStatus.CREATED, new_id, request_id=self.client.last_trace_id())
            current = found[0]
            target = str(current["_id"])
        elif item.expected_version is not None or owner is not None:
            current = self.client.get(self._api(obj), target)
        if current is not None and item.expected_version is not None \
                and str(current.get("version")) != str(item.expected_version):
            return WriteResult(item.key, WriteStatus.CONFLICT, target, version=str(current.get("version")))
        changes = payload if current is None else {k: v for k, v in payload.items()
                                                   if not _same(current.get(k), v)}
        owner_change = owner is not None and (current is None or not _same(current.get("owner"),
                                                                            _owner_list(owner)))
        if not changes and not owner_change:
            return WriteResult(item.key, WriteStatus.UNCHANGED, target,
                               version=None if current is None else str(current.get("version")),
                               modified_at=None if current is None else _from_ms(current.get(LMT)))
        if changes:
            self.client.update(self._api(obj), target, changes, **flags)
        if owner_change:
            self.client.change_owner(self._api(obj), target, _owner_list(owner))
        return WriteResult(item.key, WriteStatus.UPDATED, target, request_id=self.client.last_trace_id())

    def _delete_batch(self, obj: str, external_ids: list[str]) -> list[WriteResult]:
        out = []
        for oid in external_ids:
            try:
                self.client.invalidate(self._api(obj), oid)
                if self.cfg.hard_delete:
                    self.client.delete(self._api(obj), [oid])
                out.append(WriteResult(oid, WriteStatus.DELETED, oid))
            except RecordRejectedError as exc:
                if is_not_found(exc):  # already gone: deleting is idempotent
                    out.append(WriteResult(oid, WriteStatus.DELETED, oid))
                else:
                    out.append(WriteResult(oid, WriteStatus.FAILED, oid, error=exc))
        return out

    # ------------------------------------------------------------------ metadata, tokens
    def _describe(self, obj: str) -> list[FieldInfo]:
        return field_infos(self.client.describe(self._api(obj)))

    def _invalidate_token(self) -> None:
        self.client.invalidate_token()

    # ------------------------------------------------------------------ doctor
    def _probe(self, obj: str) -> list[Finding]:
        """Read-only probes of ``obj`` for ``crmbridge doctor``: token, page size, the change filter's boundary,
        clock skew, rate-limit signals, and how to check for a duplicate rule (the Open API cannot read one)."""
        out: list[Finding] = []
        try:
            tok = self._retrying(self.client.token)
        except Exception as exc:  # noqa: BLE001 - a failed probe is a finding
            return [Finding("authenticated", "fail", f"no corpAccessToken: {type(exc).__name__}: {exc}", obj=obj)]
        out.append(Finding("authenticated", "ok", f"corpAccessToken obtained for corp {tok.corp_id} at "
                                                  f"{self.cfg.base_url}", obj=obj))
        out.append(self._probe_page_size(obj))
        out.append(self._probe_boundary(obj))
        out.extend(self._probe_clock_and_rate(obj))
        out.append(self._probe_duplicate_rule(obj))
        return out

    def _probe_query(self, obj: str, limit: int, filters: list[dict[str, Any]] | None = None,
                     orders: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        info = {"limit": limit, "offset": 0, "filters": filters or [], "fieldProjection": ["_id", LMT],
                "orders": orders or [{"fieldName": LMT, "isAsc": True}, {"fieldName": "_id", "isAsc": True}]}
        return self._retrying(lambda: self.client.query(self._api(obj), info))

    def _probe_page_size(self, obj: str) -> Finding:
        configured = self.cfg.page_size
        try:
            self._probe_query(obj, MAX_LIMIT)
        except AdapterError as exc:
            try:
                self._probe_query(obj, configured)
            except AdapterError as exc2:
                return Finding("page_size", "fail", f"data/query refused limit {configured}: {exc2}", obj=obj)
            return Finding("page_size", "warn", f"data/query refused the documented maximum limit {MAX_LIMIT} "
                                                f"({exc}) but took the configured {configured}", obj=obj)
        return Finding("page_size", "ok", f"data/query accepts limit {MAX_LIMIT} (the documented maximum); "
                                          f"page_size is {configured}", obj=obj)

    def _probe_boundary(self, obj: str) -> Finding:
        """Read one record, then filter ``GTE`` its own time: it comes back on an inclusive service only."""
        configured = self.cfg.since_boundary
        try:
            rows = self._probe_query(obj, 1)
            if not rows:
                return Finding("since_boundary", "info", f"{obj} has no records, so the change filter's boundary "
                                                         f"cannot be read; since_boundary stays {configured}",
                               obj=obj)
            rid, t = str(rows[0]["_id"]), _lmt(rows[0])
            back = self._probe_query(obj, 1, [
                {"field_name": LMT, "operator": "GTE", "field_values": [str(t)]},
                {"field_name": "_id", "operator": "EQ", "field_values": [rid]}])
        except AdapterError as exc:
            return Finding("since_boundary", "fail", f"reading the change filter failed: {exc}", obj=obj)
        detected = "inclusive" if any(str(r.get("_id")) == rid for r in back) else "exclusive"
        what = (f"last_modified_time GTE t {'returns' if detected == 'inclusive' else 'leaves out'} a record "
                f"modified at t: the boundary is {detected}")
        if configured == detected:
            return Finding("since_boundary", "ok", f"{what}, as configured", obj=obj)
        if configured == "unknown":
            return Finding("since_boundary", "info", f"{what}; since_boundary unknown is safe either way "
                                                     f"(it re-reads one millisecond)", obj=obj,
                           config={"since_boundary": detected})
        status = "fail" if configured == "inclusive" else "warn"  # inclusive on an exclusive service loses records
        return Finding("since_boundary", status, f"{what}, but since_boundary is {configured}"
                       + (": records sharing a millisecond across a page edge would be lost" if status == "fail"
                          else ""), obj=obj, config={"since_boundary": detected})

    def _probe_clock_and_rate(self, obj: str) -> list[Finding]:
        headers, received = self.client.last_headers()
        low = {k.lower(): v for k, v in headers.items()}
        out: list[Finding] = []
        date = low.get("date")
        when = None
        if date and received is not None:
            try:
                when = parsedate_to_datetime(date)
            except (TypeError, ValueError, IndexError):
                when = None
        if when is None or received is None:
            out.append(Finding("clock_skew", "info", "the gateway sent no readable Date header; clock skew unknown "
                                                     f"(overlap_seconds {self.cfg.overlap_seconds:g} covers "
                                                     "that much)", obj=obj))
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            skew = received - when.timestamp()  # Date has whole seconds: under 1 s is noise
            margin = self.cfg.overlap_seconds
            status = "ok" if abs(skew) < max(2.0, margin / 2) else "warn"
            out.append(Finding("clock_skew", status, f"this host's clock is {skew:+.1f} s from the gateway's "
                                                     f"(overlap_seconds {margin:g})", obj=obj,
                               config={} if status == "ok" else {"overlap_seconds": round(abs(skew) * 2 + 60)}))
        signals = sorted(k for k in low if "ratelimit" in k.replace("-", "") or k == "retry-after")
        rate = self.cfg.rate_per_second
        documented = 60 / 20  # 60 calls / 20 s per interface (juejin summary; 100 / 20 s by the rate guide)
        if signals:
            detail = f"the gateway sends rate-limit headers: {', '.join(signals)}"
        else:
            detail = ("the gateway sends no rate-limit headers (documented: 60 calls / 20 s per interface, throttling "
                      "answered as errorCode 30004 / 14001)")
        if rate is None or rate > documented:
            return [*out, Finding("rate_limit", "warn", f"{detail}; rate_per_second is {rate}, above the documented "
                                                        f"{documented:g}/s", obj=obj,
                                  config={"rate_per_second": documented})]
        return [*out, Finding("rate_limit", "ok", f"{detail}; rate_per_second {rate:g} is within it", obj=obj)]

    def _probe_duplicate_rule(self, obj: str) -> Finding:
        on = self.cfg.duplicate_search
        return Finding(
            "duplicate_rule", "info",
            f"whether {obj} has a duplicate rule (查重规则) cannot be read through the Open API: check 管理后台 → "
            f"对象管理 → {obj} → 查重规则 (fields and whether it blocks saving). crmbridge sends "
            f"isDuplicateSearch={str(on).lower()} unless a job sets duplicate_search; a rule on names it sends "
            f"minimised or masked refuses unrelated customers (each refusal is a failed record with code "
            f"duplicate_rule)", obj=obj)
