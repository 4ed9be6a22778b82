"""A faithful local Fxiaoke Open API (``crmbridge simulate fxiaoke``), per docs/vendors/fxiaoke.md.

What it reproduces (section numbers of docs/vendors/fxiaoke.md):

* every call is ``POST`` JSON; errors are **HTTP 200** with ``errorCode != 0`` and a ``traceId`` (§1);
  ``thirdTraceId`` is accepted and not required;
* ``/cgi/corpAccessToken/get/V2`` with the lifetime rule: the same token within 6600 s of issue, a new one
  between 6600 s and 7200 s, old and new both valid in the overlap (``Knobs.token_lifetime`` scales 7200 s
  and the 6600 s window with it); at most 10 calls a minute and none concurrent (§2.1); the header-style
  ``/oauth2.0/token`` too (§2.3);
* business calls with legacy body credentials (§2.2) **or** header credentials (``authorization: Bearer``,
  ``x-fs-ea``, ``x-fs-userid``; ids then in employee-id form ``"1000"``) (§2.3); ``/cgi/user/getByMobile`` (§2.4);
* v2 data query/get/create/update/invalid/delete/recover/changeOwner, findOne/findSimple, object
  describe and list, on preset ``…Obj`` and custom ``…__c`` paths (§3–§7), with system fields (§8);
* paging limits: ``limit`` ≤ 100, ``offset`` a multiple of ``limit`` and ≤ 10,000 (§4);
* ``triggerWorkFlow`` / ``triggerApprovalFlow`` default **true**: workflow runs are counted in
  ``sim.workflow_runs`` and an object listed in ``Knobs.extra["approval_flow_objects"]`` gets records
  locked under review when the approval flag is left on (§9).

Choices where the documentation is silent (each marked "unverified" in the code): the business error codes
(``crmbridge.adapters.fxiaoke.errors.BUSINESS_CODES``), the path/object mismatch code (15002), the
token-endpoint throttle code (14001), the per-interface throttle code (30004, ``Knobs.extra["throttle_code"]``
or ``sim.throttle_code``), invalidated rows hidden from ``data/query`` unless a filter names ``life_status``
or ``is_deleted`` (``Knobs.extra["query_shows_invalid"]`` flips it), unknown fields in writes dropped.

Knobs.extra: ``holdings_object`` (API name of the bank's holdings custom object, default ``object_holding__c``;
"" for none), ``app_id``, ``app_secret``, ``permanent_code``, ``contacts`` (ContactObj count, default
``records``), ``throttle_code``, ``token_calls_per_minute`` (10), ``query_shows_invalid`` (False),
``approval_flow_objects`` (()), ``duplicate_rules`` ({}), ``duplicate_rule_code``, ``lmt_filter_exclusive``
(False).

Modes that break convenient assumptions (each also an attribute a test may set on a running simulator):

* **duplicate rule** (``duplicate_rules`` = ``{"AccountObj": [["name"], ["name", "mobile_masked__c"]]}``): the
  tenant's 查重规则, each rule a list of fields that must all be equal (rules OR-ed). A create or update whose
  record matches another live record on every field of a rule is refused, unless the request turned duplicate
  search off (``data.optionInfo.isDuplicateSearch: false``; on custom objects also the top-level
  ``checkDuplicateSearch: false``; both default to searching, as APL's ``duplicateSearch`` does). The live
  code and text of that refusal are unpublished (docs/vendors/fxiaoke.md §5): the simulator answers errorCode
  :data:`~crmbridge.adapters.fxiaoke.errors.DUPLICATE_RULE_CODE` with an English ``errorMessage`` that says
  "duplicate" (what crm-cli recognises), a Chinese ``errorDescription``, and ``data`` in the shape of the
  APL duplicateSearch result (``dataList`` of the matching records, ``matchType: "PRECISE"``,
  ``keepSave: false``).
* **exclusive change filter** (``lmt_filter_exclusive``): ``last_modified_time GTE t`` answers as ``GT t``,
  so records at the boundary millisecond are left out (the other documented reading of the change filter).
* **gateway replies** (:meth:`FxiaokeSimulator.inject_gateway`): what a load balancer in front of the
  gateway answers: 502/503/504 with an HTML, empty or plain-text body (optionally ``Retry-After``), and
  HTTP 200 with an empty, truncated-JSON or HTML body. None of them reaches the API (nothing is applied).
"""

from __future__ import annotations

import bisect
import gc
import itertools
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from crmbridge.adapters.fxiaoke.errors import BUSINESS_CODES, DUPLICATE_RULE_CODE
from crmbridge.adapters.fxiaoke.metadata import CUSTOM_FIELDS, DESCRIBES, holding_describe
from crmbridge.adapters.simulator import Fault, Knobs, Request, Response, Simulator
from crmbridge.canonical.identifiers import uscc_check_digit
from crmbridge.canonical.masking import mask

__all__ = ["CUSTOM_FIELDS", "FxiaokeSimulator"]

LIFETIME = 7200.0
SAME_TOKEN_WINDOW = 6600.0
MAX_LIMIT = 100
OFFSET_CEILING = 10_000
SEED_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MISMATCH_CODE = 15002  # path/object mismatch: unverified, one documented parameter code picked
TOKEN_THROTTLE_CODE = 14001  # token endpoint over 10/min or concurrent: unverified

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红文辉玉兰晨宇浩然子轩欣怡梓涵一诺思远嘉怡"
_CITIES = [("上海市", "浦东新区"), ("北京市", "朝阳区"), ("广东省深圳市", "南山区"), ("浙江省杭州市", "西湖区"),
           ("江苏省南京市", "鼓楼区"), ("四川省成都市", "武侯区")]
_MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158",
                    "159", "166", "177", "180", "181", "186", "187", "188", "189", "199"]
_COMPANY_WORDS = ["华信", "宏达", "锦程", "瑞丰", "恒通", "远景", "新安", "嘉禾", "东方", "金石"]
_COMPANY_KINDS = ["科技有限公司", "贸易有限公司", "实业有限公司", "物流有限公司", "医药有限公司"]


def _pick(seq: Any, bits: int) -> Any:
    return seq[bits % len(seq)]


def _person_name(bits: int) -> str:
    given = _pick(_GIVEN, bits >> 8) + (_pick(_GIVEN, bits >> 16) if bits & 1 else "")
    return _pick(_SURNAMES, bits) + given


