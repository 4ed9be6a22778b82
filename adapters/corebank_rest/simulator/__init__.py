"""A Fineract-shaped core-banking REST service on loopback (and a second, differently shaped bank service).

Dialect ``fineract`` (default), after Apache Fineract's ``ClientsApiResource`` (docs/vendors/corebank.md §5):

=================================================================== ===============================================
``GET  /fineract-provider/api/v1/clients``                           ``offset, limit`` (default 200, ``<= 0`` =
                                                                     unlimited), ``orderBy, sortOrder``, filters
                                                                     ``externalId, displayName, officeId``,
                                                                     ``fields``; ``{totalFilteredRecords, pageItems}``
``GET  /fineract-provider/api/v1/clients/{id}``                      one client (404 ``error.msg.client.id.invalid``)
``GET  /fineract-provider/api/v1/clients/external-id/{externalId}``  one client by external id
``PUT  /fineract-provider/api/v1/clients/{id}`` (and by external id) ``{officeId, clientId, resourceId, changes}``
``POST /fineract-provider/api/v1/clients``                           create (``{officeId, clientId, resourceId,
                                                                     resourceExternalId}``)
``DELETE /fineract-provider/api/v1/clients/{id}``                    pending clients only (403 otherwise)
``GET  /fineract-provider/api/v1/clients/{id}/identifiers``          ID documents (resident ID, USCC)
=================================================================== ===============================================

Every call needs ``Fineract-Platform-TenantId`` (or ``?tenantIdentifier=``; missing/unknown → 400 from the tenant
filter, as Fineract's ``TenantAwareBasicAuthenticationFilter`` does) and HTTP Basic (demo ``mifos``/``password``;
refused → 401 with ``WWW-Authenticate: Basic realm="Fineract Platform API"``). Dates are ``[yyyy, m, d]`` arrays,
enums ``{id, code, value}``, code values ``{id, name, active, mandatory}``. Errors use Fineract's body
(``developerMessage, httpStatusCode, defaultUserMessage, userMessageGlobalisationCode, errors[]``); unsupported
PUT parameters are refused as Fineract does; a duplicate ``externalId`` is a 403 data-integrity error.

**Simulator extension (not stock Fineract)**: with ``Knobs.extra["versioned"]`` (default true) each client has an
integer ``version`` that grows on every change, and a PUT whose body carries a ``version`` other than the
current one is refused with 409 ``error.msg.client.version.stale``. Stock Fineract has no client version; banks
that need optimistic concurrency add one (a datatable, a gateway), which this stands for.

Dialect ``openbank`` (``Knobs.extra["dialect"]``): a different bank's JSON service, to prove the adapter fits by
configuration alone: OAuth2 client credentials at ``POST /oauth/token`` (form; ``crm-sync``/``s3cret``), bearer
tokens that expire (``token_lifetime``), ``GET /api/v2/customers?page=&size=&updatedSince=`` (1-based pages, at
most 100, ascending by ``updatedAt``) → ``{data, meta{page,size,totalPages,totalElements}, links{self,next},
warnings[]}``,
``GET /api/v2/customers/{customerNo}`` → ``{data}``, ``PUT /api/v2/customers/{customerNo}/contact`` with
``If-Match`` (stale → 412) → ``{data}``; string timestamps with offsets (``2024-03-01T08:00:00+08:00``) and
dates (``1990-05-17``); errors ``{code, message, field}``.

**Change-list modes** (``Knobs.extra``, also ``crmbridge simulate corebank-rest --extra KEY=VALUE``), to break the
convenient assumptions a change feed invites (issue 13):

* ``change_filter`` (Fineract, default false): a modification-time extension some banks add to their Fineract: each
  client carries ``lastModifiedDate`` (ISO 8601 with offset), the list takes ``modifiedSince`` and
  ``modifiedUntil`` and sorts by ``orderBy=lastModifiedDate``. The ``openbank`` dialect always has its
  ``updatedSince``/``updatedUntil``.
* ``since_boundary`` (``inclusive`` | ``exclusive``, default inclusive): whether the modified-since filter keeps
  records stamped exactly at the given second. Setting it on the Fineract dialect turns ``change_filter`` on.
* ``same_second`` (N): the N newest records share one modification second.
* ``edit_during_read`` (K): after each of the next K list replies, the first record of that reply (already read
  by the client) is edited, so it moves to the end of a modification-ordered list.
* ``gateway`` (kind) with ``gateway_times`` (default 1): the first requests get a gateway's reply instead of the
  service's (:data:`GATEWAY_REPLIES`: 502/503/504 with HTML, empty or plain-text bodies, and HTTP 200 with a
  truncated JSON, empty or HTML body). Tests call :meth:`CorebankRestSimulator.inject_gateway`.

With ``Knobs.rate_limit`` set, replies carry ``X-RateLimit-Limit``/``X-RateLimit-Remaining``.

Records come from :mod:`crmbridge.canonical.synthetic` (individuals and corporates, ``bad_fraction`` defective).
"""

from __future__ import annotations

import base64
import copy
import random
import secrets
import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from crmbridge.adapters.corebank_rest.simulator.accounts import (
    LOAN_STATUS,
    loan_account,
    loan_status,
    savings_account,
    savings_status,
)
from crmbridge.adapters.simulator import Fault, Knobs, Request, Response, Simulator
from crmbridge.canonical.synthetic import SyntheticCustomer, customer_at

__all__ = ["FINERACT_PREFIX", "GATEWAY_REPLIES", "OPENBANK_PREFIX", "CorebankRestSimulator", "fineract_client",
           "openbank_customer"]

