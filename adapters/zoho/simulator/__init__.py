"""A faithful Zoho CRM simulator: the accounts server's token endpoint and the ``/crm/{v}`` REST API.

Serves, on loopback, the paths, status codes, headers and bodies of docs/vendors/zoho.md: the refresh-token grant
(query and form parameters merged, HTTP-200 ``error`` bodies, the 10-per-10-minutes throttle), record lists (mandatory
``fields`` on v7+, ≤50 fields, ``per_page`` ≤200, ``page`` to record 2000 then bound ``page_token`` to 100,000,
``sort_by``/``sort_order``, ``If-Modified-Since`` with 304, 204 without body or Content-Type), single GET,
insert/update/upsert with per-record results (201/200/207/400/412), field validation from the metadata,
``/deleted``, delete, search, COQL, ``/settings/modules``, ``/settings/fields``, ``/settings/related_lists``,
``/org``, ``/users``, the custom holdings module, Cases, Campaigns and their Contacts related list, edition
concurrency (429 without Retry-After), ``X-API-CREDITS-REMAINING`` and token expiry.

Knobs (``Knobs.extra``), with their defaults:

=================== =========== ===================================================================
key                 default     meaning
=================== =========== ===================================================================
edition             enterprise  sets the concurrency limit (5/10/15/20/25) unless concurrency_limit is set
ims_boundary        exclusive   If-Modified-Since keeps records modified after (>) the time ("exclusive") or at
                                or after it (>=, "inclusive"); Zoho does not document which (docs/vendors/zoho.md §3.4)
ims_inclusive       False       legacy spelling of ims_boundary: inclusive
clock_skew          0           seconds the Date header is ahead of the real time (negative: behind)
api_domain          own URL     the api_domain the token response names (another DC's: a wrong accounts_url)
missing_fields      (none)      API names this org lacks (comma-separated): not in the metadata, refused on writes
max_per_page        200         largest per_page a record list accepts (INVALID_DATA past it)
ids_limit           100         most record ids one ``GET /{module}?ids=`` accepts (LIMIT_EXCEEDED past it)
deleted_error_shape wrapped     bad ``/deleted?type=``: "wrapped" in ``data[]`` with HTTP 400 (Zoho's OAS examples)
                                or "top" (a top-level error object, as the OAS's API_Exception schema allows)
token_limit         10          token requests per refresh token per token_window seconds (0 = no limit)
token_window        600         the throttle window, seconds
credits             100000      API credits per day; X-API-CREDITS-REMAINING once half is used
accounts            records//4  Accounts seeded (``records`` seeds Contacts)
unknown_fields      reject      "reject" (INVALID_DATA) or "ignore" unknown API names on writes
strict_picklists    False       reject picklist values not in the metadata
bearer              AUTHENTICATION_FAILURE  answer to "Bearer" tokens (or INVALID_TOKEN, or accept)
legacy_expires      False       token response with expires_in_sec and expires_in in ms
search_lag          0           seconds before a written record is visible to search
pagination_limit    100000      records reachable by one page/page_token chain (PAGINATION_LIMIT_EXCEEDED)
holdings_module     Holdings    API name of the bank's custom holdings module ("CustomModule1" when created without
                                one; "" for an org without it); lookups Contact → Contacts, Account → Accounts
member_statuses     (see text)  the org's campaign member statuses, comma-separated (others: INVALID_DATA)
member_status_in_l. True        ``member_status_in_list``: related-list GETs return ``Member_Status`` per member
related_ims         record      If-Modified-Since on a related list compares the member record's Modified_Time
                                ("record") or the relation's own change time ("relation"); Zoho does not say
=================== =========== ===================================================================

Gateway replies (a load balancer in front of Zoho, not Zoho): :meth:`ZohoSimulator.inject_gateway` makes the next
matching requests answer an HTML, plain-text, empty or truncated-JSON body with any status (502/503/504, or 200 for an
empty or cut body), optionally with ``Retry-After``. The ``Date`` header is ``clock_skew`` seconds off the real time
(knob or attribute), for clock-skew probes.

Deterministic choices where Zoho is unverified: upsert matching several records updates the oldest id; upsert
of all-new records answers 200; an unknown id on single GET answers 204; ``page_token`` keeps an offset.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from crmbridge.adapters.simulator import Fault, Knobs, Request, Response, Simulator, _Handler
from crmbridge.adapters.zoho.metadata import (
    AUM_BANDS,
    MODULES,
    PRODUCT_TYPES,
    FieldDef,
    ModuleDef,
    holdings_module,
)

__all__ = ["ZohoSimulator"]

CST = timezone(timedelta(hours=8))
EDITIONS = {"free": 5, "standard": 10, "professional": 15, "enterprise": 20, "ultimate": 25}
USER = {"name": "CRM Integration", "id": "5725767000000411001", "email": "crm.integration@bank.example.cn"}
ORG_ID = "5725767000000000101"
ZGID = "710002345"
DISCRETE_LIMIT = 2000
TOKEN_LIMIT = 100_000
#: the org's campaign member statuses (knob ``member_statuses``, comma-separated): Zoho's values are org data and
#: not documented as a list; these are the ones seen in Zoho's own samples and UI (docs/vendors/zoho.md §15)
MEMBER_STATUSES = ("Planning", "Active", "Invited", "Sent", "Received", "Opened", "Responded", "Bounced", "Opted Out")
_VERSION = re.compile(r"^v(?:2|2\.1|[3-9])$")
_MAX = 10**20

_FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国红梅玉兰文斌志辉宇浩晨欣怡子涵梓萱雨轩一诺嘉"
_CITIES = ("北京市", "上海市", "广州市", "深圳市", "杭州市", "南京市", "成都市", "武汉市", "西安市", "苏州市")
_WORDS = ("华信", "宏达", "鼎盛", "恒通", "瑞丰", "金桥", "远航", "新锐", "中联", "天成", "博远", "汇智")
_TRADES = ("科技", "贸易", "实业", "制造", "投资", "物流", "建设", "医药")
_MOBILE_PREFIX = ("138", "139", "150", "151", "186", "187", "135", "136", "188", "177", "199")


_BIRTH_DATES = tuple((date(1950, 1, 1) + timedelta(days=n)).isoformat() for n in range(0, 20000, 7))
_REVIEW_DATES = tuple((date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(730))


class _Draw:
    """Cheap deterministic choices from one big random integer (seeding 100k records fast)."""

    __slots__ = ("v",)

    def __init__(self, v: int) -> None:
        self.v = v

    def int(self, n: int) -> int:
        self.v, r = divmod(self.v, n)
        return r

    def pick(self, seq: Any) -> Any:
        return seq[self.int(len(seq))]


#: bodies a load balancer or gateway answers with (never Zoho's JSON)
GATEWAY_BODIES: dict[str, tuple[bytes, str | None]] = {
    "html": (b"<html><head><title>503 Service Temporarily Unavailable</title></head><body><center>"
             b"<h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>",
             "text/html"),
    "text": (b"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
             "text/plain"),
    "empty": (b"", None),
}


class _ZohoHandler(_Handler):
    """The base handler with a ``Date`` header ``clock_skew`` seconds off the real time (a server clock that is off)."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        skew = float(self.server.sim.clock_skew)  # type: ignore[attr-defined]
        return super().date_time_string((time.time() + skew) if timestamp is None else timestamp)


def _fmt(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, CST).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def _err(code: str, message: str, status: int = 400, details: dict[str, Any] | None = None,
         **headers: str) -> Response:
    return Response.json({"code": code, "details": details or {}, "message": message, "status": "error"}, status,
                         headers or None)


def _item_err(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "details": details, "message": message, "status": "error"}