class FxError(Exception):
    """An answer in Fxiaoke's error shape (HTTP 200 + errorCode)."""

    def __init__(self, code: int, message: str, description: str = "",
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.description = description or message
        self.extra = dict(extra or {})


def _biz(name: str, message: str) -> FxError:
    return FxError(BUSINESS_CODES[name], message)


class _Table:
    """One object's rows, with a (last_modified_time, _id) index and hash indexes on unique fields."""

    def __init__(self, api: str, describe: dict[str, Any]) -> None:
        self.api = api
        self.describe = describe
        self.rows: dict[str, dict[str, Any]] = {}
        self.index: list[tuple[int, str]] = []
        self.invalid: set[str] = set()  # ids of invalidated rows (hidden from queries by default)
        self.unique = {k: {} for k, f in describe["fields"].items() if f.get("is_unique")}

    def put(self, row: dict[str, Any], old_lmt: int | None = None) -> None:
        rid = row["_id"]
        if old_lmt is not None:
            i = bisect.bisect_left(self.index, (old_lmt, rid))
            if i < len(self.index) and self.index[i] == (old_lmt, rid):
                del self.index[i]
        bisect.insort(self.index, (row["last_modified_time"], rid))
        self.rows[rid] = row
        if row.get("life_status") == "invalid":
            self.invalid.add(rid)
        else:
            self.invalid.discard(rid)

    def remove(self, rid: str) -> None:
        row = self.rows.pop(rid)
        self.invalid.discard(rid)
        i = bisect.bisect_left(self.index, (row["last_modified_time"], rid))
        if i < len(self.index) and self.index[i] == (row["last_modified_time"], rid):
            del self.index[i]
        for fname, idx in self.unique.items():
            if row.get(fname) is not None:
                idx.get(row[fname], set()).discard(rid)

    def index_unique(self, row: dict[str, Any], old: Mapping[str, Any] | None = None) -> None:
        for fname, idx in self.unique.items():
            if old is not None and old.get(fname) is not None:
                idx.get(old[fname], set()).discard(row["_id"])
            if row.get(fname) is not None:
                idx.setdefault(row[fname], set()).add(row["_id"])


# ---------------------------------------------------------------------------------------------- filters
def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


def _cmp_key(rec_val: Any, val: Any) -> tuple[Any, Any]:
    a, b = _num(rec_val), _num(val)
    if a is not None and b is not None and not isinstance(rec_val, str):
        return a, b
    return str(rec_val), str(val)


def _eq(rec_val: Any, val: Any) -> bool:
    if isinstance(rec_val, list):
        return any(_eq(x, val) for x in rec_val)
    if isinstance(rec_val, bool):
        return str(rec_val).lower() == str(val).lower()
    a, b = _cmp_key(rec_val, val)
    return a == b


def _ordered(op: str) -> Callable[[Any, list[Any]], bool]:
    def test(rv: Any, vals: list[Any]) -> bool:
        if rv is None or rv == "":
            return False
        a, b = _cmp_key(rv, vals[0])
        try:
            return {"GT": a > b, "GTE": a >= b, "LT": a < b, "LTE": a <= b}[op]
        except TypeError:
            return False
    return test


def _between(rv: Any, vals: list[Any]) -> bool:
    if rv is None or len(vals) != 2:
        return False
    a, lo = _cmp_key(rv, vals[0])
    _, hi = _cmp_key(rv, vals[1])
    try:
        return lo <= a <= hi
    except TypeError:
        return False


def _empty(rv: Any) -> bool:
    return rv is None or rv == "" or rv == []


def _anyof(rv: Any, vals: list[Any]) -> bool:
    items = rv if isinstance(rv, list) else [rv]
    return any(str(i) == str(v) for i in items for v in vals)


_OPERATORS: dict[str, Callable[[Any, list[Any]], bool]] = {
    "EQ": lambda rv, v: rv is not None and _eq(rv, v[0]),
    "N": lambda rv, v: rv is None or not _eq(rv, v[0]),
    "GT": _ordered("GT"), "GTE": _ordered("GTE"), "LT": _ordered("LT"), "LTE": _ordered("LTE"),
    "LIKE": lambda rv, v: rv is not None and str(v[0]) in str(rv),
    "NLIKE": lambda rv, v: rv is None or str(v[0]) not in str(rv),
    "IS": lambda rv, v: _empty(rv),
    "ISN": lambda rv, v: not _empty(rv),
    "IN": lambda rv, v: rv is not None and any(_eq(rv, x) for x in v),
    "NIN": lambda rv, v: rv is None or not any(_eq(rv, x) for x in v),
    "BETWEEN": _between,
    "NBETWEEN": lambda rv, v: not _between(rv, v),
    "STARTWITH": lambda rv, v: rv is not None and str(rv).startswith(str(v[0])),
    "ENDWITH": lambda rv, v: rv is not None and str(rv).endswith(str(v[0])),
    "CONTAINS": _anyof, "HASANYOF": _anyof,
    "NHASANYOF": lambda rv, v: not _anyof(rv, v),
}
_NEEDS_VALUE = {k for k in _OPERATORS if k not in ("IS", "ISN")}


class FxiaokeSimulator(Simulator):
    """Fxiaoke Open API on loopback. Credentials: ``APP_ID`` / ``APP_SECRET`` / ``PERMANENT_CODE`` (or the
    ``Knobs.extra`` overrides); the operator ``ADMIN_OPEN_USER_ID`` (mobile ``ADMIN_MOBILE``)."""

    vendor = "fxiaoke"
    APP_ID = "FSAID_131d2f0"
    APP_SECRET = "sim-app-secret-0123456789abcdef"  # noqa: S105 - simulator credential, not a secret
    PERMANENT_CODE = "sim-permanent-code-fedcba9876543210"
    CORP_ID = "FSCID_5F3A3DE57C604A00"
    EA = "fssim01"
    ADMIN_OPEN_USER_ID = "FSUID_" + "0123456789abcdef" * 2
    ADMIN_MOBILE = "13800000000"

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(knobs, host=host, port=port)
        ex = self.knobs.extra
        self.app_id = ex.get("app_id", self.APP_ID)
        self.app_secret = ex.get("app_secret", self.APP_SECRET)
        self.permanent_code = ex.get("permanent_code", self.PERMANENT_CODE)
        self.throttle_code = int(ex.get("throttle_code", 30004))
        self.token_calls_per_minute = int(ex.get("token_calls_per_minute", 10))
        self.query_shows_invalid = bool(ex.get("query_shows_invalid", False))
        self.approval_flow_objects = set(ex.get("approval_flow_objects", ()))
        #: object → duplicate rules (each a list of fields that must all match)
        self.duplicate_rules: dict[str, list[list[str]]] = {
            api: [list(r) for r in rules] for api, rules in dict(ex.get("duplicate_rules", {})).items()}
        #: last_modified_time GTE answers as GT (records at the boundary millisecond left out)
        self.lmt_filter_exclusive = bool(ex.get("lmt_filter_exclusive", False))
        #: the code a duplicate-rule refusal carries (set it to stand in for the live service's unpublished one)
        self.duplicate_rule_code = int(ex.get("duplicate_rule_code", DUPLICATE_RULE_CODE))
        self._gateway: list[tuple[str, Response]] = []
        self.lifetime = float(self.knobs.token_lifetime or LIFETIME)
        self.same_window = self.lifetime * SAME_TOKEN_WINDOW / LIFETIME
        self.employees = [
            {"openUserId": self.ADMIN_OPEN_USER_ID, "employeeId": "1000", "name": "系统管理员",
             "mobile": self.ADMIN_MOBILE, "email": "admin@example.com", "status": "NORMAL"},
            {"openUserId": "FSUID_" + "a1b2c3d4e5f60718" * 2, "employeeId": "1001", "name": "客户经理一",
             "mobile": "13900000001", "email": "rm1@example.com", "status": "NORMAL"},
            {"openUserId": "FSUID_" + "0f1e2d3c4b5a6978" * 2, "employeeId": "1002", "name": "客户经理二",
             "mobile": "13900000002", "email": "rm2@example.com", "status": "NORMAL"},
        ]
        self._by_fsuid = {e["openUserId"]: e for e in self.employees}
        self._by_empid = {e["employeeId"]: e for e in self.employees}
        #: token string → (expires at, monotonic); body style and header style
        self.tokens: dict[str, float] = {}
        self._current: dict[str, tuple[str, float]] = {}  # style → (token, issued_at)
        self.token_calls: deque[float] = deque()
        self.token_issued = 0
        self._token_inflight = 0
        self.workflow_runs: Counter[str] = Counter()
        self._trace = itertools.count(1)
        self._ids = random.Random(self.knobs.seed * 7919 + 1)
        self._data_lock = threading.RLock()
        #: the tenant's objects: the preset and bank describes, and the holdings custom object under the API name
        #: the tenant's system generated (knob ``holdings_object``; "" for a tenant without it)
        self.describes: dict[str, dict[str, Any]] = dict(DESCRIBES)
        holdings = str(ex.get("holdings_object", "object_holding__c") or "")
        if holdings:
            self.describes[holdings] = holding_describe(holdings)
        self.tables = {api: _Table(api, d) for api, d in self.describes.items()}
        self._targeted: list[tuple[str, Fault]] = []
        gc_was_on = gc.isenabled()
        gc.disable()  # 200k fresh dicts make the cyclic GC rescan everything, quadratically
        try:
            self._seed()
        finally:
            if gc_was_on:
                gc.enable()

    # ------------------------------------------------------------------ seeding
    def new_id(self) -> str:
        """A 24-hex record id like Fxiaoke's (``5f3a3de57c604a00017dc5ee``)."""
        return f"{self._ids.getrandbits(96):024x}"

    def _seed(self) -> None:
        self.reseed("AccountObj", self.knobs.records)
        self.reseed("ContactObj", int(self.knobs.extra.get("contacts", self.knobs.records)))

    def reseed(self, api: str, n: int) -> list[str]:
        """Replace ``api``'s rows with ``n`` deterministic synthetic ones (AccountObj, ContactObj or a
        custom object); ``last_modified_time`` steps by 1 s every three records (shared milliseconds are
        the normal case for incremental sync). One 128-bit draw per record keeps 100k records fast."""
        rng = random.Random(f"{self.knobs.seed}:{api}")
        with self._data_lock:
            table = self.tables[api] = _Table(api, self.describes[api])
            acc_ids = list(self.tables["AccountObj"].rows) if api == "ContactObj" else []
            offset = 500 if api == "ContactObj" else 0
            for i in range(n):
                h = rng.getrandbits(128)
                row = self._system(h, api, SEED_EPOCH_MS + (i // 3) * 1000 + offset)
                if api == "AccountObj":
                    row.update(self._account_fields(h, rng.getrandbits(128), i))
                elif "holding_key__c" in table.describe["fields"]:   # the holdings custom object
                    accounts = list(self.tables["AccountObj"].rows)
                    family = _pick(["DEPOSIT", "WEALTH", "FUND", "LOAN"], h >> 8)
                    row.update({"name": f"{family} ****{(h >> 16) % 10**4:04d}", "holding_key__c": f"H{i:09d}",
                                "product_type__c": family, "holding_status__c": "ACTIVE", "currency__c": "CNY",
                                "balance_band__c": _pick(["<50K", "50K-500K", "500K-6M"], h >> 40)})
                    if accounts:
                        row["account_id__c"] = accounts[i % len(accounts)]
                else:
                    mobile = _pick(_MOBILE_PREFIXES, h >> 8) + f"{(h >> 16) % 10**8:08d}"
                    row.update({"name": _person_name(h >> 48),
                                "party_id__c": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                "party_type__c": "INDIVIDUAL"})
                    if api == "ContactObj":
                        row.update({"mobile": mobile, "email": f"c{i}@example.com",
                                    "job_title": _pick(["财务总监", "总经理", "采购经理", "个人客户"], h >> 60),
                                    "mobile_masked__c": mobile[:3] + "****" + mobile[-4:]})
                        if acc_ids:
                            row["account_id"] = acc_ids[i % len(acc_ids)]
                self._insert(table, row)
            return list(table.rows)

    def inject_at(self, path_suffix: str, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` requests whose path ends with ``path_suffix`` fail with ``fault``
        (e.g. ``inject_at("/data/create", Fault.TIMEOUT_AFTER_APPLY)``: the lookup before it goes through)."""
        with self.lock:
            self._targeted.extend([(path_suffix, fault)] * times)

    GATEWAY_KINDS = ("502_html", "503_empty", "504_text", "200_empty", "200_truncated", "200_html")

    def inject_gateway(self, kind: str, *, times: int = 1, path_suffix: str = "",
                       retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests whose path ends with ``path_suffix`` (any, if empty) as a gateway
        or load balancer in front of the API does, without reaching it. ``kind``: one of :attr:`GATEWAY_KINDS`;
        ``retry_after`` adds that ``Retry-After`` header."""
        if kind not in self.GATEWAY_KINDS:
            raise ValueError(f"unknown gateway kind {kind!r}; known: {', '.join(self.GATEWAY_KINDS)}")
        status = int(kind[:3])
        body, ctype = {
            "html": (b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
                     b"</center><hr><center>nginx</center></body></html>", "text/html"),
            "empty": (b"", "text/plain"),
            "text": (b"upstream request timeout", "text/plain"),
            "truncated": (b'{"traceId":"E-O.fssim01.1-0","errorCode":0,"errorMessage":"OK","data":{"dataLi',
                          "application/json;charset=UTF-8"),
        }[kind[4:]]
        headers = {"Content-Type": ctype}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        with self.lock:
            self._gateway.extend([(path_suffix, Response(status, body, dict(headers)))] * times)

    def _dispatch(self, req: Request) -> Response | None:
        with self.lock:
            g = next((i for i, (sfx, _) in enumerate(self._gateway) if req.path.endswith(sfx)), None)
            if g is not None:
                _, resp = self._gateway.pop(g)
                self.requests_seen[f"{req.method} {req.path}"] += 1
                return Response(resp.status, resp.body, dict(resp.headers))
            hit = next((i for i, (sfx, _) in enumerate(self._targeted) if req.path.endswith(sfx)), None)
            if hit is not None:
                _, fault = self._targeted[hit]
                del self._targeted[hit]
                self._faults.appendleft((fault, None))
        return super()._dispatch(req)

    def _system(self, h: int, api: str, lmt: int) -> dict[str, Any]:
        owner = [self.employees[h % len(self.employees)]["openUserId"]]
        return {"_id": self.new_id(), "owner": owner, "created_by": [self.ADMIN_OPEN_USER_ID],
                "last_modified_by": [self.ADMIN_OPEN_USER_ID], "create_time": lmt - 86_400_000,
                "last_modified_time": lmt, "life_status": "normal", "lock_status": "0", "is_deleted": False,
                "record_type": "default__c", "version": "1", "object_describe_api_name": api,
                "tenant_id": "590001", "data_own_department": ["1000"]}

    def _account_fields(self, h: int, h2: int, i: int) -> dict[str, Any]:
        city, district = _pick(_CITIES, h >> 4)
        if (h >> 12) % 10 < 3:  # about 30% organisations
            name = city[-3:-1] + _pick(_COMPANY_WORDS, h >> 20) + _pick(_COMPANY_KINDS, h >> 28)
            body = "91" + f"{h2 % 10**6:06d}" + "".join(_pick("0123456789ABCDEFGHJKLMNPQRTUWXY", h2 >> (20 + 5 * k))
                                                       for k in range(9))
            uscc = body + uscc_check_digit(body)
            extra = {"party_type__c": "ORGANISATION", "uniform_social_credit_code": uscc,
                     "uscc__c": mask("uscc", uscc), "segment__c": _pick(["MICRO", "SMALL", "MEDIUM", "LARGE"], h >> 36)}
        else:
            masked_id = f"{1 + (h2 % 6)}*************{(h2 >> 8) % 1000:03d}X"
            extra = {"party_type__c": "INDIVIDUAL", "id_masked__c": masked_id,
                     "segment__c": _pick(["MASS", "AFFLUENT", "WEALTH", "PRIVATE"], h >> 36)}
            name = _person_name(h >> 40)
        return {"name": name, "tel": f"021-{(h >> 64) % 10**8:08d}", "email": f"a{i}@example.com",
                "address": f"{city}{district}某路{1 + (h >> 92) % 999}号", "account_level": _pick("ABCD", h >> 100),
                "industry_level1": _pick(["finance", "it", "manufacturing", "retail", "other"], h >> 104),
                "party_id__c": str(uuid.UUID(int=h2 ^ (h << 1) & ((1 << 128) - 1), version=4)),
                "aum_band__c": _pick(["<50K", "50K-500K", "500K-6M", "6M-30M", ">30M"], h >> 108),
                "rm__c": [self.employees[1 + i % 2]["openUserId"]], "branch__c": f"{city}分行营业部",
                "risk_rating__c": _pick(["LOW", "LOW", "MEDIUM", "HIGH"], h >> 112),
                "lifecycle__c": _pick(["ACTIVE", "ACTIVE", "DORMANT", "ONBOARDING"], h >> 116),
                "consent_marketing__c": bool((h >> 120) & 1), **extra}

    def _insert(self, table: _Table, row: dict[str, Any]) -> None:
        table.put(row)
        table.index_unique(row)

    # ------------------------------------------------------------------ direct access (tests)
    def count(self, api: str, *, include_invalid: bool = False) -> int:
        with self._data_lock:
            rows = self.tables[api].rows.values()
            return sum(1 for r in rows if include_invalid or r.get("life_status") != "invalid")

    def records(self, api: str) -> list[dict[str, Any]]:
        with self._data_lock:
            return [dict(r) for r in self.tables[api].rows.values()]

    def clear(self, api: str) -> None:
        with self._data_lock:
            self.tables[api] = _Table(api, self.describes[api])

    def add_records(self, api: str, rows: Iterable[Mapping[str, Any]], *, lmt: int | None = None) -> list[str]:
        """Insert ``rows`` directly (system fields filled; ``lmt`` forces last_modified_time)."""
        ids = []
        with self._data_lock:
            table = self.tables[api]
            for fields in rows:
                row = self._system(self.rng.getrandbits(32), api, lmt if lmt is not None else self._now_ms())
                row["owner"] = [self.ADMIN_OPEN_USER_ID]
                row.update(fields)
                self._insert(table, row)
                ids.append(row["_id"])
        return ids

    def expire_tokens(self) -> None:
        """Make every issued token invalid at once (what a tenant admin resetting the app does)."""
        with self.lock:
            self.tokens.clear()
            self._current.clear()

    # ------------------------------------------------------------------ envelopes
    def _trace_id(self) -> str:
        return f"E-O.{self.EA}.{next(self._trace)}-{uuid.uuid4().hex[:16]}"

    def ok(self, payload: Mapping[str, Any] | None = None, *, message: str = "OK") -> Response:
        return Response.json({"traceId": self._trace_id(), "errorCode": 0, "errorMessage": message,
                              "errorDescription": "success", **(payload or {})})

    def error(self, err: FxError, *, gateway: bool = False) -> Response:
        trace = f"open-api-gateway-web/{uuid.uuid4().hex[:12]}" if gateway else self._trace_id()
        return Response.json({"errorCode": err.code, "errorMessage": err.message,
                              "errorDescription": err.description, "traceId": trace, **err.extra})

    def fault_response(self, fault: Fault, req: Request) -> Response:
        if fault is Fault.THROTTLE:
            code = TOKEN_THROTTLE_CODE if req.path == "/cgi/corpAccessToken/get/V2" else self.throttle_code
            return self.error(FxError(code, "the api call is over limit", "接口调用超过限制"), gateway=True)
        if fault is Fault.TOKEN_EXPIRED:
            return self.error(FxError(20016, "the cropId,cropAccessToken or authorization is error",
                                      "corpAccessToken不存在或者已经过期"), gateway=True)
        return self.error(FxError(-1, "system busy", "系统繁忙"))

    def banner(self) -> list[str]:
        return [f"fxiaoke simulator serving {self.url}",
                f"  token:  POST {self.url}/cgi/corpAccessToken/get/V2  appId={self.app_id}",
                f"  CRM:    POST {self.url}/cgi/crm/v2/data/query  (custom objects: /cgi/crm/custom/v2/...)",
                f"  operator openUserId={self.ADMIN_OPEN_USER_ID} (mobile {self.ADMIN_MOBILE})  corpId={self.CORP_ID}",
                "  appSecret / permanentCode: FxiaokeSimulator.APP_SECRET / .PERMANENT_CODE (or Knobs.extra)",
                f"  seeded: AccountObj={self.count('AccountObj')} ContactObj={self.count('ContactObj')}"]

    # ------------------------------------------------------------------ dispatch
    def handle(self, req: Request) -> Response:
        if req.method != "POST":
            return Response(405, b"Method Not Allowed", {"Content-Type": "text/plain"})
        try:
            body = req.json()
        except (UnicodeDecodeError, ValueError):
            return self.error(FxError(12004, "the request body is not valid json", "POST的数据包为空"), gateway=True)
        if body is None:
            return self.error(FxError(12004, "post data is empty", "POST的数据包为空"), gateway=True)
        if not isinstance(body, dict):
            return self.error(FxError(32000, "parameter error", "参数错误"), gateway=True)
        try:
            if req.path == "/cgi/corpAccessToken/get/V2":
                return self._token_v2(body)
            if req.path == "/oauth2.0/token":
                return self._oauth_token(body)
            route = self._routes().get(req.path)
            if route is None:
                return Response(404, b'{"status":404,"error":"Not Found"}', {"Content-Type": "application/json"})
            user = self._authenticate(req, body, crm=req.path.startswith("/cgi/crm/"))
            header_style = "authorization" in req.headers
            return route(req.path, body, user, header_style)
        except FxError as err:
            return self.error(err, gateway=err.code in (20016, 20017, 10013, 10010, 20012))

    def _routes(self) -> dict[str, Callable[[str, dict[str, Any], str, bool], Response]]:
        r: dict[str, Callable[[str, dict[str, Any], str, bool], Response]] = {
            "/cgi/user/getByMobile": self._get_by_mobile,
            "/cgi/crm/v2/object/describe": self._describe,
            "/cgi/crm/v2/object/list": self._object_list,
            "/cgi/crm/custom/v2/data/findOne": self._find_one,
            "/cgi/crm/custom/v2/data/findSimple": self._query,
        }
        actions = {"query": self._query, "get": self._get, "create": self._create, "update": self._update,
                   "invalid": self._invalid, "delete": self._delete, "recover": self._recover,
                   "changeOwner": self._change_owner}
        for action, fn in actions.items():
            r[f"/cgi/crm/v2/data/{action}"] = fn
            r[f"/cgi/crm/custom/v2/data/{action}"] = fn
        return r

    # ------------------------------------------------------------------ auth
    def _issue(self, style: str) -> tuple[str, float]:
        """The lifetime rule: same token within the 6600 s window, else a new one (old stays valid)."""
        now = time.monotonic()
        cur = self._current.get(style)
        if cur is not None:
            token, issued = cur
            age = now - issued
            if age < self.same_window and self.tokens.get(token, 0) > now:
                return token, self.lifetime - age
        token = uuid.uuid4().hex.upper()
        self.tokens[token] = now + self.lifetime
        self._current[style] = (token, now)
        self.token_issued += 1
        for t, exp in list(self.tokens.items()):  # forget long-dead tokens
            if exp < now - self.lifetime:
                del self.tokens[t]
        return token, self.lifetime

    def _token_gate(self) -> None:
        now = time.monotonic()
        with self.lock:
            while self.token_calls and now - self.token_calls[0] > 60.0:
                self.token_calls.popleft()
            if len(self.token_calls) >= self.token_calls_per_minute or self._token_inflight > 0:
                raise FxError(TOKEN_THROTTLE_CODE, "the token api is called too frequently", "接口调用超过限制")
            self.token_calls.append(now)
            self._token_inflight += 1

    def _check_app(self, body: Mapping[str, Any]) -> None:
        if not body.get("appId"):
            raise FxError(10001, "the parameter appId is missing", "缺少参数appId")
        if body.get("appId") != self.app_id:
            raise FxError(20006, "appId or appSecret is error", "appId或appSecret错误")
        if body.get("appSecret") != self.app_secret:  # observed for a wrong and a missing appSecret
            raise FxError(10006, "the parameter appSecret is missing or illegal", "缺少参数或参数不合法")

    def _token_v2(self, body: dict[str, Any]) -> Response:
        self._token_gate()
        try:
            self._check_app(body)
            if not body.get("permanentCode"):
                raise FxError(10012, "the parameter permanentCode is missing", "缺少参数permanentCode")
            if body.get("permanentCode") != self.permanent_code:
                raise FxError(20015, "permanentCode is error", "永久授权码错误")
            with self.lock:
                token, expires = self._issue("body")
            return self.ok({"corpAccessToken": token, "corpId": self.CORP_ID, "expiresIn": int(expires)},
                           message="success")
        except FxError as err:
            return self.error(err, gateway=True)
        finally:
            with self.lock:
                self._token_inflight -= 1

    def _oauth_token(self, body: dict[str, Any]) -> Response:
        self._token_gate()
        try:
            grant = body.get("grantType")
            if grant == "refresh_token":
                if body.get("refreshToken") != f"R{self.permanent_code}":
                    raise FxError(20016, "refreshToken is error", "refreshToken不存在或者已经过期")
            elif grant == "app_secret":
                self._check_app(body)
                if body.get("permanentCode") != self.permanent_code:
                    raise FxError(20015, "permanentCode is error", "永久授权码错误")
            else:
                raise FxError(15002, "the parameter grantType is illegal", "参数不合法")
            with self.lock:
                token, expires = self._issue("header")
            return self.ok({"openUserId": self.CORP_ID, "accessToken": token, "expiresIn": int(expires),
                            "appId": self.app_id, "ea": self.EA, "refreshToken": f"R{self.permanent_code}"},
                           message="success")
        except FxError as err:
            return self.error(err, gateway=True)
        finally:
            with self.lock:
                self._token_inflight -= 1

    def _valid_token(self, token: Any) -> bool:
        with self.lock:
            return isinstance(token, str) and self.tokens.get(token, 0.0) > time.monotonic()

    def _authenticate(self, req: Request, body: Mapping[str, Any], *, crm: bool) -> str:
        """The operator's FSUID for a business call, or an FxError (§2.2, §2.3)."""
        auth = req.headers.get("authorization")
        if auth is not None:  # header style takes precedence (mixing styles: gateway behaviour unverified)
            token = auth[7:] if auth.startswith("Bearer ") else ""
            emp = self._by_empid.get(req.headers.get("x-fs-userid", ""))
            if not self._valid_token(token) or req.headers.get("x-fs-ea") != self.EA or emp is None:
                raise FxError(20016, "the cropId,cropAccessToken or authorization is error",
                              "corpAccessToken不存在或者已经过期")
            return str(emp["openUserId"])
        if not body.get("corpAccessToken"):
            raise FxError(20017, "corpAccessToken为必填项，不能为空", "corpId未找到")
        if not self._valid_token(body.get("corpAccessToken")) or body.get("corpId") != self.CORP_ID:
            raise FxError(20016, "the cropId,cropAccessToken or authorization is error",
                          "corpAccessToken不存在或者已经过期")
        if not crm:
            return self.ADMIN_OPEN_USER_ID
        user = body.get("currentOpenUserId")
        if not user:
            raise FxError(10010, "currentOpenUserId 不能为空", "缺少参数openUserId")  # code unverified
        if user not in self._by_fsuid:
            raise FxError(20012, "openUserId not found", "openUserId未找到")
        return str(user)

    def _ids_out(self, row: Mapping[str, Any], header_style: bool) -> dict[str, Any]:
        out = dict(row)
        if header_style:  # header style speaks plain employee ids ("1000")
            for k in ("owner", "created_by", "last_modified_by"):
                if isinstance(out.get(k), list):
                    out[k] = [self._by_fsuid[u]["employeeId"] if u in self._by_fsuid else u for u in out[k]]
        return out

    def _user_in(self, uid: Any) -> str:
        s = str(uid)
        if s in self._by_fsuid:
            return s
        if s in self._by_empid:
            return str(self._by_empid[s]["openUserId"])
        if s == "-10000":
            return s
        raise _biz("INVALID_VALUE", "员工不存在")

    # ------------------------------------------------------------------ directory
    def _get_by_mobile(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        mobile = body.get("mobile")
        if not mobile:
            raise FxError(32000, "the parameter mobile is missing", "参数错误")
        return self.ok({"empList": [dict(e) for e in self.employees if e["mobile"] == str(mobile)]},
                       message="success")

    # ------------------------------------------------------------------ object helpers
    def _table(self, path: str, api: Any) -> _Table:
        if not isinstance(api, str) or not api:
            raise FxError(32000, "dataObjectApiName 不能为空", "参数错误")
        table = self.tables.get(api)
        if table is None:
            raise _biz("OBJECT_NOT_FOUND", f"对象[{api}]不存在")
        custom_path = "/cgi/crm/custom/" in path
        if custom_path != api.endswith("__c") and not path.endswith(("/findOne", "/findSimple")):
            raise FxError(MISMATCH_CODE, "dataObjectApiName does not match the interface path "
                                         "(custom objects only on /cgi/crm/custom/v2)", "参数不合法")
        return table

    @staticmethod
    def _data(body: Mapping[str, Any]) -> dict[str, Any]:
        data = body.get("data")
        if not isinstance(data, dict):
            raise FxError(32000, "the parameter data is missing", "参数错误")
        return data

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    # ------------------------------------------------------------------ query
    def _compile_filters(self, filters: Any) -> list[tuple[str, str, list[Any]]]:
        if filters is None:
            return []
        if not isinstance(filters, list):
            raise FxError(15002, "filters must be a list", "参数不合法")
        out = []
        for f in filters:
            if not isinstance(f, dict) or not isinstance(f.get("field_name"), str):
                raise FxError(15002, "filter needs field_name (snake_case)", "参数不合法")
            op = f.get("operator")
            if op not in _OPERATORS:
                raise FxError(15002, f"operator {op} is not supported", "参数不合法")
            vals = f.get("field_values", [])
            if not isinstance(vals, list):
                raise FxError(15002, "field_values must be a list", "参数不合法")
            if op in _NEEDS_VALUE and not vals:
                raise FxError(15002, "field_values is empty", "参数不合法")
            if op == "GTE" and f["field_name"] == "last_modified_time" and self.lmt_filter_exclusive:
                op = "GT"  # the exclusive reading of the change filter
            out.append((f["field_name"], op, vals))
        return out

    def _search(self, table: _Table, sqi: Any, *, want_total: bool) -> tuple[list[dict[str, Any]], int, int, int]:
        if not isinstance(sqi, dict):
            raise FxError(32000, "searchQueryInfo is empty", "参数错误")  # code unverified
        limit, offset = sqi.get("limit", 20), sqi.get("offset", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise FxError(15002, f"limit must be between 1 and {MAX_LIMIT}", "参数不合法")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise FxError(15002, "offset is illegal", "参数不合法")
        if offset > OFFSET_CEILING:  # deep-paging doc page (code 10013 as shown there)
            raise FxError(10013, "offset out of range 10000", "offset 不能超过10000")
        if offset % limit:
            raise FxError(15002, "offset must be a multiple of limit", "参数不合法")
        filters = self._compile_filters(sqi.get("filters"))
        orders = sqi.get("orders") or []
        if not isinstance(orders, list) or not all(isinstance(o, dict) and isinstance(o.get("fieldName"), str)
                                                   for o in orders):
            raise FxError(15002, "orders need fieldName (camelCase) and isAsc", "参数不合法")
        names = {f[0] for f in filters}
        show_invalid = self.query_shows_invalid or bool(names & {"life_status", "is_deleted"})
        rows = table.rows
        # candidates: a unique-field EQ uses its hash index; a last_modified_time bound uses the sorted index
        cand: Iterable[str]
        uniq = next(((n, v[0]) for n, op, v in filters if op == "EQ" and n in table.unique), None)
        lo, hi = 0, len(table.index)
        for n, op, v in filters:
            if n == "last_modified_time" and op in ("GT", "GTE", "EQ", "BETWEEN", "LT", "LTE"):
                x = _num(v[0])
                if x is None:
                    continue
                if op in ("GT", "GTE", "EQ", "BETWEEN"):
                    lo = max(lo, bisect.bisect_left(table.index, (int(x) - (0 if op != "GT" else -1), "")))
                if op in ("EQ", "LT", "LTE"):
                    hi = min(hi, bisect.bisect_left(table.index, (int(x) + (0 if op == "LT" else 1), "")))
                if op == "BETWEEN" and len(v) == 2 and _num(v[1]) is not None:
                    hi = min(hi, bisect.bisect_left(table.index, (int(_num(v[1]) or 0) + 1, "")))
        if uniq is not None:
            cand = sorted(table.unique[uniq[0]].get(str(uniq[1]), set()),
                          key=lambda i: (rows[i]["last_modified_time"], i))
        else:
            cand = (rid for _, rid in itertools.islice(table.index, lo, max(lo, hi)))
        wanted = [(o["fieldName"], o.get("isAsc", True) is not False) for o in orders]
        natural = not orders or wanted in ([("last_modified_time", True)],
                                           [("last_modified_time", True), ("_id", True)])
        one_ms = next((int(_num(v[0]) or 0) for n, op, v in filters if n == "last_modified_time" and op == "EQ"
                       and _num(v[0]) is not None), None)
        if uniq is None and one_ms is not None and wanted == [("_id", True)]:
            # inside one millisecond the (time, _id) index is already in _id order: the _id keyset is a slice
            natural = True
            after = next((str(v[0]) for n, op, v in filters if n == "_id" and op == "GT"), None)
            if after is not None:
                lo = max(lo, bisect.bisect_right(table.index, (one_ms, after)))
                cand = (rid for _, rid in itertools.islice(table.index, lo, max(lo, hi)))
        exact_by_index = {"GT", "GTE", "LT", "LTE", "EQ", "BETWEEN"}
        residual = [(n, op, v) for n, op, v in filters
                    if not (n == "last_modified_time" and op in exact_by_index and all(_num(x) is not None for x in v))
                    and not (n == "_id" and op == "GT" and one_ms is not None and wanted == [("_id", True)])]
        if uniq is None and natural and not residual and (show_invalid or not table.invalid):
            # every filter is answered by the sorted index: the page is a slice (fast deep paging)
            span = table.index[lo + offset:min(hi, lo + offset + limit)] if hi > lo + offset else []
            return [rows[rid] for _, rid in span], (max(0, hi - lo) if want_total else 0), offset, limit
        tests = [(n, _OPERATORS[op], v) for n, op, v in filters]

        def match(row: Mapping[str, Any]) -> bool:
            if not show_invalid and row.get("life_status") == "invalid":
                return False
            return all(fn(row.get(n), v) for n, fn, v in tests)

        need = offset + limit
        found: list[dict[str, Any]] = []
        total = 0
        for rid in cand:
            row = rows[rid]
            if match(row):
                total += 1
                if not natural or len(found) < need:
                    found.append(row)
                elif not want_total:
                    break
        if not natural:
            for o in reversed(orders):
                key = o["fieldName"]
                found.sort(key=lambda r, k=key: (r.get(k) is None, _sort_key(r.get(k))),
                           reverse=o.get("isAsc", True) is False)
        return found[offset:offset + limit], (total if want_total else 0), offset, limit

    def _project(self, row: Mapping[str, Any], projection: Any, hs: bool) -> dict[str, Any]:
        out = self._ids_out(row, hs)
        if isinstance(projection, list) and projection:
            keep = set(projection) | {"_id"}
            out = {k: v for k, v in out.items() if k in keep}
        return {k: v for k, v in out.items() if v is not None}  # includeNull defaults to false

    def _want_total(self, body: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
        if data.get("find_explicit_total_num") is False or body.get("returnTotalNum") == 3:
            return False
        return body.get("need_return_count_num", True) is not False

    def _query(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        with self._data_lock:
            table = self._table(path, data.get("dataObjectApiName"))
            sqi = data.get("search_query_info")
            page, total, offset, limit = self._search(table, sqi, want_total=self._want_total(body, data))
            proj = sqi.get("fieldProjection") if isinstance(sqi, dict) else None
            rows = [self._project(r, proj, hs) for r in page]
        return self.ok({"data": {"dataList": rows, "total": total, "offset": offset, "limit": limit}})

    def _find_one(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        with self._data_lock:
            table = self._table(path, data.get("dataObjectApiName"))
            sqi = dict(data.get("search_query_info") or {})
            sqi.update(limit=1, offset=0)
            page, _, _, _ = self._search(table, sqi, want_total=False)
            rec = self._project(page[0], data.get("field_projection"), hs) if page else None
        return self.ok({"data": {"objectData": rec}})  # response shape beyond objectData unverified

    def _get(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        with self._data_lock:
            table = self._table(path, data.get("dataObjectApiName"))
            row = table.rows.get(str(data.get("objectDataId")))
            if row is None:
                raise _biz("NOT_FOUND", "数据不存在或已被删除")
            return self.ok({"data": self._project(row, None, hs)})

    # ------------------------------------------------------------------ writes
    def _validate(self, table: _Table, fields: Mapping[str, Any], *, creating: bool,
                  rid: str | None = None) -> dict[str, Any]:
        """Checked and normalised values; unknown and system fields are dropped (unverified: ignored)."""
        desc = table.describe["fields"]
        clean: dict[str, Any] = {}
        for api, value in fields.items():
            f = desc.get(api)
            if f is None or f.get("define_type") == "system" or f["type"] in ("auto_number", "formula"):
                continue
            if value is None or value == "":
                clean[api] = None
                continue
            clean[api] = self._check_value(f, value)
        if creating:
            missing = [a for a, f in desc.items() if f.get("is_required") and f.get("define_type") != "system"
                       and clean.get(a) is None]
            if missing:
                raise _biz("REQUIRED_MISSING", f"必填字段[{missing[0]}]未填写")
        for api in table.unique:
            v = clean.get(api)
            if v is not None and any(o != rid and table.rows[o].get("life_status") != "invalid"
                                     for o in table.unique[api].get(v, ())):
                raise _biz("DUPLICATE", f"字段[{api}]的值已存在，不能重复")
        return clean

    def _check_value(self, f: Mapping[str, Any], value: Any) -> Any:
        t, api = f["type"], f["api_name"]
        bad = _biz("INVALID_VALUE", f"字段[{api}]的值不合法")
        if t in ("text", "long_text", "phone_number", "email", "url", "country", "province", "city", "district"):
            if not isinstance(value, str):
                raise bad
            if f.get("max_length") and len(value) > f["max_length"]:
                raise _biz("INVALID_VALUE", f"字段[{api}]超过最大长度{f['max_length']}")
            if t == "email" and "@" not in value:
                raise bad
            return value
        if t in ("number", "currency", "percentile"):
            if isinstance(value, bool) or _num(value) is None:
                raise bad
            return str(value)
        if t in ("date", "date_time", "time"):
            if isinstance(value, bool) or _num(value) is None:
                raise bad
            return int(float(value))
        if t == "true_or_false":
            if not isinstance(value, bool):
                raise bad
            return value
        if t in ("select_one", "record_type"):
            if str(value) not in {o["value"] for o in f.get("options", [])}:
                raise bad
            return str(value)
        if t == "select_many":
            if not isinstance(value, list) or any(str(v) not in {o["value"] for o in f.get("options", [])}
                                                  for v in value):
                raise bad
            return [str(v) for v in value]
        if t in ("employee", "department"):
            if not isinstance(value, list):  # a single employee is still a list
                raise bad
            return [self._user_in(v) for v in value] if t == "employee" else [str(v) for v in value]
        if t in ("object_reference", "master_detail"):
            target = self.tables.get(f.get("target_api_name", ""))
            if not isinstance(value, str) or (target is not None and value not in target.rows):
                raise _biz("INVALID_VALUE", f"字段[{api}]关联的数据不存在")
            return value
        return value

    def _triggers(self, body: Mapping[str, Any], api: str, row: dict[str, Any]) -> None:
        if body.get("triggerWorkFlow", True) is not False:  # documented default: true
            self.workflow_runs[api] += 1
        if body.get("triggerApprovalFlow", True) is not False and api in self.approval_flow_objects:
            row["life_status"], row["lock_status"] = "under_review", "1"

    def _create(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        od = data.get("object_data")
        if not isinstance(od, dict):
            raise FxError(32000, "object_data 不能为空", "参数错误")
        with self._data_lock:
            table = self._table(path, od.get("dataObjectApiName"))
            clean = self._validate(table, od, creating=True)
            now = self._now_ms()
            row = self._system(0, table.api, now)
            row.update(created_by=[user], last_modified_by=[user], create_time=now)
            owner = od.get("owner")
            if owner is not None:
                if not isinstance(owner, list) or not owner:
                    raise _biz("INVALID_VALUE", "字段[owner]的值不合法")
                row["owner"] = [self._user_in(o) for o in owner]
            else:
                row["owner"] = [user]
            if od.get("record_type") not in (None, "default__c"):
                raise _biz("INVALID_VALUE", "字段[record_type]的值不合法")
            row.update({k: v for k, v in clean.items() if v is not None})
            self._check_duplicate_rules(table, row, path, body, data)
            self._triggers(body, table.api, row)
            self._insert(table, row)
        return self.ok({"dataId": row["_id"]})

    def _update(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        od = data.get("object_data")
        if not isinstance(od, dict):
            raise FxError(32000, "object_data 不能为空", "参数错误")
        with self._data_lock:
            table = self._table(path, od.get("dataObjectApiName"))
            rid = str(od.get("_id") or "")
            old = table.rows.get(rid)
            if old is None or old.get("life_status") == "invalid":
                raise _biz("NOT_FOUND", "数据不存在或已作废")
            if old.get("lock_status") == "1" and not data.get("skipDataStatusValidate"):
                raise _biz("LOCKED", "数据已锁定，不能编辑")
            clean = self._validate(table, od, creating=False, rid=rid)  # owner is ignored: use changeOwner
            row = dict(old)
            for k, v in clean.items():  # PATCH semantics (assumed in docs/vendors/fxiaoke.md §5)
                if v is None:
                    row.pop(k, None)
                else:
                    row[k] = v
            self._check_duplicate_rules(table, row, path, body, data)
            self._touch(row, user)
            self._triggers(body, table.api, row)
            table.put(row, old_lmt=old["last_modified_time"])
            table.index_unique(row, old)
        return self.ok({"dataId": rid})

    def _check_duplicate_rules(self, table: _Table, row: Mapping[str, Any], path: str, body: Mapping[str, Any],
                               data: Mapping[str, Any]) -> None:
        """The tenant's duplicate rules (查重规则) on a create or update, unless the request turned search off."""
        rules = self.duplicate_rules.get(table.api)
        if not rules:
            return
        opts = data.get("optionInfo") if isinstance(data.get("optionInfo"), dict) else {}
        if opts.get("isDuplicateSearch", True) is False:
            return
        if "/cgi/crm/custom/" in path and body.get("checkDuplicateSearch", True) is False:
            return
        for rule in rules:
            values = [row.get(f) for f in rule]
            if any(_empty(v) for v in values):
                continue
            dups = [r for r in table.rows.values() if r["_id"] != row["_id"] and r.get("life_status") != "invalid"
                    and all(r.get(f) == v for f, v in zip(rule, values, strict=True))]
            if dups:
                shown = [{k: d.get(k) for k in ("_id", "name", *rule)} for d in dups[:5]]
                raise FxError(self.duplicate_rule_code,
                              "the data is duplicated with existing data by the duplicate rule",
                              "查重规则校验不通过：存在重复数据，不允许保存",
                              extra={"data": {"dataList": shown, "matchType": "PRECISE", "keepSave": False}})

    def _touch(self, row: dict[str, Any], user: str) -> None:
        row["last_modified_time"] = max(self._now_ms(), row["last_modified_time"])
        row["last_modified_by"] = [user]
        row["version"] = str(int(row.get("version") or 0) + 1)

    def _id_list(self, data: Mapping[str, Any]) -> list[str]:
        ids = data.get("idList")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise FxError(32000, "idList 不能为空", "参数错误")
        return ids

    def _invalid(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        rid = data.get("object_data_id")
        if not isinstance(rid, str) or not rid:  # v2 takes a single id string
            raise FxError(32000, "object_data_id 不能为空", "参数错误")
        with self._data_lock:
            table = self._table(path, data.get("dataObjectApiName"))
            old = table.rows.get(rid)
            if old is None:
                raise _biz("NOT_FOUND", "数据不存在或已被删除")
            if old.get("life_status") != "invalid":
                row = dict(old, life_status="invalid", life_status_before_invalid=old.get("life_status"))
                self._touch(row, user)
                table.put(row, old_lmt=old["last_modified_time"])
        return self.ok()

    def _delete(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        ids = self._id_list(data)
        with self._data_lock:
            table = self._table(path, data.get("dataObjectApiName"))
            for rid in ids:
                row = table.rows.get(rid)
                if row is None:
                    raise _biz("NOT_FOUND", "数据不存在或已被删除")
                if row.get("life_status") != "invalid":
                    raise _biz("NOT_INVALIDATED", "请先作废数据再删除")
            for rid in ids:
                table.remove(rid)
        return self.ok()

    def _recover(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        ids = self._id_list(data)
        with self._data_lock:
            table = self._table(path, data.get("dataObjectApiName"))
            for rid in ids:
                old = table.rows.get(rid)
                if old is None:
                    raise _biz("NOT_FOUND", "数据不存在或已被删除")
                row = dict(old, life_status=old.get("life_status_before_invalid") or "normal")
                row.pop("life_status_before_invalid", None)
                self._touch(row, user)
                table.put(row, old_lmt=old["last_modified_time"])
        return self.ok()

    def _change_owner(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = self._data(body)
        items = data.get("Data")  # capital D (§6)
        if not isinstance(items, list) or not items:
            raise FxError(32000, "Data 不能为空", "参数错误")
        with self._data_lock:
            table = self._table(path, data.get("dataObjectApiName"))
            for it in items:
                if not isinstance(it, dict):
                    raise FxError(32000, "Data 参数错误", "参数错误")
                owner = it.get("ownerId")
                if isinstance(owner, str):  # the docs' string form "[1000]"
                    owner = [o.strip() for o in owner.strip("[]").split(",") if o.strip()]
                if not isinstance(owner, list) or not owner:
                    raise _biz("INVALID_VALUE", "字段[ownerId]的值不合法")
                old = table.rows.get(str(it.get("objectDataId")))
                if old is None or old.get("life_status") == "invalid":
                    raise _biz("NOT_FOUND", "数据不存在或已作废")
                row = dict(old, owner=[self._user_in(o) for o in owner])
                self._touch(row, user)
                table.put(row, old_lmt=old["last_modified_time"])
        return self.ok()

    # ------------------------------------------------------------------ metadata
    def _describe(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        api = body.get("apiName") or data.get("apiName")  # clients send it top-level, docs nest it
        if not api:
            raise FxError(32000, "apiName 不能为空", "参数错误")
        desc = self.describes.get(str(api))
        if desc is None:
            raise _biz("OBJECT_NOT_FOUND", f"对象[{api}]不存在")
        return self.ok({"data": {"describe": desc}})

    def _object_list(self, path: str, body: dict[str, Any], user: str, hs: bool) -> Response:
        objs = [{"describeApiName": a, "describeDisplayName": d["display_name"], "defineType": d["define_type"],
                 "isActive": True} for a, d in self.describes.items()]
        return self.ok({"data": {"objects": objs}})


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (0, int(v))
    if isinstance(v, int | float):
        return (0, v)
    if isinstance(v, list):
        return (1, ",".join(map(str, v)))
    return (1, str(v))