FINERACT_PREFIX = "/fineract-provider/api/v1"
OPENBANK_PREFIX = "/api/v2"
_CST = timezone(timedelta(hours=8))
_ORDER_BY = {"id", "displayName", "accountNo", "externalId", "officeId", "officeName", "mobileNo"}
_PUT_PARAMS = {"firstname", "middlename", "lastname", "fullname", "mobileNo", "emailAddress", "externalId",
               "dateOfBirth", "dateFormat", "locale", "genderId", "staffId", "clientTypeId",
               "clientClassificationId", "isStaff", "legalFormId"}
_STATUS = {
    "pending": {"id": 100, "code": "clientStatusType.pending", "value": "Pending"},
    "active": {"id": 300, "code": "clientStatusType.active", "value": "Active"},
    "closed": {"id": 600, "code": "clientStatusType.closed", "value": "Closed"},
}
_LEGAL_FORM = {
    1: {"id": 1, "code": "legalFormType.person", "value": "Person"},
    2: {"id": 2, "code": "legalFormType.entity", "value": "Entity"},
}
_GENDER = {"MALE": {"id": 15, "name": "Male", "active": True, "mandatory": False},
           "FEMALE": {"id": 16, "name": "Female", "active": True, "mandatory": False}}
_HTML_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
             b"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
_JSON = {"Content-Type": "application/json;charset=UTF-8"}
#: What a gateway in front of the core sends instead of the service's reply: kind -> (status, headers, body).
GATEWAY_REPLIES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "502_html": (502, {"Content-Type": "text/html"}, _HTML_502),
    "503_empty": (503, {"Retry-After": "2"}, b""),
    "504_text": (504, {"Content-Type": "text/plain"}, b"upstream request timeout"),
    "200_truncated": (200, _JSON, b'{"totalFilteredRecords": 23, "pageItems": [{"id": 1, "acc'),
    "200_empty": (200, _JSON, b""),
    "200_html": (200, {"Content-Type": "text/html"},
                 b"<html><body>Session expired. <a href='/login'>Log in</a></body></html>"),
}
_DOC_TYPE = {"CN_RIC": {"id": 1, "name": "Resident Identity Card"},
             "CN_USCC": {"id": 2, "name": "Unified Social Credit Code"}}


def _arr(d: date | datetime | None) -> list[int] | None:
    return None if d is None else [d.year, d.month, d.day]


def _status_key(c: SyntheticCustomer) -> str:
    return {"CLOSED": "closed", "PROSPECT": "pending"}.get(c.lifecycle_stage, "active")


# ---------------------------------------------------------------------- the one place seed data is shaped
def fineract_client(c: SyntheticCustomer, client_id: int) -> dict[str, Any]:
    """A synthetic customer as Fineract's ``ClientData`` JSON (without the simulator's ``version``)."""
    person = c.is_individual
    created = c.created_at.astimezone(_CST).date()
    status = _status_key(c)
    out: dict[str, Any] = {
        "id": client_id, "accountNo": f"{client_id:09d}", "externalId": None,
        "status": dict(_STATUS[status]), "active": status == "active",
        "activationDate": _arr(created) if status != "pending" else None,
        "officeId": int(c.branch_code), "officeName": c.branch_name,
        "staffId": int(c.rm_id.lstrip("E")), "staffName": c.rm_name,
        "mobileNo": c.mobile, "emailAddress": c.email,
        "legalForm": dict(_LEGAL_FORM[1 if person else 2]),
        "timeline": {"submittedOnDate": _arr(created),
                     "activatedOnDate": _arr(created) if status != "pending" else None},
    }
    if person:
        out.update(firstname=c.given_name, lastname=c.family_name,
                   displayName=f"{c.given_name} {c.family_name}" if c.name else None,
                   dateOfBirth=_arr(c.birth_date), gender=dict(_GENDER[c.gender or "MALE"]))
    else:
        out.update(fullname=c.name, displayName=c.name,
                   clientNonPersonDetails={"incorpNumber": c.id_number,
                                           "incorpValidityTillDate": None, "remarks": None,
                                           "constitution": {"id": 20, "name": c.legal_form or "OTHER"}})
    if status == "closed":
        out["timeline"]["closedOnDate"] = _arr(c.updated_at.astimezone(_CST).date())
    return out


def openbank_customer(c: SyntheticCustomer, number: int) -> dict[str, Any]:
    """A synthetic customer as the ``openbank`` dialect's customer JSON (without ``etag``/``updatedAt``)."""
    return {
        "customerNo": f"C{number:07d}", "customerType": "PERSON" if c.is_individual else "COMPANY",
        "fullName": c.name, "mobile": c.mobile, "email": c.email,
        "birthDate": c.birth_date.isoformat() if c.birth_date else None,
        "idType": "RIC" if c.id_scheme == "CN_RIC" else "USCC", "idNumber": c.id_number,
        "branch": c.branch_code, "status": c.lifecycle_stage,
    }


def _fineract_error(status: int, code: str, message: str, *, parameter: str | None = None,
                    value: Any = None, global_code: str | None = None) -> Response:
    errors = [{"developerMessage": message, "defaultUserMessage": message, "userMessageGlobalisationCode": code,
               "parameterName": parameter or "id", "value": value, "args": []}]
    return Response.json({"developerMessage": message, "httpStatusCode": str(status), "defaultUserMessage": message,
                          "userMessageGlobalisationCode": global_code or code, "errors": errors}, status)