def _parse_dt(value: Any) -> int | None:
    """An ISO 8601 date-time with an offset → epoch seconds (``None`` if invalid or zone-less)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return int(parsed.timestamp()) if parsed.tzinfo is not None else None


class _Store:
    """One module's records, indexed by id, by unique / duplicate-check values and by Modified_Time."""

    def __init__(self, mod: ModuleDef) -> None:
        self.mod = mod
        self.records: dict[str, dict[str, Any]] = {}
        self.order: list[tuple[int, int]] = []     # (Modified_Time, id) ascending
        self.ids: list[int] = []                   # ids ascending (= creation order)
        self.keyed = [f.api_name for f in mod.fields if f.unique] + [mod.duplicate_field]
        self.index: dict[str, dict[Any, set[str]]] = {k: {} for k in self.keyed}
        self.deleted: list[dict[str, Any]] = []    # recycle-bin entries, oldest first

    @staticmethod
    def norm(value: Any) -> Any:
        return value.casefold() if isinstance(value, str) else value

    def _index(self, rec: dict[str, Any], add: bool) -> None:
        for k in self.keyed:
            v = rec.get(k)
            if v is None or v == "":
                continue
            bucket = self.index[k].setdefault(self.norm(v), set())
            if add:
                bucket.add(rec["id"])
            else:
                bucket.discard(rec["id"])

    def lookup(self, field: str, value: Any) -> list[str]:
        return sorted(self.index.get(field, {}).get(self.norm(value), ()), key=int)

    def put(self, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
        rid = rec["id"]
        if old is not None:
            self._index(old, False)
            pos = bisect.bisect_left(self.order, (old["Modified_Time"], int(rid)))
            del self.order[pos]
        else:
            bisect.insort(self.ids, int(rid))
        self.records[rid] = rec
        self._index(rec, True)
        bisect.insort(self.order, (rec["Modified_Time"], int(rid)))

    def remove(self, rid: str) -> dict[str, Any]:
        rec = self.records.pop(rid)
        self._index(rec, False)
        del self.order[bisect.bisect_left(self.order, (rec["Modified_Time"], int(rid)))]
        del self.ids[bisect.bisect_left(self.ids, int(rid))]
        return rec


class ZohoSimulator(Simulator):
    """Zoho CRM on loopback. Credentials: :attr:`client_id`, :attr:`client_secret`, :attr:`refresh_token`."""

    vendor = "zoho"
    client_id = "1000.CRMBRIDGESIMULATOR0000000000"
    client_secret = "zoho-simulator-client-secret"
    refresh_token = "1000.0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        knobs = dataclasses.replace(knobs or Knobs(), extra=dict((knobs or Knobs()).extra))
        edition = str(knobs.extra.get("edition", "enterprise")).lower()
        if edition not in EDITIONS:
            raise ValueError(f"unknown Zoho edition {edition!r}; one of {', '.join(EDITIONS)}")
        if knobs.concurrency_limit is None:
            knobs.concurrency_limit = EDITIONS[edition]
        super().__init__(knobs, host=host, port=port)
        self.edition = edition
        #: wall clock for Modified_Time (tests may replace it)
        self.clock: Callable[[], float] = time.time
        self._mono: Callable[[], float] = time.monotonic
        #: the org's modules: the standard ones and the bank's custom holdings module under its configured API name
        #: (knob ``holdings_module``; "" for an org without it)
        self.modules: dict[str, ModuleDef] = dict(MODULES)
        custom = str(self.knobs.extra.get("holdings_module", "Holdings") or "")
        if custom:
            self.modules[custom] = holdings_module(custom)
        self.stores: dict[str, _Store] = {name: _Store(mod) for name, mod in self.modules.items()}
        #: campaign membership: campaign id -> contact id -> {"Member_Status": ..., "_time": epoch}
        self.members: dict[str, dict[str, dict[str, Any]]] = {}
        self._next_id = 5725767000000500000
        self._tokens: dict[str, float] = {}                  # access token -> monotonic expiry
        self._token_calls: dict[str, deque[float]] = {}     # refresh token -> recent grant times
        self._revoked: set[str] = set()
        self._page_tokens: dict[str, dict[str, Any]] = {}
        self.credits_used = 0
        #: every write call's ``trigger`` value, for tests
        self.triggers_seen: list[Any] = []
        #: seconds the ``Date`` header is ahead of the real time (negative: behind); knob ``clock_skew``
        self.clock_skew = float(self.knobs.extra.get("clock_skew", 0.0))
        #: custom fields this org lacks (knob ``missing_fields``, comma-separated): absent from the metadata and
        #: refused on writes like any unknown API name
        missing = self.knobs.extra.get("missing_fields") or ()
        self.missing_fields: set[str] = set(missing.split(",") if isinstance(missing, str) else missing)
        #: pending gateway replies: (status, body kind, Retry-After, path prefix or None)
        self._gateway: deque[tuple[int, str, float | None, str | None]] = deque()
        self._started = int(self.clock())
        accounts = int(self.knobs.extra.get("accounts", max(1, self.knobs.records // 4)))
        self.reset("Accounts", accounts)
        self.reset("Contacts", self.knobs.records)

    # ------------------------------------------------------------------ seeding and direct access (tests)
    def reset(self, module: str, n: int) -> None:
        """Replace ``module``'s records with ``n`` deterministic synthetic ones (and clear its recycle bin)."""
        with self.lock:
            store = self.stores[module] = _Store(self.modules[module])
            rng = random.Random(f"{self.knobs.seed}:{module}")
            base = 1735660800  # 2025-01-01T00:00:00+08:00
            accounts = list(self.stores["Accounts"].records) if module == "Contacts" else []
            owner = {"id": USER["id"]}
            order = []
            for i in range(n):
                draw = _Draw(rng.getrandbits(512))
                created = base + i * 60
                modified = created + draw.int(86400 * 30)
                rec = self._synthetic(module, i, draw, rng, accounts)
                self._next_id += 1 + draw.int(3)
                rid = str(self._next_id)
                rec.update(id=rid, Created_Time=created, Modified_Time=modified, Last_Activity_Time=modified,
                           Owner=owner, Created_By=owner, Modified_By=owner)
                store.records[rid] = rec
                store._index(rec, True)
                order.append((modified, self._next_id))
            store.ids = [i for _, i in order]  # ascending: ids only grow
            order.sort()
            store.order = order

    def count(self, module: str) -> int:
        with self.lock:
            return len(self.stores[module].records)

    def record(self, module: str, rid: str) -> dict[str, Any] | None:
        """A record as single GET renders it (``None`` if absent)."""
        with self.lock:
            rec = self.stores[module].records.get(rid)
            return self._render(self.stores[module], rec, None) if rec else None

    def find(self, module: str, field: str, value: Any) -> list[dict[str, Any]]:
        with self.lock:
            store = self.stores[module]
            if field in store.index:
                ids = store.lookup(field, value)
            else:
                ids = [r["id"] for r in store.records.values() if store.norm(r.get(field)) == store.norm(value)]
            return [self._render(store, store.records[i], None) for i in ids]

    def touch(self, module: str, rid: str, **changes: Any) -> dict[str, Any]:
        """Edit a record as a CRM user would (Modified_Time = now); returns it rendered."""
        with self.lock:
            store = self.stores[module]
            old = store.records[rid]
            rec = {**old, **changes, "Modified_Time": int(self.clock())}
            self._derive(store.mod, rec)
            store.put(rec, old)
            return self._render(store, rec, None)

    def add(self, module: str, **fields: Any) -> str:
        """Create a record as a CRM user would (no validation: the UI's own rules); returns its id."""
        with self.lock:
            store = self.stores[module]
            now = int(self.clock())
            owner = {"id": USER["id"]}
            rid = self._new_id()
            rec = {"Owner": owner, **fields, "id": rid, "Created_Time": now, "Modified_Time": now,
                   "Last_Activity_Time": now, "Created_By": owner, "Modified_By": owner}
            self._derive(store.mod, rec)
            store.put(rec, None)
            return rid

    def expire_tokens(self) -> None:
        """Invalidate every access token now (as an expiry, a revocation or another data centre's token would)."""
        with self.lock:
            self._tokens.clear()

    def _new_id(self) -> str:
        self._next_id += 1 + self.rng.randrange(3)
        return str(self._next_id)

    def _synthetic(self, module: str, i: int, d: _Draw, rng: random.Random,
                   accounts: list[str]) -> dict[str, Any]:
        common = {
            "Party_ID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "RM_Employee_ID": f"E{d.int(10**6):06d}",
            "Home_Branch": f"BR{1 + d.int(399):04d}",
            "AUM_Band": d.pick(AUM_BANDS),
            "Risk_Rating": d.pick(("LOW", "LOW", "MEDIUM", "HIGH")),
            "Lifecycle_Stage": d.pick(("ACTIVE", "ACTIVE", "ACTIVE", "DORMANT", "PROSPECT")),
            "KYC_Next_Review": d.pick(_REVIEW_DATES),
        }
        mod = self.modules[module]
        if mod.generated_type == "custom":  # the holdings module
            family = d.pick(PRODUCT_TYPES)
            contacts = list(self.stores["Contacts"].records)
            rec = {"Name": f"{family} ****{d.int(10**4):04d}", "Holding_Key": f"FCUBS:{1 + d.int(399):03d}:{i:010d}",
                   "Party_ID": common["Party_ID"], "Product_Type": family, "Product_Code": f"P{d.int(1000):03d}",
                   "Holding_Status": d.pick(("ACTIVE", "ACTIVE", "ACTIVE", "CLOSED")), "Currency_Code": "CNY",
                   "Balance_Band": d.pick(AUM_BANDS), "Open_Date": d.pick(_BIRTH_DATES[-1500:])}
            if contacts:
                rec["Contact"] = {"id": contacts[i % len(contacts)]}
            return rec
        if module == "Cases":
            return {"Subject": f"投诉 {i:06d}", "Status": d.pick(("New", "Escalated", "On Hold", "Closed")),
                    "Priority": d.pick(("High", "Medium", "Low")), "Case_Origin": d.pick(("Email", "Phone", "Web")),
                    "Case_Key": common["Party_ID"]}
        if module == "Campaigns":
            return {"Campaign_Name": f"活动 {i:04d}", "Status": "Active", "Type": "Email"}
        city = d.pick(_CITIES)
        if module == "Accounts":
            name = f"{city[:-1]}{d.pick(_WORDS)}{d.pick(_TRADES)}有限公司"
            return {**common, "Account_Name": f"{name}{i:05d}" if i else name,
                    "Customer_Segment": d.pick(("Micro", "Small", "Medium", "Large", "Strategic")),
                    "USCC": f"91{d.int(10**6):06d}{i:09d}X",
                    "Industry_Code": d.pick(("C1310", "F5123", "I6513", "J6620", "K7010")),
                    "Industry": d.pick(("Manufacturing", "Retail", "Technology", "Finance")),
                    "Employees": 3 + d.int(5000), "Annual_Revenue": float(10**5 + d.int(10**9)),
                    "Phone": f"+86-{d.pick(('10', '21', '20', '755'))}-{10**7 + d.int(9 * 10**7)}",
                    "Billing_City": city, "Billing_Country": "中国", "Account_Type": "Customer"}
        bad = self.knobs.bad_fraction and d.int(10**6) < self.knobs.bad_fraction * 10**6
        given = d.pick(_GIVEN) + (d.pick(_GIVEN) if d.int(2) else "")
        rec = {**common, "Last_Name": d.pick(_FAMILY), "First_Name": given,
               "Customer_Segment": d.pick(("Mass", "Mass", "Affluent", "Wealth", "Private")),
               "ID_Number_Masked": f"{1 + d.int(6)}{'*' * 13}{d.int(1000):03d}X",
               "SMS_Opt_In": d.int(10) < 6,
               "Email": f"c{i:07d}@mail.example.cn",
               "Mobile": "12345" if bad else f"+86-{d.pick(_MOBILE_PREFIX)}{d.int(10**8):08d}",
               "Mailing_City": city, "Mailing_Country": "中国", "Lead_Source": "Branch Walk-in",
               "Date_of_Birth": d.pick(_BIRTH_DATES)}
        if accounts and i % 3 == 0:
            rec["Account_Name"] = {"id": accounts[i % len(accounts)]}
        rec["Full_Name"] = f"{given} {rec['Last_Name']}"
        return rec

    @staticmethod
    def _derive(mod: ModuleDef, rec: dict[str, Any]) -> None:
        if mod.api_name == "Contacts":
            rec["Full_Name"] = " ".join(p for p in (rec.get("First_Name"), rec.get("Last_Name")) if p) or None

    def start(self) -> ZohoSimulator:
        super().start()
        if self._server is not None:
            self._server.RequestHandlerClass = _ZohoHandler
        return self

    def inject_gateway(self, status: int = 503, body: str = "html", *, times: int = 1,
                       retry_after: float | None = None, path: str | None = None) -> None:
        """Make the next ``times`` requests whose path starts with ``path`` (any request if ``None``; the token
        endpoint is ``/oauth/v2/token``) answer as a gateway in front of Zoho would: ``status`` with an ``html``,
        ``text`` or ``empty`` body, or ``truncated`` (Zoho's real answer, applied, cut in half with a matching
        Content-Length, as a proxy that gave up mid-body sends it). ``retry_after`` adds that header."""
        if body not in (*GATEWAY_BODIES, "truncated"):
            raise ValueError(f"unknown gateway body {body!r}")
        with self.lock:
            self._gateway.extend([(status, body, retry_after, path)] * times)

    def _gateway_reply(self, req: Request) -> Response | None:
        for i, (status, kind, retry_after, path) in enumerate(self._gateway):
            if path is None or req.path.startswith(path):
                del self._gateway[i]
                headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
                if kind == "truncated":
                    real = self._handle(req)
                    cut = real.body[:max(1, len(real.body) // 2)]
                    return Response(status, cut, {"Content-Type": real.headers.get("Content-Type",
                                                                                   "application/json"), **headers})
                text, ctype = GATEWAY_BODIES[kind]
                return Response(status, text, {**({"Content-Type": ctype} if ctype else {}), **headers})
        return None

    # ------------------------------------------------------------------ simulator hooks
    def banner(self) -> list[str]:
        return [
            f"Zoho CRM simulator ({self.edition} edition) serving {self.url}",
            f"  token URL  {self.url}/oauth/v2/token   API  {self.url}/crm/v8/",
            f"  client_id={self.client_id} client_secret={self.client_secret}",
            f"  refresh_token={self.refresh_token}",
            "  modules: " + ", ".join(f"{m} ({len(s.records)})" for m, s in self.stores.items()),
        ]

    def fault_response(self, fault: Fault, req: Request) -> Response:
        if req.path.startswith("/oauth/"):
            if fault is Fault.THROTTLE:
                return self._token_throttled()
            if fault is Fault.TOKEN_EXPIRED:
                with self.lock:
                    return self._token_endpoint(req)
            return Response.json({"error": "internal_error"}, 500)
        if fault is Fault.THROTTLE:
            return _err("TOO_MANY_REQUESTS", "Number of API requests for the 24 hour period is exceeded or the "
                        "concurrency limit of the user for the app is exceeded", 429)
        if fault is Fault.TOKEN_EXPIRED:
            return _err("INVALID_TOKEN", "invalid oauth token", 401)
        return _err("INTERNAL_ERROR", "Internal Server Error", 500)

    def handle(self, req: Request) -> Response:
        with self.lock:
            gateway = self._gateway_reply(req) if self._gateway else None
            return gateway if gateway is not None else self._handle(req)

    def _handle(self, req: Request) -> Response:
        with self.lock:
            if req.path.rstrip("/") == "/oauth/v2/token":
                return self._token_endpoint(req) if req.method == "POST" else _err(
                    "INVALID_REQUEST_METHOD", "The http request method type is not a valid one", 400)
            if req.path.rstrip("/") == "/oauth/v2/token/revoke":
                return self._revoke(req)
            parts = [p for p in req.path.split("/") if p]
            if len(parts) < 3 or parts[0] != "crm" or not _VERSION.match(parts[1]):
                return self._url_pattern()
            denied = self._authorise(req)
            if denied is not None:
                return denied
            self.credits_used += 1
            budget = int(self.knobs.extra.get("credits", 100_000))
            if self.credits_used > budget:
                return _err("TOO_MANY_REQUESTS", "Number of API requests for the 24 hour period is exceeded or "
                            "the concurrency limit of the user for the app is exceeded", 429)
            resp = self._route(req, parts[1], parts[2:])
            if self.credits_used * 2 >= budget:
                resp.headers["X-API-CREDITS-REMAINING"] = str(max(0, budget - self.credits_used))
            return resp

    # ------------------------------------------------------------------ OAuth
    def _params(self, req: Request) -> dict[str, str]:
        merged = {k: v[0] for k, v in req.query.items() if v}
        if req.body and "json" not in req.headers.get("content-type", ""):
            from urllib.parse import parse_qs

            merged.update({k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items() if v})
        return merged

    def _token_throttled(self) -> Response:
        return Response.json({"error_description": "You have made too many requests continuously. Please try "
                              "again after some time.", "error": "Access Denied", "status": "failure"}, 200)

    def _token_endpoint(self, req: Request) -> Response:
        p = self._params(req)
        if p.get("grant_type") != "refresh_token":
            return Response.json({"error": "invalid_code" if p.get("grant_type") == "authorization_code"
                                  else "unsupported_grant_type"}, 200)
        if p.get("client_id") != self.client_id or p.get("client_secret") != self.client_secret:
            return Response.json({"error": "invalid_client"}, 200)
        rt = p.get("refresh_token", "")
        if rt != self.refresh_token or rt in self._revoked:
            return Response.json({"error": "invalid_code"}, 200)
        limit = int(self.knobs.extra.get("token_limit", 10))
        window = float(self.knobs.extra.get("token_window", 600))
        now = self._mono()
        calls = self._token_calls.setdefault(rt, deque())
        while calls and now - calls[0] > window:
            calls.popleft()
        if limit and len(calls) >= limit:
            return self._token_throttled()
        calls.append(now)
        token = f"1000.{self.rng.getrandbits(128):032x}.{self.rng.getrandbits(128):032x}"
        lifetime = self.knobs.token_lifetime if self.knobs.token_lifetime is not None else 3600.0
        self._tokens[token] = now + lifetime
        body: dict[str, Any] = {"access_token": token, "api_domain": str(self.knobs.extra.get("api_domain", self.url)),
                                "token_type": "Bearer"}
        if self.knobs.extra.get("legacy_expires"):
            body.update(expires_in_sec=int(lifetime), expires_in=int(lifetime * 1000))
        else:
            body["expires_in"] = int(lifetime) if lifetime >= 1 else lifetime
        return Response.json(body, 200)

    def _revoke(self, req: Request) -> Response:
        token = self._params(req).get("token")
        if token:
            self._revoked.add(token)
            self._tokens.pop(token, None)
        return Response.json({"status": "success"}, 200)

    def _authorise(self, req: Request) -> Response | None:
        header = req.headers.get("authorization", "").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme == "Bearer" and token:
            mode = str(self.knobs.extra.get("bearer", "AUTHENTICATION_FAILURE"))
            if mode == "AUTHENTICATION_FAILURE":
                return _err("AUTHENTICATION_FAILURE", "Authentication failed", 401)
            if mode == "INVALID_TOKEN":
                return _err("INVALID_TOKEN", "invalid oauth token", 401)
        elif scheme != "Zoho-oauthtoken" or not token:
            return _err("AUTHENTICATION_FAILURE", "Authentication failed", 401)
        expiry = self._tokens.get(token)
        if expiry is None or self._mono() >= expiry:
            self._tokens.pop(token, None)
            return _err("INVALID_TOKEN", "invalid oauth token", 401)
        return None

    # ------------------------------------------------------------------ routing
    @staticmethod
    def _url_pattern() -> Response:
        return _err("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one", 404)

    @staticmethod
    def _method() -> Response:
        return _err("INVALID_REQUEST_METHOD", "The http request method type is not a valid one", 400)

    def _route(self, req: Request, version: str, rest: list[str]) -> Response:
        head, m = rest[0], req.method
        if head == "settings":
            if len(rest) >= 2 and rest[1] == "modules" and m == "GET":
                return self._modules(req, rest[2] if len(rest) > 2 else None)
            if len(rest) == 2 and rest[1] == "fields" and m == "GET":
                return self._fields(req)
            if len(rest) == 2 and rest[1] == "related_lists" and m == "GET":
                return self._related_lists(req)
            return self._url_pattern()
        if head == "org" and len(rest) == 1:
            return self._org() if m == "GET" else self._method()
        if head == "users" and len(rest) == 1:
            return self._users(req) if m == "GET" else self._method()
        if head == "coql" and len(rest) == 1:
            return self._coql(req) if m == "POST" else self._method()
        store = self.stores.get(head)
        if store is None:
            if m in ("POST", "PUT") or rest[1:] == ["deleted"]:  # wrapped in data[] (OAS upsert/getDeleted)
                return Response.json({"data": [_item_err("INVALID_MODULE", "the module name given seems to be "
                                                         "invalid", {"resource_path_index": 0})]}, 400)
            return _err("INVALID_MODULE", "the module name given seems to be invalid", 400,
                        {"resource_path_index": 0})
        if len(rest) == 1:
            if m == "GET":
                return self._list(req, store, version)
            if m in ("POST", "PUT"):
                return self._write(req, store, "insert" if m == "POST" else "update")
            if m == "DELETE":
                return self._delete(store, (req.q("ids") or "").split(",") if req.q("ids") else [])
            return self._method()
        sub = rest[1]
        if len(rest) == 2 and sub == "upsert":
            return self._write(req, store, "upsert") if m == "POST" else self._method()
        if len(rest) == 2 and sub == "deleted":
            return self._deleted(req, store) if m == "GET" else self._method()
        if len(rest) == 2 and sub == "search":
            return self._search(req, store) if m == "GET" else self._method()
        if len(rest) in (3, 4) and sub.isdigit():
            return self._related(req, store, sub, rest[2], rest[3] if len(rest) == 4 else None)
        if len(rest) == 2 and sub.isdigit():
            if m == "GET":
                rec = store.records.get(sub)
                return Response.json({"data": [self._render(store, rec, None)]}) if rec else Response.empty(204)
            if m == "PUT":
                return self._write(req, store, "update", record_id=sub)
            if m == "DELETE":
                return self._delete(store, [sub])
            return self._method()
        return self._url_pattern()

    # ------------------------------------------------------------------ metadata endpoints
    def _modules(self, req: Request, api_name: str | None) -> Response:
        ims = _parse_dt(req.headers.get("if-modified-since"))
        if api_name is not None:
            mod = self.modules.get(api_name)
            if mod is None:
                return _err("INVALID_MODULE", "the module name given seems to be invalid", 400,
                            {"resource_path_index": 0})
            return Response.json({"modules": [mod.render()]})
        if ims is not None and ims >= self._started:
            return Response.empty(304)
        return Response.json({"modules": [m.render() for m in self.modules.values()]})

    def _fields(self, req: Request) -> Response:
        name = req.q("module")
        if not name:
            return _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                        {"param_name": "module"})
        mod = self.modules.get(name)
        if mod is None:
            return _err("INVALID_MODULE", "the module name given seems to be invalid", 400,
                        {"param_name": "module"})
        return Response.json({"fields": [f.render(mod.api_name, i, mod.id, mod.number) for i, f in enumerate(mod.fields)
                                         if f.api_name not in self.missing_fields]})

    def _field(self, mod: ModuleDef, name: str) -> FieldDef | None:
        """``name``'s definition, or None when the module has no such field (or this org lacks it)."""
        return None if name in self.missing_fields else mod.field(name)

    def _org(self) -> Response:
        paid_type = {"free": None}.get(self.edition, self.edition)
        return Response.json({"org": [{
            "id": ORG_ID, "zgid": ZGID, "company_name": "示例银行股份有限公司", "alias": None,
            "primary_email": USER["email"], "phone": "+86-10-00000000", "mobile": None, "fax": None,
            "website": None, "street": None, "city": "北京市", "state": "北京市", "zip": None, "country": "China",
            "country_code": "CN", "description": None, "employee_count": "10000", "mc_status": False,
            "gapps_enabled": False, "domain_name": "org" + ZGID, "translation_enabled": True,
            "privacy_settings": True, "iso_code": "CNY", "currency": "Chinese Yuan Renminbi - CNY",
            "currency_symbol": "¥", "currency_locale": "zh_CN", "time_zone": "Asia/Shanghai",
            "primary_zuid": "710002346", "ziaportal_id": None, "zia_portal_id": None, "type": "production",
            "hipaa_compliance_enabled": False, "lite_users_enabled": False,
            "license_details": {"paid_expiry": None, "users_license_purchased": 50, "trial_type": None,
                                "trial_expiry": None, "paid": self.edition != "free",
                                "paid_type": paid_type, "trial_action": None},
        }]})

    def _users(self, req: Request) -> Response:
        kind = req.q("type", "AllUsers")
        if kind not in ("AllUsers", "ActiveUsers", "CurrentUser", "AdminUsers", "ActiveConfirmedUsers",
                        "ConfirmedUsers", "NotConfirmedUsers", "DeletedUsers", "DeactiveUsers",
                        "ActiveConfirmedAdmins", "ParentRoleUsers"):
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "type"})
        if kind in ("DeletedUsers", "DeactiveUsers", "NotConfirmedUsers"):
            return Response.empty(204)
        user = {"id": USER["id"], "email": USER["email"], "full_name": USER["name"], "first_name": "CRM",
                "last_name": "Integration", "status": "active", "confirm": True, "time_zone": "Asia/Shanghai",
                "locale": "zh_CN", "language": "zh_CN", "country": "CN", "country_locale": "zh_CN",
                "zuid": "710002346", "role": {"name": "CEO", "id": "5725767000000026005"},
                "profile": {"name": "Administrator", "id": "5725767000000026011"},
                "date_format": "yyyy-MM-dd", "time_format": "HH:mm"}
        return Response.json({"users": [user], "info": {"per_page": 200, "count": 1, "page": 1,
                                                        "more_records": False}})

    # ------------------------------------------------------------------ rendering
    def _render(self, store: _Store, rec: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        mod = store.mod
        if fields is None:
            names = [f.api_name for f in mod.fields]
        else:
            names = fields
        out: dict[str, Any] = {}
        for name in names:
            f = mod.field(name)
            out[name] = self._value(f, rec.get(name)) if f is not None else rec.get(name)
        out["id"] = rec["id"]
        if fields is None:
            out.update({"$currency_symbol": "¥", "$editable": True, "$approved": True, "$converted": False,
                        "$locked_for_me": False, "$in_merge": False, "$process_flow": False,
                        "$approval_state": "approved", "$review_process": None,
                        "$approval": {"delegate": False, "approve": False, "reject": False, "resubmit": False},
                        "Tag": [], "Record_Status__s": "Available",
                        "Layout": {"name": "Standard", "id": str(int(mod.id) + 1)}})
        return out

    def _value(self, f: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        if f.data_type == "datetime" and isinstance(value, int):
            return _fmt(value)
        if f.data_type in ("ownerlookup", "userlookup") and isinstance(value, dict):
            return dict(USER) if value.get("id") == USER["id"] else {"name": None, "id": value.get("id"),
                                                                     "email": None}
        if f.data_type == "lookup" and isinstance(value, dict):
            target = self.stores.get(f.lookup or "")
            rec = target.records.get(str(value.get("id"))) if target else None
            name = rec.get(target.mod.display_field) if rec and target else None
            return {"name": name, "id": value.get("id")}
        return value

    # ------------------------------------------------------------------ reads
    def _ims(self, req: Request) -> tuple[int | None, Response | None]:
        raw = req.headers.get("if-modified-since")
        if raw is None:
            return None, None
        when = _parse_dt(raw)
        if when is None:
            return None, _err("INVALID_DATA", "invalid data", 400, {"param_name": "If-Modified-Since"})
        return when, None

    def _list(self, req: Request, store: _Store, version: str) -> Response:
        mod = store.mod
        raw_fields = req.q("fields")
        if raw_fields is None and version in ("v7", "v8"):
            return _err("REQUIRED_PARAM_MISSING", "required param is missing", 400, {"param_name": "fields"})
        fields = None
        if raw_fields is not None:
            fields = [f.strip() for f in raw_fields.split(",") if f.strip() and f.strip() != "id"]
            if len(fields) > 50:
                return _err("LIMIT_EXCEEDED", "limit exceeded", 400, {"limit": 50, "param_name": "fields"})
            for name in fields:
                if self._field(mod, name) is None:
                    return _err("INVALID_DATA", "the field api name given seems to be invalid", 400,
                                {"api_name": name, "param_name": "fields"})
        try:
            per_page = int(req.q("per_page", "200") or "200")
            page = int(req.q("page", "1") or "1")
        except ValueError:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "per_page/page"})
        most = int(self.knobs.extra.get("max_per_page", 200))
        if not 1 <= per_page <= most:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "per_page", "maximum": most})
        if page < 1:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "page"})
        sort_by = req.q("sort_by", "id")
        sort_order = req.q("sort_order", "desc")
        if sort_by not in ("id", "Created_Time", "Modified_Time"):
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "sort_by",
                                                              "supported_values": ["id", "Created_Time",
                                                                                   "Modified_Time"]})
        if sort_order not in ("asc", "desc"):
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "sort_order",
                                                              "supported_values": ["asc", "desc"]})
        if req.q("cvid") and "sort_by" in req.query:
            return _err("AMBIGUITY_DURING_PROCESSING", "ambiguity while processing the request", 400,
                        {"ambiguity_due_to": ["cvid", "sort_by"]})
        ims, bad = self._ims(req)
        if bad is not None:
            return bad
        wanted, bad = self._ids_param(req)
        if bad is not None:
            return bad
        page_token = req.q("page_token")
        bound = (raw_fields, per_page, sort_by, sort_order, ims, req.q("converted"), req.q("approved"),
                 req.q("cvid"), req.q("ids"))
        if page_token is not None:
            if "page" in req.query:
                return _err("AMBIGUITY_DURING_PROCESSING", "ambiguity while processing the request", 400,
                            {"ambiguity_due_to": ["page", "page_token"]})
            entry = self._page_tokens.get(page_token)
            if entry is None:
                return _err("INVALID_DATA", "invalid data", 400, {"api_name": "page_token",
                                                                  "json_path": "$.query.page_token"})
            if self._mono() - entry["created"] > 86400:
                return _err("EXPIRED_VALUE", "Page token expired", 400,
                            {"api_name": "page_token", "json_path": "$.query.page_token"})
            if entry["bound"] != bound or entry["module"] != mod.api_name:
                return _err("TOKEN_BOUND_DATA_MISMATCH", "The page_token given seems to be invalid or input "
                            "param is added or altered or deleted", 400, {"param_name": "page_token"})
            offset = entry["offset"]
            page = offset // per_page + 1
        else:
            if page * per_page > DISCRETE_LIMIT:
                return _err("DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                            "You can only get the first 2000 records without using page_token param", 400,
                            {"limit": DISCRETE_LIMIT})
            offset = (page - 1) * per_page
        limit = int(self.knobs.extra.get("pagination_limit", TOKEN_LIMIT))
        if offset + per_page > limit:
            return _err("PAGINATION_LIMIT_EXCEEDED", f"You can only get upto {limit} records using page_token param",
                        400, {"param_name": "page_token"})
        if wanted is not None:
            ids, total = self._select_ids(store, wanted, sort_by, sort_order, ims, offset, per_page)
        else:
            ids, total = self._select(store, sort_by, sort_order, ims, offset, per_page)
        if ims is not None and total == 0:
            return Response.empty(304)
        if not ids:
            return Response.empty(204)
        more = offset + len(ids) < total
        token = None
        if more:
            token = f"{self.rng.getrandbits(96):024x}"
            self._page_tokens[token] = {"bound": bound, "offset": offset + per_page, "created": self._mono(),
                                        "module": mod.api_name}
        data = [self._render(store, store.records[i], fields) for i in ids]
        info = {"call": False, "per_page": per_page, "next_page_token": token, "count": len(data),
                "sort_by": sort_by, "page": page, "previous_page_token": None,
                "page_token_expiry": _fmt(int(self.clock()) + 86400) if token else None,
                "sort_order": sort_order, "email": False, "more_records": more}
        return Response.json({"data": data, "info": info})

    def _ims_inclusive(self) -> bool:
        mode = self.knobs.extra.get("ims_boundary")
        if mode is None:
            return bool(self.knobs.extra.get("ims_inclusive", False))
        if mode not in ("inclusive", "exclusive"):
            raise ValueError(f"ims_boundary must be inclusive or exclusive, not {mode!r}")
        return mode == "inclusive"

    def _ids_param(self, req: Request) -> tuple[list[str] | None, Response | None]:
        """``ids=1,2,3`` on a record list: only those records (unknown ids are left out; the other parameters
        still apply). Ids are numeric; more than ``ids_limit`` distinct ids is LIMIT_EXCEEDED."""
        raw = req.q("ids")
        if raw is None:
            return None, None
        wanted = list(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
        if not wanted or not all(p.isdigit() for p in wanted):
            return None, _err("INVALID_DATA", "invalid data", 400, {"param_name": "ids"})
        limit = int(self.knobs.extra.get("ids_limit", 100))
        if len(wanted) > limit:
            return None, _err("LIMIT_EXCEEDED", "limit exceeded", 400, {"limit": limit, "param_name": "ids"})
        return wanted, None

    def _select_ids(self, store: _Store, wanted: list[str], sort_by: str, sort_order: str, ims: int | None,
                    offset: int, limit: int) -> tuple[list[str], int]:
        inclusive = self._ims_inclusive()
        recs = [store.records[i] for i in wanted if i in store.records]
        if ims is not None:
            recs = [r for r in recs if r["Modified_Time"] > ims or inclusive and r["Modified_Time"] == ims]
        if sort_by == "id":
            recs.sort(key=lambda r: int(r["id"]), reverse=sort_order == "desc")
        else:
            recs.sort(key=lambda r: (r[sort_by], int(r["id"])), reverse=sort_order == "desc")
        return [r["id"] for r in recs[offset:offset + limit]], len(recs)

    def _select(self, store: _Store, sort_by: str, sort_order: str, ims: int | None, offset: int,
                limit: int) -> tuple[list[str], int]:
        """Ids of one page and the number of matching records, from the sorted indexes."""
        inclusive = self._ims_inclusive()
        if sort_by == "Modified_Time":
            start = 0
            if ims is not None:
                start = (bisect.bisect_left(store.order, (ims, -1)) if inclusive
                         else bisect.bisect_right(store.order, (ims, _MAX)))
            total = len(store.order) - start
            if sort_order == "asc":
                chunk = store.order[start + offset:start + offset + limit]
            else:
                hi = len(store.order) - offset
                chunk = store.order[max(start, hi - limit):max(start, hi)][::-1]
            return [str(i) for _, i in chunk], total
        ids = store.ids
        if ims is not None:
            recs = store.records
            ids = [i for i in ids if (recs[str(i)]["Modified_Time"] >= ims if inclusive
                                      else recs[str(i)]["Modified_Time"] > ims)]
        total = len(ids)
        chunk = ids[offset:offset + limit] if sort_order == "asc" else ids[::-1][offset:offset + limit]
        return [str(i) for i in chunk], total

    def _deleted(self, req: Request, store: _Store) -> Response:
        kind = req.q("type", "all")
        if kind not in ("all", "recycle", "permanent"):
            # Zoho's OAS examples (getDeletedRecords, response-400-patternnotmatched) wrap it in data[] with HTTP 400;
            # its API_Exception schema (and the SDK generated from it) expects a top-level object: both are served
            message = "Please check whether the input values are correct"
            if self.knobs.extra.get("deleted_error_shape", "wrapped") == "top":
                return _err("PATTERN_NOT_MATCHED", message, 400, {"param_name": "type"})
            return Response.json({"data": [_item_err("PATTERN_NOT_MATCHED", message, {"param_name": "type"})]}, 400)
        try:
            per_page = int(req.q("per_page", "200") or "200")
            page = int(req.q("page", "1") or "1")
        except ValueError:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "per_page/page"})
        if not 1 <= per_page <= 200 or page < 1:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "per_page" if page >= 1 else "page"})
        ims, bad = self._ims(req)
        if bad is not None:
            return bad
        inclusive = self._ims_inclusive()
        entries = [e for e in reversed(store.deleted) if kind in ("all", e["type"])
                   and (ims is None or e["_time"] > ims or inclusive and e["_time"] == ims)]
        if ims is not None and not entries:
            return Response.empty(304)
        chunk = entries[(page - 1) * per_page:page * per_page]
        if not chunk:
            return Response.empty(204)
        data = [{k: v for k, v in e.items() if not k.startswith("_")} | {"deleted_time": _fmt(e["_time"])}
                for e in chunk]
        return Response.json({"data": data, "info": {"per_page": per_page, "count": len(data), "page": page,
                                                     "more_records": page * per_page < len(entries)}})

    # ------------------------------------------------------------------ writes
    def _write(self, req: Request, store: _Store, op: str, record_id: str | None = None) -> Response:
        try:
            body = json.loads(req.body.decode("utf-8")) if req.body else None
        except (ValueError, UnicodeDecodeError):
            return _err("INVALID_DATA", "either the request body or parameters is in wrong format", 400)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
            return _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                        {"api_name": "data", "json_path": "$.data"})
        rows = body["data"]
        if len(rows) > 100:
            return _err("LIMIT_EXCEEDED", "the number of records exceeds the limit", 400,
                        {"limit": 100, "api_name": "data", "json_path": "$.data"})
        trigger = body.get("trigger")
        allowed = ("workflow", "approval", "blueprint", "pathfinder", "orchestration")
        if trigger is not None and (not isinstance(trigger, list) or any(t not in allowed for t in trigger)):
            return _err("INVALID_DATA", "invalid data", 400, {"api_name": "trigger", "json_path": "$.trigger",
                                                              "supported_values": list(allowed)})
        self.triggers_seen.append(trigger)
        checks = body.get("duplicate_check_fields")
        order: list[str] = []
        if op == "upsert":
            order, bad = self._dup_order(store, checks)
            if bad is not None:
                return bad
        ius_raw = req.headers.get("if-unmodified-since")
        ius = _parse_dt(ius_raw) if ius_raw is not None else None
        if ius_raw is not None and ius is None:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "If-Unmodified-Since"})
        results = []
        for i, row in enumerate(rows):
            if record_id is not None and isinstance(row, dict):
                row = {**row, "id": record_id}
            results.append(self._write_one(store, op, row, i, order, ius))
        ok = [r["status"] == "success" for r in results]
        if all(ok):
            status = 201 if op == "insert" else 200
        elif any(ok):
            status = 207
        elif all(r["code"] == "ALREADY_MODIFIED" for r in results):
            status = 412
        else:
            status = 400
        return Response.json({"data": results}, status)

    def _dup_order(self, store: _Store, checks: Any) -> tuple[list[str], Response | None]:
        mod = store.mod
        uniques = [f.api_name for f in mod.fields if f.unique]
        if checks is None:
            return [mod.duplicate_field, *uniques], None
        if not isinstance(checks, list):
            return [], _err("INVALID_DATA", "invalid data", 400, {"api_name": "duplicate_check_fields",
                                                                  "json_path": "$.duplicate_check_fields"})
        for j, name in enumerate(checks):
            if name != mod.duplicate_field and name not in uniques:
                return [], _err("INVALID_DATA", "the field api name given seems to be invalid", 400,
                                {"api_name": str(name), "json_path": f"$.duplicate_check_fields[{j}]"})
        head = [mod.duplicate_field] if mod.duplicate_field in checks else []
        return list(dict.fromkeys([*head, *checks, *uniques])), None

    def _write_one(self, store: _Store, op: str, row: Any, i: int, order: list[str],
                   ius: int | None) -> dict[str, Any]:
        if not isinstance(row, dict):
            return _item_err("INVALID_DATA", "invalid data", {"json_path": f"$.data[{i}]"})
        target: str | None = None
        duplicate_field: str | None = None
        if op == "update":
            rid = row.get("id")
            if rid is None:
                return _item_err("MANDATORY_NOT_FOUND", "required field not found",
                                 {"api_name": "id", "json_path": f"$.data[{i}].id"})
            if str(rid) not in store.records:
                return _item_err("INVALID_DATA", "the id given seems to be invalid",
                                 {"api_name": "id", "json_path": f"$.data[{i}].id"})
            target = str(rid)
        elif op == "upsert":
            rid = row.get("id")
            if rid is not None and str(rid) in store.records:
                target = str(rid)
            else:
                for name in order:
                    value = row.get(name)
                    if value is None or value == "":
                        continue
                    found = store.lookup(name, value)
                    if found:
                        target, duplicate_field = found[0], name
                        break
        old = store.records.get(target) if target else None
        errors = self._validate(store, row, i, creating=old is None)
        if errors:
            if len(errors) > 1 and all(e["code"] == "DUPLICATE_DATA" for e in errors):
                return _item_err("MULTIPLE_OR_MULTI_ERRORS", "Multiple errors in the request", {"errors": errors})
            return errors[0]
        clash = self._unique_clash(store, row, i, target)
        if clash:
            if len(clash) > 1:
                return _item_err("MULTIPLE_OR_MULTI_ERRORS", "Multiple errors in the request", {"errors": clash})
            return clash[0]
        now = int(self.clock())
        if old is not None and ius is not None and old["Modified_Time"] > ius:
            return _item_err("ALREADY_MODIFIED", "record updated time has already passed if-unmodified-since time",
                             self._stamp(old))
        values = {k: self._store_value(store.mod.field(k), v) for k, v in row.items()
                  if k != "id" and not k.startswith("$") and self._writable(store.mod, k)}
        if old is None:
            rec = {"Owner": {"id": USER["id"]}, **values, "id": self._new_id(), "Created_Time": now,
                   "Modified_Time": now, "Last_Activity_Time": now, "Created_By": {"id": USER["id"]},
                   "Modified_By": {"id": USER["id"]}}
        else:
            rec = {**old, **values, "Modified_Time": now, "Last_Activity_Time": now,
                   "Modified_By": {"id": USER["id"]}}
        self._derive(store.mod, rec)
        store.put(rec, old)
        item: dict[str, Any] = {"code": "SUCCESS", "details": self._stamp(rec),
                                "message": "record added" if old is None else "record updated",
                                "status": "success"}
        if op == "upsert":
            item = {"code": "SUCCESS", "duplicate_field": duplicate_field,
                    "action": "insert" if old is None else "update", **item}
        return item

    @staticmethod
    def _stamp(rec: dict[str, Any]) -> dict[str, Any]:
        by = {"name": USER["name"], "id": USER["id"]}
        return {"Modified_Time": _fmt(rec["Modified_Time"]), "Modified_By": by,
                "Created_Time": _fmt(rec["Created_Time"]), "id": rec["id"], "Created_By": by}

    def _writable(self, mod: ModuleDef, name: str) -> bool:
        f = self._field(mod, name)
        return f is not None and not f.read_only

    @staticmethod
    def _store_value(f: FieldDef | None, value: Any) -> Any:
        if f is None or value is None:
            return value
        if f.data_type == "datetime":
            return _parse_dt(value)
        if f.data_type in ("lookup", "ownerlookup", "userlookup"):
            return {"id": str(value["id"])}
        return value

    def _validate(self, store: _Store, row: dict[str, Any], i: int, *, creating: bool) -> list[dict[str, Any]]:
        mod = store.mod
        errors: list[dict[str, Any]] = []
        reject_unknown = self.knobs.extra.get("unknown_fields", "reject") == "reject"
        for name, value in row.items():
            if name in ("id", "Tag") or name.startswith("$"):  # Tag has its own API; accepted, not stored here
                continue
            path = f"$.data[{i}].{name}"
            f = self._field(mod, name)
            if f is None:
                if reject_unknown:
                    errors.append(_item_err("INVALID_DATA", "the field api name given seems to be invalid",
                                            {"api_name": name, "json_path": path}))
                continue
            if f.read_only:
                continue
            if value is None or value == "":
                if f.mandatory:
                    errors.append(_item_err("MANDATORY_NOT_FOUND", "required field not found",
                                            {"api_name": name, "json_path": path}))
                continue
            problem = self._type_problem(f, value)
            if problem is not None:
                errors.append(_item_err("INVALID_DATA", "invalid data", {**problem, "api_name": name,
                                                                          "json_path": path}))
        if creating:
            for f in mod.fields:
                if f.mandatory and row.get(f.api_name) in (None, ""):
                    if not any(e["details"].get("api_name") == f.api_name for e in errors):
                        errors.append(_item_err("MANDATORY_NOT_FOUND", "required field not found",
                                                {"api_name": f.api_name, "json_path": f"$.data[{i}].{f.api_name}"}))
        return errors

    def _type_problem(self, f: FieldDef, value: Any) -> dict[str, Any] | None:
        t = f.data_type
        expected = {"expected_data_type": t}
        if t in ("text", "textarea", "email", "phone", "website", "picklist"):
            if not isinstance(value, str):
                return expected
            if f.length and len(value) > f.length:
                return {"maximum_length": f.length}
            if t == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
                return expected
            if t == "picklist" and self.knobs.extra.get("strict_picklists") and value not in f.picklist:
                return {"expected_data_type": t, "supported_values": list(f.picklist)}
            return None
        if t in ("integer", "bigint"):
            if isinstance(value, bool) or not isinstance(value, int) and not (
                    isinstance(value, str) and re.fullmatch(r"-?\d+", value)):
                return expected
            if t == "integer" and abs(int(value)) >= 2**31:
                return {"maximum_length": f.length}
            return None
        if t in ("double", "currency", "percent", "decimal"):
            return expected if isinstance(value, bool) or not isinstance(value, int | float) else None
        if t == "boolean":
            return None if isinstance(value, bool) else expected
        if t == "date":
            try:
                date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else int("x")
            except ValueError:
                return expected
            return None
        if t == "datetime":
            return None if _parse_dt(value) is not None else expected
        if t in ("lookup", "ownerlookup", "userlookup"):
            if not isinstance(value, dict) or not str(value.get("id", "")).isdigit():
                return {"expected_data_type": "jsonobject"}
            if t == "lookup":
                target = self.stores.get(f.lookup or "")
                if target is None or str(value["id"]) not in target.records:
                    return {"id": str(value["id"])}
            elif str(value["id"]) != USER["id"]:
                return {"id": str(value["id"])}
            return None
        if t == "multiselectpicklist":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            return None if ok else {"expected_data_type": "jsonarray"}
        return None

    def _unique_clash(self, store: _Store, row: dict[str, Any], i: int, target: str | None) -> list[dict[str, Any]]:
        clashes = []
        for f in store.mod.fields:
            if not f.unique:
                continue
            value = row.get(f.api_name)
            if value is None or value == "":
                continue
            others = [x for x in store.lookup(f.api_name, value) if x != target]
            if others:
                dup = others[0]
                clashes.append(_item_err("DUPLICATE_DATA", "duplicate data", {
                    "api_name": f.api_name, "json_path": f"$.data[{i}].{f.api_name}", "id": dup,
                    "duplicate_record": {"Owner": {"name": USER["name"], "id": USER["id"], "zuid": "710002346"},
                                         "module": {"api_name": store.mod.api_name, "id": store.mod.id},
                                         "id": dup},
                    "more_records": len(others) > 1}))
        return clashes

    def _delete(self, store: _Store, ids: list[str]) -> Response:
        ids = [i.strip() for i in ids if i.strip()]
        if not ids:
            return _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                        {"param_name": "ids"})
        if len(ids) > 100:
            return _err("LIMIT_EXCEEDED", "the given ids exceeds the limit", 400,
                        {"limit": "100", "param_name": "ids"})
        results = []
        now = int(self.clock())
        for rid in ids:
            if rid not in store.records:
                results.append(_item_err("INVALID_DATA", "record not deleted", {"id": rid}))
                continue
            rec = store.remove(rid)
            by = {"name": USER["name"], "id": USER["id"]}
            store.deleted.append({"deleted_by": by, "id": rid, "display_name": rec.get(store.mod.display_field),
                                  "type": "recycle", "created_by": by, "_time": now})
            results.append({"code": "SUCCESS", "details": {"id": rid}, "message": "record deleted",
                            "status": "success"})
        ok = [r["status"] == "success" for r in results]
        return Response.json({"data": results}, 200 if all(ok) else 207 if any(ok) else 400)

    # ------------------------------------------------------------------ related lists (campaign members)
    #: (module, related list) pairs served: both directions of Campaigns <-> Contacts (docs/vendors/zoho.md §15)
    RELATIONS = {("Campaigns", "Contacts"), ("Contacts", "Campaigns")}

    def _related_lists(self, req: Request) -> Response:
        name = req.q("module")
        if not name:
            return _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                        {"param_name": "module"})
        mod = self.modules.get(name)
        if mod is None:
            return _err("INVALID_MODULE", "the module name given seems to be invalid", 400, {"param_name": "module"})
        out = []
        for i, (parent, rel) in enumerate(sorted(self.RELATIONS)):
            if parent != name:
                continue
            target = self.modules[rel]
            out.append({"id": str(int(mod.id) + 500 + i), "sequence_number": str(i + 1), "display_label": rel,
                        "api_name": rel, "name": rel, "module": {"api_name": rel, "id": target.id},
                        "href": f"{name}/{{ENTITYID}}/{rel}", "type": "default", "action": None,
                        "connectedmodule": None, "linkingmodule": None, "visible": True, "status": "visible"})
        return Response.json({"related_lists": out})

    def _member(self, parent: str, rid: str, other: str) -> dict[str, Any] | None:
        camp, contact = (rid, other) if parent == "Campaigns" else (other, rid)
        return self.members.get(camp, {}).get(contact)

    def _related_ids(self, parent: str, rid: str) -> list[str]:
        if parent == "Campaigns":
            ids = list(self.members.get(rid, {}))
        else:
            ids = [c for c, m in self.members.items() if rid in m]
        return sorted(ids, key=int)

    def _related(self, req: Request, store: _Store, rid: str, rel: str, sub: str | None) -> Response:
        parent = store.mod.api_name
        if (parent, rel) not in self.RELATIONS:
            return _err("INVALID_DATA", "The relation name given seems to be invalid", 400, {"resource_path_index": 2})
        if rid not in store.records:
            return _err("INVALID_DATA", "the related id given seems to be invalid", 400, {"resource_path_index": 1})
        other = self.stores[rel]
        if req.method == "GET":
            return self._related_get(req, parent, rid, other, sub)
        if req.method == "PUT":
            return self._related_put(req, parent, rid, other, sub)
        if req.method == "DELETE":
            ids = [sub] if sub else [i.strip() for i in (req.q("ids") or "").split(",") if i.strip()]
            if not ids:
                return _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                            {"param_name": "ids"})
            results = []
            for oid in ids:
                camp, contact = (rid, oid) if parent == "Campaigns" else (oid, rid)
                if self.members.get(camp, {}).pop(contact, None) is None:
                    results.append(_item_err("INVALID_DATA", "the related id given seems to be invalid", {"id": oid}))
                else:
                    results.append({"code": "SUCCESS", "details": {"id": oid}, "message": "relation removed",
                                    "status": "success"})
            return self._items_reply(results)
        return self._method()

    @staticmethod
    def _items_reply(results: list[dict[str, Any]]) -> Response:
        ok = [r["status"] == "success" for r in results]
        return Response.json({"data": results}, 200 if all(ok) else 207 if any(ok) else 400)

    def _related_get(self, req: Request, parent: str, rid: str, other: _Store, sub: str | None) -> Response:
        fields = [f for f in (req.q("fields") or "").split(",") if f]
        if not fields:
            return _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                        {"param_name": "fields"})
        try:
            page = int(req.q("page", "1") or 1)
            per_page = int(req.q("per_page", "200") or 200)
        except ValueError:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "page"})
        if not 1 <= per_page <= 200 or page < 1:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "per_page", "maximum_length": 200})
        ims, bad = self._ims(req)
        if bad is not None:
            return bad
        ids = self._related_ids(parent, rid)
        if sub is not None:
            ids = [i for i in ids if i == sub]
        wanted = req.q("ids")
        if wanted:
            keep = {i.strip() for i in wanted.split(",")}
            ids = [i for i in ids if i in keep]
        if ims is not None:
            by_relation = self.knobs.extra.get("related_ims", "record") == "relation"
            inclusive = self._ims_inclusive()

            def changed(oid: str) -> bool:
                when = (self._member(parent, rid, oid) or {}).get("_time", 0) if by_relation \
                    else other.records[oid]["Modified_Time"]
                return when >= ims if inclusive else when > ims
            ids = [i for i in ids if changed(i)]
            if not ids:
                return Response.empty(304)
        chunk = ids[(page - 1) * per_page: page * per_page]
        if not chunk:
            return Response.empty(204)
        with_status = bool(self.knobs.extra.get("member_status_in_list", True))
        rows = []
        for oid in chunk:
            row = self._render(other, other.records[oid], fields)
            if with_status:
                row["Member_Status"] = (self._member(parent, rid, oid) or {}).get("Member_Status")
            rows.append(row)
        more = page * per_page < len(ids)
        return Response.json({"data": rows, "info": {"per_page": per_page, "count": len(rows), "page": page,
                                                     "more_records": more}})

    def _related_put(self, req: Request, parent: str, rid: str, other: _Store, sub: str | None) -> Response:
        try:
            body = json.loads(req.body.decode("utf-8")) if req.body else None
        except (ValueError, UnicodeDecodeError):
            return _err("INVALID_DATA", "either the request body or parameters is in wrong format", 400)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
            return _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                        {"api_name": "data", "json_path": "$.data"})
        rows = body["data"]
        if len(rows) > 100:
            return _err("LIMIT_EXCEEDED", "the number of records exceeds the limit", 400,
                        {"limit": 100, "api_name": "data", "json_path": "$.data"})
        allowed = self.knobs.extra.get("member_statuses", MEMBER_STATUSES)
        allowed = allowed.split(",") if isinstance(allowed, str) else list(allowed)
        now = int(self.clock())
        results = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                results.append(_item_err("INVALID_DATA", "invalid data", {"json_path": f"$.data[{i}]"}))
                continue
            oid = str(sub if sub is not None else row.get("id", ""))
            if oid not in other.records:
                results.append(_item_err("INVALID_DATA", "the related id given seems to be invalid",
                                         {"id": oid, "json_path": f"$.data[{i}].id"}))
                continue
            status = row.get("Member_Status")
            if status is not None and (not isinstance(status, str) or status not in allowed):
                results.append(_item_err("INVALID_DATA", "invalid data", {
                    "api_name": "Member_Status", "json_path": f"$.data[{i}].Member_Status",
                    "expected_data_type": "picklist", "supported_values": allowed}))
                continue
            camp, contact = (rid, oid) if parent == "Campaigns" else (oid, rid)
            rel = self.members.setdefault(camp, {}).setdefault(contact, {"Member_Status": None})
            if status is not None:
                rel["Member_Status"] = status
            rel["_time"] = now
            results.append({"code": "SUCCESS", "details": {"id": oid}, "message": "relation added",
                            "status": "success"})
        return self._items_reply(results)

    def relate(self, campaign_id: str, contact_id: str, status: str | None) -> None:
        """Make a contact a campaign member (as a marketer would in the CRM); tests."""
        with self.lock:
            self.members.setdefault(campaign_id, {})[contact_id] = {"Member_Status": status,
                                                                     "_time": int(self.clock())}

    # ------------------------------------------------------------------ search and COQL
    def _search(self, req: Request, store: _Store) -> Response:
        criteria, email, phone, word = (req.q(k) for k in ("criteria", "email", "phone", "word"))
        try:
            if criteria:
                test = _parse_criteria(criteria, store.mod)
            elif email:
                test = _any_of(store.mod, ("email",), email)
            elif phone:
                test = _any_of(store.mod, ("phone",), phone)
            elif word:
                if len(word) < 2:
                    return _err("INVALID_DATA", "invalid data", 400, {"param_name": "word"})
                test = _any_of(store.mod, ("text", "email", "phone"), word)
            else:
                return _err("EXPECTED_PARAM_MISSING", "One of the expected parameter is missing", 400,
                            {"expected_params": ["criteria", "email", "phone", "word"]})
        except ValueError as exc:
            return _err("INVALID_QUERY", "Invalid query formed", 400, {"reason": str(exc)})
        try:
            per_page = min(200, int(req.q("per_page", "200") or "200"))
            page = int(req.q("page", "1") or "1")
        except ValueError:
            return _err("INVALID_DATA", "invalid data", 400, {"param_name": "per_page/page"})
        if page * per_page > DISCRETE_LIMIT:
            return _err("LIMIT_REACHED", "Maximum response iteration limit reached", 400, {"limit": DISCRETE_LIMIT})
        lag = float(self.knobs.extra.get("search_lag", 0))
        horizon = self.clock() - lag
        hits = [r for r in (store.records[str(i)] for i in reversed(store.ids))
                if (not lag or r["Modified_Time"] <= horizon) and test(r)]
        chunk = hits[(page - 1) * per_page:page * per_page]
        if not chunk:
            return Response.empty(204)
        fields = [f for f in (req.q("fields") or "").split(",") if f] or None
        data = [self._render(store, r, fields) for r in chunk]
        return Response.json({"data": data, "info": {"per_page": per_page, "count": len(data), "page": page,
                                                     "more_records": page * per_page < len(hits)}})

    def _coql(self, req: Request) -> Response:
        try:
            body = json.loads(req.body.decode("utf-8")) if req.body else None
        except (ValueError, UnicodeDecodeError):
            return _err("INVALID_DATA", "either the request body or parameters is in wrong format", 400)
        query = body.get("select_query") if isinstance(body, dict) else None
        if not isinstance(query, str) or not query.strip():
            return _err("MANDATORY_NOT_FOUND", "mandatory key not found", 400, {"api_name": "select_query"})
        try:
            q = _Coql(query, self.stores)
        except _CoqlError as exc:
            return _err(exc.code, exc.message, 400, exc.details)
        store = self.stores[q.module]
        if q.equality is not None and q.equality[0] in store.index:  # indexed: no scan of 100k records
            candidates = (store.records[i] for i in store.lookup(*q.equality))
        else:
            candidates = (store.records[str(i)] for i in store.ids)
        rows = [r for r in candidates if q.where(r)]
        for name, desc in reversed(q.order):
            rows.sort(key=lambda r, n=name: _sort_key(r.get(n) if n != "id" else int(r["id"])), reverse=desc)
        chunk = rows[q.offset:q.offset + q.limit]
        if not chunk:
            return Response.empty(204)
        data = []
        for r in chunk:
            rendered = self._render(store, r, [f for f in q.fields if f != "id"])
            data.append(rendered)
        return Response.json({"data": data, "info": {"count": len(data),
                                                     "more_records": q.offset + len(chunk) < len(rows)}})


# ---------------------------------------------------------------------- search criteria
def _any_of(mod: ModuleDef, types: Iterable[str], needle: str) -> Callable[[dict[str, Any]], bool]:
    names = [f.api_name for f in mod.fields if f.data_type in types]
    n = needle.casefold()
    return lambda r: any(isinstance(r.get(k), str) and n in r[k].casefold() for k in names)


_CRIT_OPS = ("equals", "not_equal", "starts_with", "in", "greater_than", "greater_equal", "less_than",
             "less_equal", "between")


def _parse_criteria(text: str, mod: ModuleDef) -> Callable[[dict[str, Any]], bool]:
    """``((Field:op:value)and(Field:op:value))`` with ``\\(``, ``\\)``, ``\\,`` escapes (≤10 conditions)."""
    pos = 0
    count = 0

    def expr() -> Callable[[dict[str, Any]], bool]:
        nonlocal pos
        parts = [term()]
        joins: list[str] = []
        while text.startswith(("and", "or"), pos):
            j = "and" if text.startswith("and", pos) else "or"
            pos += len(j)
            joins.append(j)
            parts.append(term())
        if "and" in joins and "or" in joins:
            raise ValueError("mixing and/or needs parentheses")
        if joins and joins[0] == "or":
            return lambda r: any(p(r) for p in parts)
        return lambda r: all(p(r) for p in parts)

    def term() -> Callable[[dict[str, Any]], bool]:
        nonlocal pos, count
        if pos >= len(text) or text[pos] != "(":
            raise ValueError(f"expected '(' at {pos}")
        pos += 1
        if pos < len(text) and text[pos] == "(":
            inner = expr()
        else:
            buf, esc = [], False
            while pos < len(text) and (esc or text[pos] != ")"):
                if text[pos] == "\\" and not esc:
                    esc = True
                else:
                    buf.append(text[pos])
                    esc = False
                pos += 1
            count += 1
            inner = _condition("".join(buf), mod)
        if pos >= len(text) or text[pos] != ")":
            raise ValueError(f"expected ')' at {pos}")
        pos += 1
        return inner

    result = expr()
    if pos != len(text) or count > 10:
        raise ValueError("trailing text or more than 10 conditions")
    return result