def _servlet_error(status: int, error: str, message: str, path: str, headers: dict[str, str] | None = None
                   ) -> Response:
    """What Spring Boot's error controller sends for ``response.sendError`` (filters: tenant, auth)."""
    return Response.json({"timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"), "status": status,
                          "error": error, "message": message, "path": path}, status, headers)


def _ob_error(status: int, code: str, message: str, field: str | None = None,
              headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return Response.json(body, status, {"X-Request-Id": secrets.token_hex(6), **(headers or {})})


class CorebankRestSimulator(Simulator):
    """Fineract clients API (default) or the ``openbank`` dialect, seeded from the synthetic generator.

    Knobs: ``seed``, ``records``, ``bad_fraction``, ``token_lifetime`` (openbank), and ``extra``: ``dialect``
    (``fineract`` | ``openbank``), ``username``/``password``/``tenants`` (Fineract; default ``mifos``,
    ``password``, ``["default"]``), ``client_id``/``client_secret`` (openbank), ``versioned`` (Fineract, default
    true), ``retry_after`` (seconds sent with 429, default 1), and the change-list and gateway modes of the module
    docstring: ``change_filter``, ``since_boundary``, ``same_second``, ``edit_during_read``, ``gateway``,
    ``gateway_times``.

    Direct access for tests: :meth:`seed`, :meth:`count`, :meth:`ids`, :meth:`record`, :meth:`touch`,
    :meth:`stamp`, :meth:`inject_gateway`, :attr:`list_queries`.
    """

    vendor = "corebank_rest"

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(knobs, host=host, port=port)
        x = self.knobs.extra
        self.dialect: str = x.get("dialect", "fineract")
        if self.dialect not in ("fineract", "openbank"):
            raise ValueError(f"unknown dialect {self.dialect!r}; known: fineract, openbank")
        self.username: str = x.get("username", "mifos")
        self.password: str = x.get("password", "password")
        self.tenants: list[str] = list(x.get("tenants", ["default"]))
        self.client_id: str = x.get("client_id", "crm-sync")
        self.client_secret: str = x.get("client_secret", "s3cret")
        self.versioned: bool = bool(x.get("versioned", True))
        self.retry_after: float = float(x.get("retry_after", 1))
        boundary = x.get("since_boundary")
        if boundary not in (None, "inclusive", "exclusive"):
            raise ValueError(f"unknown since_boundary {boundary!r}; known: inclusive, exclusive")
        self.since_boundary: str = boundary or "inclusive"
        self.change_filter: bool = self.dialect == "openbank" or bool(x.get("change_filter", boundary is not None))
        self.same_second: int = int(x.get("same_second", 0))
        self.edit_during_read: int = int(x.get("edit_during_read", 0))
        self._gateway: list[str] = []
        #: the query of every list request, in order (for tests)
        self.list_queries: list[dict[str, str]] = []
        if x.get("gateway"):
            self.inject_gateway(str(x["gateway"]), int(x.get("gateway_times", 1)))
        self.records: dict[str, dict[str, Any]] = {}
        #: Fineract savings accounts and loans by id (fineract dialect; :mod:`.accounts`)
        self.savings: dict[str, dict[str, Any]] = {}
        self.loans: dict[str, dict[str, Any]] = {}
        self.identifiers: dict[str, list[dict[str, Any]]] = {}
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self._next_id = 1
        self._last_ts = datetime.min.replace(tzinfo=UTC)
        self.seed(self.knobs.records)

    # ---------------------------------------------------------------- direct access for tests
    def seed(self, n: int) -> None:
        """Hold exactly the first ``n`` synthetic customers of ``(seed, bad_fraction)``."""
        with self.lock:
            self.records, self.identifiers = {}, {}
            for i in range(n):
                c = customer_at(i, self.knobs.seed, self.knobs.bad_fraction)
                if self.dialect == "fineract":
                    rec = fineract_client(c, i + 1)
                    if self.versioned:
                        rec["version"] = 1
                    if self.change_filter:
                        rec["lastModifiedDate"] = c.updated_at.astimezone(_CST).replace(microsecond=0).isoformat()
                    self.records[str(i + 1)] = rec
                    self.identifiers[str(i + 1)] = [{
                        "id": i + 1, "clientId": i + 1, "documentType": dict(_DOC_TYPE[c.id_scheme]),
                        "documentKey": c.id_number, "description": None,
                        "status": "clientIdentifierStatusType.active"}]
                else:
                    rec = openbank_customer(c, i + 1)
                    rec["updatedAt"] = c.updated_at.astimezone(_CST).replace(microsecond=0).isoformat()
                    rec["etag"] = "1"
                    self.records[rec["customerNo"]] = rec
            self._next_id = n + 1
            if self.change_filter and self.same_second > 0:
                newest = sorted(self.records.values(), key=self._stamp)[-self.same_second:]
                top = max(newest, key=self._stamp)[self._stamp_field]
                for rec in newest:
                    rec[self._stamp_field] = top
            if self.change_filter and self.records:
                self._last_ts = max(self._stamp(r) for r in self.records.values())
            if self.dialect == "fineract":
                self._seed_accounts(n)

    def _seed_accounts(self, n: int) -> None:
        """Savings and loan accounts of the first ``n`` clients: client i holds ``i % 3`` savings accounts (one in
        five of them closed) and a loan when ``i % 4 == 0`` (one in three closed); knob ``orphan_accounts`` adds
        savings accounts of clients the client list does not hold yet (a child listed before its parent)."""
        self.savings, self.loans = {}, {}
        rng = random.Random(f"corebank-accounts:{self.knobs.seed}")
        sid = lid = 0
        for i in range(1, n + 1):
            client = self.records[str(i)]
            opened = date(2019, 1, 1) + timedelta(days=(i * 37) % 2000)
            for k in range(i % 3):
                sid += 1
                self.savings[str(sid)] = savings_account(sid, i, client.get("displayName"), rng,
                                                         opened + timedelta(days=k * 90), closed=sid % 5 == 0)
            if i % 4 == 0:
                lid += 1
                self.loans[str(lid)] = loan_account(lid, i, client.get("displayName"), rng, opened,
                                                    closed=lid % 3 == 0)
        for _ in range(int(self.knobs.extra.get("orphan_accounts", 0))):
            sid += 1
            self.savings[str(sid)] = savings_account(sid, n + 1000 + sid, None, rng, date(2026, 11, 1))

    def seed_savings(self, n: int) -> None:
        """Hold exactly ``n`` savings accounts (of the seeded clients, round robin; tests)."""
        with self.lock:
            rng = random.Random(f"corebank-savings:{self.knobs.seed}:{n}")
            clients = sorted(self.records, key=int) or ["1"]
            self.savings = {}
            for sid in range(1, n + 1):
                cid = clients[(sid - 1) % len(clients)]
                self.savings[str(sid)] = savings_account(sid, int(cid), self.records.get(cid, {}).get("displayName"),
                                                         rng, date(2020, 1, 1) + timedelta(days=sid))

    def set_account_status(self, kind: str, aid: str, status: int, on: date | None = None) -> None:
        """Change a savings account (``kind="savings"``) or loan status as the core's back office would; closing
        sets ``timeline.closedOnDate`` and zeroes the balance."""
        with self.lock:
            rec = (self.savings if kind == "savings" else self.loans)[str(aid)]
            rec["status"] = savings_status(status) if kind == "savings" else loan_status(status)
            closed = status in (600, 601, 602, 700) if kind != "savings" else status in (600, 700, 800)
            if closed:
                rec["timeline"]["closedOnDate"] = _arr(on or date(2026, 12, 1))
                if kind == "savings":
                    rec["summary"].update(accountBalance=0.0, availableBalance=0.0)
                else:
                    rec["summary"].update(principalOutstanding=0.0, totalOutstanding=0.0)

    @property
    def _stamp_field(self) -> str:
        return "lastModifiedDate" if self.dialect == "fineract" else "updatedAt"

    def _stamp(self, rec: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(rec[self._stamp_field])

    def stamp(self, rid: str) -> datetime:
        """A record's modification time (change-filter modes), aware."""
        with self.lock:
            return self._stamp(self.records[str(rid)])

    def inject_gateway(self, kind: str, times: int = 1) -> None:
        """Make the next ``times`` requests get a gateway's reply (:data:`GATEWAY_REPLIES`)."""
        if kind not in GATEWAY_REPLIES:
            raise ValueError(f"unknown gateway reply {kind!r}; known: {', '.join(GATEWAY_REPLIES)}")
        with self.lock:
            self._gateway.extend([kind] * times)

    def count(self) -> int:
        with self.lock:
            return len(self.records)

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.records)

    def record(self, rid: str) -> dict[str, Any] | None:
        with self.lock:
            rec = self.records.get(str(rid))
            return copy.deepcopy(rec) if rec is not None else None

    def touch(self, rid: str, **changes: Any) -> None:
        """Change a record as a teller would (version/etag and updatedAt move on)."""
        with self.lock:
            self._apply(self.records[str(rid)], changes)

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def banner(self) -> list[str]:
        if self.dialect == "fineract":
            return [
                f"Fineract-shaped core banking (clients API) serving {self.url}{FINERACT_PREFIX}/clients",
                f"  base_url for crmbridge: {self.url}/fineract-provider/api",
                f"  auth: HTTP Basic {self.username}/{'*' * len(self.password)}; "
                f"header Fineract-Platform-TenantId: {self.tenants[0]}",
                f"  {self.count()} clients (seed {self.knobs.seed}, bad fraction {self.knobs.bad_fraction})",
            ]
        return [f"openbank customer service serving {self.url}{OPENBANK_PREFIX}/customers",
                f"  token: POST {self.url}/oauth/token (client_credentials, client_id={self.client_id})",
                f"  {self.count()} customers (seed {self.knobs.seed})"]

    # ---------------------------------------------------------------- faults in the vendor's shape
    def fault_response(self, fault: Fault, req: Request) -> Response:
        if fault is Fault.THROTTLE:
            hdr = {"Retry-After": f"{self.retry_after:g}"}
            if self.dialect == "fineract":
                r = _fineract_error(429, "error.msg.platform.rate.limit", "Too many requests")
                r.headers.update(hdr)
                return r
            return _ob_error(429, "TOO_MANY_REQUESTS", "rate limit exceeded", headers=hdr)
        if fault is Fault.TOKEN_EXPIRED:
            if self.dialect == "fineract":
                return _servlet_error(401, "Unauthorized", "Unauthorized", req.path,
                                      {"WWW-Authenticate": 'Basic realm="Fineract Platform API"'})
            if req.path.rstrip("/") == "/oauth/token":
                return self.handle(req)  # only a call carrying a token can be told it expired
            return Response.json({"error": "invalid_token", "error_description": "The access token expired"}, 401,
                                 {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if self.dialect == "fineract":
            return _fineract_error(500, "error.msg.platform.server.side.error",
                                   "An unexpected error occurred on the platform server.")
        return _ob_error(503, "SERVICE_UNAVAILABLE", "service temporarily unavailable")

    # ---------------------------------------------------------------- dispatch
    def handle(self, req: Request) -> Response:
        with self.lock:
            gateway = self._gateway.pop(0) if self._gateway else None
        if gateway is not None:
            status, headers, body = GATEWAY_REPLIES[gateway]
            return Response(status, body, dict(headers))
        resp = self._fineract(req) if self.dialect == "fineract" else self._openbank(req)
        if self.knobs.rate_limit:
            with self.lock:
                used = len(self._window)
            resp.headers.setdefault("X-RateLimit-Limit", f"{self.knobs.rate_limit:g}")
            resp.headers.setdefault("X-RateLimit-Remaining", str(max(0, int(self.knobs.rate_limit) - used)))
        return resp

    def _since_filter(self, rows: list[dict[str, Any]], since: str | None, until: str | None
                      ) -> list[dict[str, Any]] | str:
        """Rows kept by the change filter (the configured boundary semantics), or the name of a bad parameter."""
        bounds: list[datetime | None] = []
        for name, value in (("since", since), ("until", until)):
            if not value:
                bounds.append(None)
                continue
            try:
                # a raw "+08:00" in a query string arrives as " 08:00"
                ts = datetime.fromisoformat(value.strip().replace(" ", "+").replace("Z", "+00:00"))
            except ValueError:
                return name
            bounds.append(ts if ts.tzinfo is not None else ts.replace(tzinfo=_CST))
        lo, hi = bounds
        exclusive = self.since_boundary == "exclusive"
        return [r for r in rows
                if (lo is None or (self._stamp(r) > lo if exclusive else self._stamp(r) >= lo))
                and (hi is None or self._stamp(r) <= hi)]

    def _after_list(self, req: Request, served: list[dict[str, Any]]) -> None:
        """``edit_during_read``: a teller edits a record the client has just read."""
        with self.lock:
            self.list_queries.append({k: v[0] for k, v in req.query.items()})
            if self.edit_during_read > 0 and served:
                self.edit_during_read -= 1
                first = served[0]
                key = str(first.get("id", first.get("customerNo")))
                if key in self.records:
                    self._apply(self.records[key], {})

    # ================================================================ Fineract
    def _fineract(self, req: Request) -> Response:
        if not req.path.startswith(FINERACT_PREFIX + "/"):
            return _servlet_error(404, "Not Found", "No static resource", req.path)
        tenant = req.headers.get("fineract-platform-tenantid") or req.q("tenantIdentifier")
        if not tenant:
            return _servlet_error(400, "Bad Request", "No tenant identifier found: Add request header of "
                                  "'Fineract-Platform-TenantId' or add the parameter 'tenantIdentifier' to query "
                                  "string of request URL.", req.path)
        if tenant not in self.tenants:
            return _servlet_error(400, "Bad Request", f"The tenant identifier: {tenant} is not valid.", req.path)
        if not self._basic_ok(req):
            return _servlet_error(401, "Unauthorized", "Unauthorized", req.path,
                                  {"WWW-Authenticate": 'Basic realm="Fineract Platform API"'})
        parts = [p for p in req.path[len(FINERACT_PREFIX):].split("/") if p]
        if parts and parts[0] in ("savingsaccounts", "loans"):
            return self._f_accounts(req, parts[0], parts[1:])
        if not parts or parts[0] != "clients":
            return _servlet_error(404, "Not Found", "No static resource", req.path)
        rest = parts[1:]
        if not rest:
            if req.method == "GET":
                return self._f_list(req)
            if req.method == "POST":
                return self._f_create(req)
        elif rest[0] == "external-id" and len(rest) == 2:
            cid = next((k for k, r in self.records.items() if r.get("externalId") == rest[1]), None)
            if cid is None:
                return _fineract_error(404, "error.msg.client.external.id.invalid",
                                       "Client with this external identifier does not exist")
            return self._f_one(req, cid)
        elif len(rest) == 1:
            return self._f_one(req, rest[0])
        elif len(rest) == 2 and rest[1] == "identifiers" and req.method == "GET":
            if rest[0] not in self.records:
                return _fineract_error(404, "error.msg.client.id.invalid", f"Client with identifier {rest[0]} "
                                       "does not exist")
            return Response.json(copy.deepcopy(self.identifiers.get(rest[0], [])))
        return _servlet_error(405, "Method Not Allowed", "Method not allowed", req.path)

    def _f_accounts(self, req: Request, kind: str, rest: list[str]) -> Response:
        """``/savingsaccounts`` and ``/loans``: list, one by id, one by external id (read-only here)."""
        table = self.savings if kind == "savingsaccounts" else self.loans
        what, code = (("Savings account", "error.msg.saving.account.id.invalid") if kind == "savingsaccounts"
                      else ("Loan", "error.msg.loan.id.invalid"))
        if req.method != "GET":
            return _servlet_error(405, "Method Not Allowed", "Method not allowed", req.path)
        if len(rest) == 2 and rest[0] == "external-id":
            with self.lock:
                rec = next((r for r in table.values() if r.get("externalId") == rest[1]), None)
            if rec is None:
                return _fineract_error(404, code.replace(".id.", ".external.id."),
                                       f"{what} with external identifier {rest[1]} does not exist")
            return Response.json(copy.deepcopy(rec))
        if len(rest) == 1:
            with self.lock:
                rec = table.get(rest[0])
            if rec is None:
                return _fineract_error(404, code, f"{what} with identifier {rest[0]} does not exist")
            return Response.json(copy.deepcopy(rec))
        if rest:
            return _servlet_error(404, "Not Found", "No static resource", req.path)
        try:
            offset = int(req.q("offset") or 0)
            limit = int(req.q("limit") or 0)    # no default limit: without one, every account (Fineract)
        except ValueError:
            return _fineract_error(400, "validation.msg.validation.errors.exist", "offset and limit must be integers",
                                   parameter="limit")
        order_by, sort = req.q("orderBy"), (req.q("sortOrder") or "ASC").upper()
        if order_by is not None and order_by not in ("id", "accountNo", "externalId", "clientId"):
            return _fineract_error(400, "error.msg.invalid.orderBy", f"orderBy {order_by} is not supported",
                                   parameter="orderBy")
        if sort not in ("ASC", "DESC") or offset < 0:
            return _fineract_error(400, "error.msg.invalid.sortOrder", "sortOrder must be ASC or DESC",
                                   parameter="sortOrder")
        with self.lock:
            rows = list(table.values())
            if req.q("externalId") is not None:
                rows = [r for r in rows if r.get("externalId") == req.q("externalId")]
            if kind == "loans":
                if req.q("accountNo") is not None:
                    rows = [r for r in rows if r["accountNo"] == req.q("accountNo")]
                if req.q("status") is not None:
                    raw = req.q("status") or ""
                    if not raw.lstrip("-").isdigit():   # Integer.parseInt in LoansApiResource
                        return _fineract_error(500, "error.msg.platform.server.side.error",
                                               f"For input string: \"{raw}\"")
                    if int(raw) not in LOAN_STATUS:
                        return _fineract_error(400, "validation.msg.loan.status.invalid", "unknown loan status",
                                               parameter="status")
                    rows = [r for r in rows if r["status"]["id"] == int(raw)]
            key = order_by or "id"
            rows.sort(key=lambda r: (r.get(key) is None, r.get(key) if r.get(key) is not None else "", r["id"]),
                      reverse=sort == "DESC")
            total = len(rows)
            page = rows[offset:offset + limit] if limit > 0 else rows[offset:]
            return Response.json({"totalFilteredRecords": total, "pageItems": copy.deepcopy(page)})

    def _basic_ok(self, req: Request) -> bool:
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, pw = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.username) and secrets.compare_digest(pw, self.password)

    def _f_list(self, req: Request) -> Response:
        try:
            offset = int(req.q("offset") or 0)
            limit = int(req.q("limit") or 200)
        except ValueError:
            return _fineract_error(400, "validation.msg.validation.errors.exist", "offset and limit must be integers",
                                   parameter="limit")
        order_by, sort = req.q("orderBy"), (req.q("sortOrder") or "ASC").upper()
        orderable = _ORDER_BY | ({"lastModifiedDate"} if self.change_filter else set())
        if order_by is not None and order_by not in orderable:
            return _fineract_error(400, "error.msg.invalid.orderBy", f"orderBy {order_by} is not supported",
                                   parameter="orderBy")
        if sort not in ("ASC", "DESC") or offset < 0:
            return _fineract_error(400, "error.msg.invalid.sortOrder", "sortOrder must be ASC or DESC",
                                   parameter="sortOrder")
        with self.lock:
            rows = list(self.records.values())
            for param in ("externalId", "displayName", "officeId"):
                want = req.q(param)
                if want is not None:
                    rows = [r for r in rows if str(r.get(param)) == want]
            if self.change_filter:
                kept = self._since_filter(rows, req.q("modifiedSince"), req.q("modifiedUntil"))
                if isinstance(kept, str):
                    return _fineract_error(400, "validation.msg.validation.errors.exist",
                                           f"modified{kept.title()} is not a date-time", parameter=f"modified{kept}")
                rows = kept
            key = order_by or "id"
            rows.sort(key=lambda r: (r.get(key) is None, r.get(key) if r.get(key) is not None else "", r["id"]),
                      reverse=sort == "DESC")
            total = len(rows)
            page = rows[offset:offset + limit] if limit > 0 else rows[offset:]
            items = [self._project(r, req.q("fields")) for r in page]
        self._after_list(req, page)
        return Response.json({"totalFilteredRecords": total, "pageItems": items})

    @staticmethod
    def _project(rec: dict[str, Any], fields: str | None) -> dict[str, Any]:
        out = copy.deepcopy(rec)
        if fields:
            wanted = {f.strip() for f in fields.split(",") if f.strip()}
            out = {k: v for k, v in out.items() if k in wanted}
        return out

    def _f_one(self, req: Request, cid: str) -> Response:
        with self.lock:
            rec = self.records.get(cid)
            if rec is None:
                return _fineract_error(404, "error.msg.client.id.invalid",
                                       f"Client with identifier {cid} does not exist")
            if req.method == "GET":
                return Response.json(self._project(rec, req.q("fields")))
            if req.method == "PUT":
                return self._f_update(req, rec)
            if req.method == "DELETE":
                if rec["status"]["id"] != 100:
                    return _fineract_error(403, "error.msg.client.delete.not.in.submittedandpendingapproval.state",
                                           "Client cannot be deleted: it is not pending")
                del self.records[cid]
                return Response.json({"officeId": rec["officeId"], "clientId": rec["id"], "resourceId": rec["id"]})
        return _servlet_error(405, "Method Not Allowed", "Method not allowed", req.path)

    def _f_body(self, req: Request) -> dict[str, Any] | Response:
        try:
            body = req.json()
        except ValueError:
            return _fineract_error(400, "error.msg.invalid.request.body", "The request body is not valid JSON")
        if not isinstance(body, dict):
            return _fineract_error(400, "error.msg.invalid.request.body", "The request body is not a JSON object")
        return body

    def _f_validate(self, body: dict[str, Any], allowed: set[str]) -> Response | None:
        def invalid(param: str, code: str, message: str) -> Response:
            return _fineract_error(400, f"validation.msg.client.{param}.{code}", message, parameter=param,
                                   global_code="validation.msg.validation.errors.exist")

        for k in body:
            if k not in allowed:
                return _fineract_error(400, "error.msg.parameter.unsupported", f"The parameter {k} is not supported",
                                       parameter=k, global_code="validation.msg.validation.errors.exist")
        for param, limit in (("mobileNo", 50), ("emailAddress", 100), ("externalId", 100), ("firstname", 50),
                             ("lastname", 50), ("fullname", 100)):
            v = body.get(param)
            if v is not None and (not isinstance(v, str) or len(v) > limit):
                return invalid(param, "exceeds.max.length", f"The parameter {param} exceeds max length of {limit}.")
        email = body.get("emailAddress")
        if isinstance(email, str) and email and "@" not in email:
            return invalid("emailAddress", "invalid", "The parameter emailAddress is not a valid e-mail address.")
        if "dateOfBirth" in body and (not body.get("dateFormat") or not body.get("locale")):
            return invalid("dateFormat", "cannot.be.blank", "The parameter dateFormat is mandatory.")
        return None

    def _f_update(self, req: Request, rec: dict[str, Any]) -> Response:
        body = self._f_body(req)
        if isinstance(body, Response):
            return body
        allowed = _PUT_PARAMS | ({"version"} if self.versioned else set())
        bad = self._f_validate(body, allowed)
        if bad is not None:
            return bad
        if self.versioned and "version" in body and body["version"] != rec["version"]:
            return _fineract_error(409, "error.msg.client.version.stale",
                                   "The client was changed by another user since it was read", parameter="version")
        ext = body.get("externalId")
        if ext and any(r.get("externalId") == ext and r["id"] != rec["id"] for r in self.records.values()):
            return _fineract_error(403, "error.msg.client.duplicate.externalId",
                                   "Client with this externalId already exists", parameter="externalId")
        changes: dict[str, Any] = {}
        fields = {k: v for k, v in body.items() if k not in ("version", "dateFormat", "locale")}
        if "dateOfBirth" in fields:
            try:
                fields["dateOfBirth"] = _arr(datetime.strptime(str(fields["dateOfBirth"]), _java_format(
                    str(body["dateFormat"]))))
            except ValueError:
                return _fineract_error(400, "validation.msg.client.dateOfBirth.invalid.date",
                                       "The parameter dateOfBirth is invalid", parameter="dateOfBirth")
        for k, v in fields.items():
            if rec.get(k) != v:
                changes[k] = v
        if changes:
            changes.update({k: body[k] for k in ("dateFormat", "locale") if k in body})
            self._apply(rec, {k: v for k, v in fields.items() if rec.get(k) != v})
        return Response.json({"officeId": rec["officeId"], "clientId": rec["id"], "resourceId": rec["id"],
                              "changes": changes})

    def _f_create(self, req: Request) -> Response:
        body = self._f_body(req)
        if isinstance(body, Response):
            return body
        bad = self._f_validate(body, _PUT_PARAMS | {"officeId", "active", "activationDate", "submittedOnDate",
                                                    "savingsProductId", "address", "datatables"})
        if bad is not None:
            return bad
        for required in ("officeId", "legalFormId"):
            if body.get(required) is None:
                return _fineract_error(400, f"validation.msg.client.{required}.cannot.be.blank",
                                       f"The parameter {required} is mandatory.", parameter=required,
                                       global_code="validation.msg.validation.errors.exist")
        ext = body.get("externalId")
        with self.lock:
            if ext and any(r.get("externalId") == ext for r in self.records.values()):
                return _fineract_error(403, "error.msg.client.duplicate.externalId",
                                       "Client with this externalId already exists", parameter="externalId")
            cid = self._next_id
            self._next_id += 1
            today = _arr(datetime.now(_CST).date())
            person = body["legalFormId"] == 1
            rec: dict[str, Any] = {
                "id": cid, "accountNo": f"{cid:09d}", "externalId": ext,
                "status": dict(_STATUS["active" if body.get("active") else "pending"]),
                "active": bool(body.get("active")), "activationDate": today if body.get("active") else None,
                "officeId": body["officeId"], "officeName": "Head Office",
                "mobileNo": body.get("mobileNo"), "emailAddress": body.get("emailAddress"),
                "legalForm": dict(_LEGAL_FORM[1 if person else 2]),
                "timeline": {"submittedOnDate": today, "activatedOnDate": today if body.get("active") else None},
                "firstname": body.get("firstname"), "lastname": body.get("lastname"),
                "fullname": body.get("fullname"),
                "displayName": body.get("fullname") or " ".join(p for p in (body.get("firstname"),
                                                                             body.get("lastname")) if p),
            }
            if self.versioned:
                rec["version"] = 1
            self.records[str(cid)] = rec
        return Response.json({"officeId": rec["officeId"], "clientId": cid, "resourceId": cid,
                              "resourceExternalId": ext})

    # ================================================================ openbank
    def _openbank(self, req: Request) -> Response:
        if req.path.rstrip("/") == "/oauth/token" and req.method == "POST":
            return self._o_token(req)
        if not req.path.startswith(OPENBANK_PREFIX + "/customers"):
            return _ob_error(404, "NOT_FOUND", "no such route")
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        with self.lock:
            expiry = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or time.monotonic() >= expiry:
            return Response.json({"error": "invalid_token", "error_description": "The access token is invalid or "
                                  "expired"}, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        parts = [p for p in req.path[len(OPENBANK_PREFIX):].split("/") if p]
        if parts == ["customers"] and req.method == "GET":
            return self._o_list(req)
        if len(parts) == 2 and req.method == "GET":
            rec = self.record(parts[1])
            return _ob_error(404, "CUSTOMER_NOT_FOUND", "no such customer") if rec is None else \
                Response.json({"data": rec})
        if len(parts) == 3 and parts[2] == "contact" and req.method == "PUT":
            return self._o_contact(req, parts[1])
        return _ob_error(405, "METHOD_NOT_ALLOWED", "method not allowed")

    def _o_token(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Response.json({"error": "invalid_client", "error_description": "Client authentication failed"},
                                 401)
        lifetime = self.knobs.token_lifetime if self.knobs.token_lifetime is not None else 3600.0
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + lifetime
            self.tokens_issued += 1
        return Response.json({"access_token": token, "token_type": "Bearer", "expires_in": int(lifetime)})

    def _o_list(self, req: Request) -> Response:
        try:
            page = int(req.q("page") or 1)
            size = int(req.q("size") or 20)
            since, until = req.q("updatedSince"), req.q("updatedUntil")
            for value in (since, until):
                if value and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is None:
                    return _ob_error(400, "INVALID_PARAMETER", "updatedSince/updatedUntil need an offset",
                                     "updatedSince")
        except ValueError:
            return _ob_error(400, "INVALID_PARAMETER", "page, size, updatedSince or updatedUntil is invalid")
        if page < 1 or not 1 <= size <= 100:
            return _ob_error(400, "INVALID_PARAMETER", "page starts at 1; size is 1..100", "size")
        with self.lock:
            kept = self._since_filter(list(self.records.values()), since, until)
            rows = kept if isinstance(kept, list) else []
            rows.sort(key=lambda r: (datetime.fromisoformat(r["updatedAt"]), r["customerNo"]))
            served = rows[(page - 1) * size: page * size]
            chunk = copy.deepcopy(served)
        self._after_list(req, served)
        pages = max(1, -(-len(rows) // size))

        def link(p: int) -> str:
            q = {"page": p, "size": size, **({"updatedSince": since} if since else {}),
                 **({"updatedUntil": until} if until else {})}
            return f"{OPENBANK_PREFIX}/customers?{urlencode(q, quote_via=quote)}"

        return Response.json({"data": chunk,
                              "meta": {"page": page, "size": size, "totalPages": pages, "totalElements": len(rows)},
                              "links": {"self": link(page), "next": link(page + 1) if page < pages else None},
                              "warnings": []})

    def _o_contact(self, req: Request, number: str) -> Response:
        try:
            body = req.json()
        except ValueError:
            return _ob_error(400, "INVALID_JSON", "body is not JSON")
        if not isinstance(body, dict):
            return _ob_error(400, "INVALID_JSON", "body must be an object")
        unknown = sorted(set(body) - {"mobile", "email"})
        if unknown:
            return _ob_error(400, "UNKNOWN_FIELD", f"{unknown[0]} cannot be written here", unknown[0])
        mobile, email = body.get("mobile"), body.get("email")
        if mobile is not None and (not isinstance(mobile, str) or not mobile.lstrip("+").isdigit()
                                   or not 5 <= len(mobile) <= 20):
            return _ob_error(422, "INVALID_FIELD", "mobile is not a phone number", "mobile")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            return _ob_error(422, "INVALID_FIELD", "email is not an e-mail address", "email")
        with self.lock:
            rec = self.records.get(number)
            if rec is None:
                return _ob_error(404, "CUSTOMER_NOT_FOUND", "no such customer")
            match = req.headers.get("if-match")
            if match is not None and match.strip('"') != rec["etag"]:
                return _ob_error(412, "PRECONDITION_FAILED", "the customer changed since that etag")
            changes = {k: v for k, v in body.items() if rec.get(k) != v}
            if changes:
                self._apply(rec, changes)
            return Response.json({"data": copy.deepcopy(rec)}, 200, {"ETag": f'"{rec["etag"]}"'})

    # ---------------------------------------------------------------- shared
    def _apply(self, rec: dict[str, Any], changes: dict[str, Any]) -> None:
        rec.update(changes)
        if self.dialect == "fineract":
            if "firstname" in changes or "lastname" in changes:
                rec["displayName"] = " ".join(p for p in (rec.get("firstname"), rec.get("lastname")) if p) or None
            if self.versioned:
                rec["version"] = rec.get("version", 0) + 1
        else:
            rec["etag"] = str(int(rec["etag"]) + 1)
        if self.change_filter:
            now = datetime.now(_CST).replace(microsecond=0)
            if now <= self._last_ts:
                now = (self._last_ts + timedelta(seconds=1)).astimezone(_CST)
            self._last_ts = now
            rec[self._stamp_field] = now.isoformat()


def _java_format(fmt: str) -> str:
    """A Java date pattern as Fineract clients send it (``dd MMMM yyyy``) → strptime."""
    out = fmt
    for java, py in (("yyyy", "%Y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"), ("dd", "%d")):
        out = out.replace(java, py)
    return out