def _condition(cond: str, mod: ModuleDef) -> Callable[[dict[str, Any]], bool]:
    field, _, rest = cond.partition(":")
    op, _, value = rest.partition(":")
    f = mod.field(field) if field != "id" else FieldDef("id", "id", "bigint")
    if f is None or op not in _CRIT_OPS:
        raise ValueError("unknown field or operator")
    values = value.split(",") if op in ("in", "between") else [value]

    def coerce(v: Any) -> Any:
        if f.data_type == "datetime":
            return v if isinstance(v, int) else _parse_dt(v)
        if isinstance(v, dict):
            return v.get("id")
        return v.casefold() if isinstance(v, str) else v

    wanted = [coerce(v) for v in values]

    def test(r: dict[str, Any]) -> bool:
        have = coerce(r.get(field) if field != "id" else r["id"])
        w = wanted[0]
        if op == "equals":  # on text Zoho's equals behaves like "contains"
            return isinstance(have, str) and isinstance(w, str) and w in have if f.data_type in (
                "text", "textarea", "email", "phone") else str(have) == str(w)
        if op == "not_equal":
            return str(have) != str(w)
        if op == "starts_with":
            return isinstance(have, str) and have.startswith(str(w))
        if op == "in":
            return str(have) in {str(x) for x in wanted}
        if have is None:
            return False
        try:
            if op == "between":
                return wanted[0] <= have <= wanted[1]
            return {"greater_than": have > w, "greater_equal": have >= w, "less_than": have < w,
                    "less_equal": have <= w}[op]
        except TypeError:
            return False

    return test


# ---------------------------------------------------------------------- COQL
class _CoqlError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


_COQL = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<module>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?(?:\s+order\s+by\s+(?P<order>.+?))?"
    r"(?:\s+limit\s+(?P<a>\d+)(?:\s*,\s*(?P<b>\d+))?)?(?:\s+offset\s+(?P<offset>\d+))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL)
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|>=|<=|=|>|<|\(|\)|,)"
                    r"|(?P<word>[A-Za-z_$][\w$.]*))")


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, "")
    if isinstance(v, dict):
        return (1, str(v.get("id")))
    return (1, v) if isinstance(v, int | float) else (2, str(v))


class _Coql:
    """A SELECT subset: fields, one module, where (comparisons, like, in, is [not] null, and/or, parentheses),
    order by, limit [offset]. Enough for find-by-key and Modified_Time windows."""

    def __init__(self, query: str, stores: dict[str, _Store]) -> None:
        m = _COQL.match(query)
        if m is None:
            raise _CoqlError("SYNTAX_ERROR", "error occured while parsing the query", {"line": 1, "column": 1,
                                                                                        "near": query[:20]})
        module = m.group("module")
        if module not in stores:
            raise _CoqlError("INVALID_MODULE", "the given module is not supported in api", {})
        if not m.group("where"):
            raise _CoqlError("SYNTAX_ERROR", "missing clause", {"clause": "where"})
        self.module = module
        self.mod = stores[module].mod
        self.fields = [f.strip() for f in m.group("fields").split(",")]
        for f in self.fields:
            if f != "id" and self.mod.field(f) is None:
                raise _CoqlError("INVALID_QUERY", "Invalid query formed",
                                 {"column_name": f, "reason": "column given seems to be invalid"})
        if len(self.fields) > 50:
            raise _CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"limit": 50, "param_name": "select"})
        a, b, off = m.group("a"), m.group("b"), m.group("offset")
        self.offset, self.limit = (int(a), int(b)) if b else (int(off or 0), int(a or 200))
        if self.limit < 1:
            raise _CoqlError("INVALID_DATA", "limit should be greater than 0", {})
        if self.limit > 2000:
            raise _CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"limit": 2000, "param_name": "limit"})
        if self.offset + self.limit > TOKEN_LIMIT:
            raise _CoqlError("LIMIT_EXCEEDED", "limit exceeded", {"limit": TOKEN_LIMIT, "param_name": "offset"})
        self.order: list[tuple[str, bool]] = []
        for part in (m.group("order") or "").split(","):
            words = part.split()
            if not words:
                continue
            if words[0] != "id" and self.mod.field(words[0]) is None or len(words) > 2 or (
                    len(words) == 2 and words[1].lower() not in ("asc", "desc")):
                raise _CoqlError("SYNTAX_ERROR", "error occured while parsing the query",
                                 {"line": 1, "column": 1, "near": part.strip()})
            self.order.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
        where = m.group("where")
        self.where: Callable[[dict[str, Any]], bool] = (lambda r: True)
        #: ``(field, value)`` when the whole condition is one equality (served from the unique-field index)
        self.equality: tuple[str, Any] | None = None
        if where:
            self._toks = self._tokenise(where)
            self._i = 0
            self.where = self._or()
            if self._i != len(self._toks):
                raise self._syntax()
            toks = self._toks
            if len(toks) == 3 and toks[0][0] == "word" and toks[1][1] == "=" and toks[2][0] == "str":
                self.equality = (toks[0][1], re.sub(r"\\(.)", r"\1", toks[2][1][1:-1]))

    def _tokenise(self, text: str) -> list[tuple[str, str]]:
        out, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None:
                raise _CoqlError("SYNTAX_ERROR", "error occured while parsing the query",
                                 {"line": 1, "column": pos + 1, "near": text[pos:pos + 10]})
            kind = m.lastgroup or ""
            out.append((kind, m.group(kind)))
            pos = m.end()
        return out

    def _syntax(self) -> _CoqlError:
        near = self._toks[self._i][1] if self._i < len(self._toks) else "end"
        return _CoqlError("SYNTAX_ERROR", "error occured while parsing the query",
                          {"line": 1, "column": self._i + 1, "near": near})

    def _peek(self, value: str | None = None) -> bool:
        if self._i >= len(self._toks):
            return False
        return value is None or self._toks[self._i][1].lower() == value

    def _take(self) -> tuple[str, str]:
        if self._i >= len(self._toks):
            raise self._syntax()
        tok = self._toks[self._i]
        self._i += 1
        return tok

    def _or(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self._and()]
        while self._peek("or"):
            self._i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def _and(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self._primary()]
        while self._peek("and"):
            self._i += 1
            parts.append(self._primary())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def _literal(self, f: FieldDef | None) -> Any:
        kind, raw = self._take()
        if kind == "str":
            value: Any = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "num":
            value = float(raw) if "." in raw else int(raw)
        elif kind == "word" and raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            raise self._syntax()
        if f is not None and f.data_type == "datetime":
            parsed = _parse_dt(value)
            if parsed is None:
                raise _CoqlError("INVALID_QUERY", "Invalid query formed",
                                 {"column_name": f.api_name, "reason": "invalid datetime value"})
            return parsed
        return value

    def _primary(self) -> Callable[[dict[str, Any]], bool]:
        if self._peek("("):
            self._i += 1
            inner = self._or()
            if self._take()[1] != ")":
                raise self._syntax()
            return inner
        kind, name = self._take()
        if kind != "word":
            raise self._syntax()
        f = self.mod.field(name) if name != "id" else None
        if f is None and name != "id":
            raise _CoqlError("INVALID_QUERY", "Invalid query formed", {"column_name": name,
                                                                       "reason": "column given seems to be invalid"})

        def get(r: dict[str, Any]) -> Any:
            v = r["id"] if name == "id" else r.get(name)
            if isinstance(v, dict):
                v = v.get("id")
            if name == "id" or (f is not None and f.data_type in ("lookup", "ownerlookup", "bigint")):
                return int(v) if v is not None and str(v).isdigit() else v
            return v.casefold() if isinstance(v, str) else v

        def norm(v: Any) -> Any:
            if name == "id" or (f is not None and f.data_type in ("lookup", "ownerlookup", "bigint")):
                return int(v) if str(v).isdigit() else v
            return v.casefold() if isinstance(v, str) else v

        op = self._take()[1].lower()
        if op == "is":
            negate = self._peek("not")
            if negate:
                self._i += 1
            if self._take()[1].lower() != "null":
                raise self._syntax()
            return (lambda r: get(r) is not None) if negate else (lambda r: get(r) is None)
        negate = False
        if op == "not":
            negate, op = True, self._take()[1].lower()
        if op == "in":
            if self._take()[1] != "(":
                raise self._syntax()
            values = [norm(self._literal(f))]
            while self._peek(","):
                self._i += 1
                values.append(norm(self._literal(f)))
            if self._take()[1] != ")":
                raise self._syntax()
            vs = set(values)
            return (lambda r: get(r) not in vs) if negate else (lambda r: get(r) in vs)
        if op == "like":
            pattern = str(self._literal(f))
            rx = re.compile("^" + ".*".join(re.escape(p) for p in pattern.casefold().split("%")) + "$")

            def like(r: dict[str, Any]) -> bool:
                have = get(r)
                return isinstance(have, str) and rx.match(have) is not None

            return (lambda r: not like(r)) if negate else like
        if op not in ("=", "!=", ">", ">=", "<", "<=") or negate:
            raise self._syntax()
        value = norm(self._literal(f))

        def compare(r: dict[str, Any]) -> bool:
            have = get(r)
            if op == "=":
                return have == value
            if op == "!=":
                return have != value
            if have is None:
                return False
            try:
                return {">": have > value, ">=": have >= value, "<": have < value, "<=": have <= value}[op]
            except TypeError:
                return False

        return compare

