"""Core-banking SOAP simulators: a FLEXCUBE-style ``FCUBSCustomerService`` and a T24-style TWS service.

Both serve real SOAP 1.1 on loopback through the :class:`~crmbridge.adapters.simulator.Simulator` base:

- ``GET …?wsdl`` returns the WSDL with ``soap:address`` rewritten to the simulator's own URL;
- ``POST`` bodies are parsed with a SAFE lxml parser (no DTD, no entity expansion, no network). A request that
  carries a DTD (an XXE attempt) gets a ``Client`` Fault and nothing from the file system;
- malformed requests (not XML, not an envelope, unknown operation, missing mandatory blocks) get REAL SOAP 1.1
  Faults with HTTP 500;
- business failures (not found, stale modification number, validation) come back with HTTP 200 in the vendor's
  own shape: FLEXCUBE ``MSGSTAT=FAILURE`` + ``FCUBS_ERROR_RESP/ERROR{ECODE, EDESC}``, T24 ``successIndicator``.

:class:`CorebankSoapSimulator` (``crmbridge simulate corebank-soap``) REQUIRES a WS-Security UsernameToken
(PasswordText or PasswordDigest): a missing header is ``wsse:InvalidSecurity``, a wrong password
``wsse:FailedAuthentication``, a ``Created`` older than five minutes ``wsse:MessageExpired``.
:class:`T24StyleSimulator` takes credentials inside the payload (``WebRequestCommon``) like T24 TWS and pages
with a continuation key; it needs the WSDL kept under ``tests/fixtures/corebank_soap/``.

Records come from :class:`CustomerStore`: the shared deterministic synthetic customers
(:func:`crmbridge.canonical.synthetic.customer_at`, valid RICs/USCCs/mobiles plus a ``bad_fraction`` of
realistically defective records) by index, materialised lazily so 100k+ records cost only a sorted index of
stamps, plus the modifications made through the service.

Simulator business codes (FLEXCUBE style, not Oracle's list): ``ST-CUS-001`` no such customer,
``ST-MODNO-01`` stale modification number, ``ST-VALS-0NN`` invalid field value, ``ST-CLOSED-001`` closed
customer, ``ST-REQ-001`` bad request parameter.

Modes (constructor keywords, or ``crmbridge simulate corebank-soap --extra KEY=VALUE``), each breaking an assumption
a client could wrongly make of a real core:

- ``since_boundary=exclusive`` (default ``inclusive``): FLEXCUBE's change list lets through only records stamped
  strictly after ``FROM``: the boundary second itself is left out.
- ``same_second=N``: N customers in the middle of the population share one stamp (a batch job in the core).
- ``edits_during_read=N``: each of the next N change-list calls first edits (as a teller would) the record just
  before the page asked for, which moves it to the end and shifts every later record one place back.
- ``gateway=KIND`` and ``gateway_every=N`` (default 3): every Nth POST is answered by the gateway in front of the
  service instead (:data:`GATEWAY_REPLIES`: ``xhtml503``, ``html503``, ``doctype503``, ``empty503``, ``text503``,
  ``empty502``, ``html429``, ``empty200``, ``truncated200``, ``html200``); ``sim.queue_gateway(KIND, times)`` for
  tests.
- ``max_page_size=N`` (default 1000): larger PAGE_SIZE values are refused (``ST-REQ-001``).
- ``clock_offset_seconds=S`` (default 0): the core's clock runs S seconds ahead of the host's (negative: behind).
  Modifications are stamped by that clock and the WS-Security ``Created`` check judges by it (a PasswordDigest
  more than 300 s off the core's clock is ``wsse:MessageExpired``, as a real service refuses it). Settable while
  running: ``sim.clock_offset_seconds = 600``.

The change list takes an optional ``UNTIL`` (inclusive upper bound) and reports ``Page-Info/AS_OF``, the newest
stamp its answer covers.

Test hooks: ``sim.response_encoding`` / ``sim.declared_encoding`` (e.g. ``"GBK"``; a different declared value
mis-declares the reply), ``sim.queue_raw(body, ...)`` (the next replies verbatim: unsafe or malformed XML),
``sim.store`` (direct access), ``sim.username`` / ``sim.password``.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from crmbridge.adapters.corebank_soap.simulator.accounts import AccountStore
from crmbridge.adapters.simulator import Fault, Knobs, Request, Response, Simulator
from crmbridge.canonical.synthetic import SyntheticCustomer, customer_at

__all__ = [
    "BusinessFailure",
    "CorebankSoapSimulator",
    "CustomerStore",
    "SAFE_PARSER",
    "SoapFault",
    "T24StyleSimulator",
    "fcubs_record",
    "neutral_customer",
    "t24_record",
]

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST = ("http://docs.oasis-open.org/wss/2004/01/"
                   "oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
FCUBS_NS = "http://fcubs.ofss.com/service/FCUBSCustomerService"
FCUBS_ACC_NS = "http://fcubs.ofss.com/service/FCUBSAccService"

#: a parser that cannot be made to read files or the network: no DTD loading, no entity expansion
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                              huge_tree=False, remove_comments=True)

CORE_TZ = ZoneInfo("Asia/Shanghai")


class BusinessFailure(Exception):
    """A business failure the dialect renders in its HTTP-200 shape."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


class SoapFault(Exception):
    """A SOAP 1.1 Fault (HTTP 500)."""

    def __init__(self, code: str, text: str, status: int = 500, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.status = status
        self.headers = headers or {}


# ============================================================================================== synthetic data
def _consent(c: SyntheticCustomer, purpose: str) -> str:
    return "Y" if any(x.purpose == purpose and x.status == "GRANTED" for x in c.consents) else "N"


def neutral_customer(i: int, seed: int, bad_fraction: float = 0.0) -> dict[str, Any]:
    """Customer number ``i`` of the shared synthetic population (:mod:`crmbridge.canonical.synthetic`), with
    vendor-neutral keys; the dialects render it as FLEXCUBE or T24 records. ``bad`` names the record's defect."""
    c = customer_at(i, seed, bad_fraction)
    ind = c.is_individual
    a = c.address
    born = c.birth_date if ind else c.registered_at
    return {
        "ctype": "I" if ind else "C",
        "name": c.name or "", "short_name": (c.name or "")[:20],
        "name_en": (c.pinyin if ind else c.name_en) or "",
        "family": c.family_name, "given": c.given_name,
        "gender": {"MALE": "M", "FEMALE": "F"}.get(c.gender or ""),
        "id_type": {"CN_RIC": "RIC", "CN_USCC": "USCC"}.get(c.id_scheme, c.id_scheme), "id_number": c.id_number,
        "birth_date": born.isoformat() if born else "",
        "nationality": c.nationality or "CN", "country": "CN",
        "mobile": c.mobile, "email": c.email, "phone": None,
        "province": a.province, "city": a.city, "district": a.district, "street": a.street,
        "segment": c.segment, "aum": f"{c.aum:.2f}", "currency": c.currency,
        "rm": c.rm_id, "branch": c.branch_code, "kyc_risk": c.risk_rating, "kyc_status": c.kyc_status,
        "consent_sms": _consent(c, "MARKETING_SMS"), "consent_email": _consent(c, "MARKETING_EMAIL"),
        "consent_crm": _consent(c, "SHARE_WITH_CRM_VENDOR"),
        "created": c.created_at.date().isoformat(),
        "capital": None if c.registered_capital is None else f"{c.registered_capital:.2f}",
        "bad": c.defect,
    }


# ============================================================================================== the store
_WRITABLE = ("mobile", "email", "phone", "province", "city", "district", "street", "consent_sms", "consent_email")


class CustomerStore:
    """Customers by index, materialised lazily; modifications and closures kept as overrides.

    The change index is a sorted list of ``(stamp, custno)``, so ``changed since`` and both paging styles are
    bisections. Base stamps are ``base_time + i × step`` (core local time, naive, whole seconds).
    """

    def __init__(self, records: int = 100, seed: int = 1, bad_fraction: float = 0.0,
                 base_time: datetime = datetime(2025, 6, 2, 9, 0, 0), step_seconds: int = 37,
                 clock: Callable[[], datetime] | None = None, *, since_boundary: str = "inclusive",
                 same_second: int = 0) -> None:
        if since_boundary not in ("inclusive", "exclusive"):
            raise ValueError(f"since_boundary must be inclusive or exclusive, not {since_boundary!r}")
        self.since_boundary = since_boundary
        self.same_second = max(0, int(same_second))
        self.seed = seed
        self.bad_fraction = bad_fraction
        self.base_time = base_time
        self.step = timedelta(seconds=step_seconds)
        self.clock = clock or (lambda: datetime.now(CORE_TZ).replace(tzinfo=None, microsecond=0))
        self.lock = threading.RLock()
        self.reseed(records)

    # ---------------------------------------------------------------- lifecycle
    def reseed(self, n: int) -> None:
        with self.lock:
            self.n = n
            self._overrides: dict[int, dict[str, Any]] = {}
            self._order: list[tuple[str, str]] = [(self._base_stamp(i), self.custno(i)) for i in range(n)]
            self._last_stamp = datetime.fromisoformat(self._base_stamp(max(n - 1, 0)))

    @staticmethod
    def custno(i: int) -> str:
        return f"{i + 1:09d}"

    @staticmethod
    def index(custno: str) -> int | None:
        return int(custno) - 1 if custno.isdigit() and len(custno) == 9 else None

    def _base_stamp(self, i: int) -> str:
        """Base stamps ``base_time + i × step``; with ``same_second`` N, N records in the middle of the
        population share one second (a batch job in the core), and the later ones follow on."""
        n_same = min(self.same_second, getattr(self, "n", 0))
        if n_same > 1:
            first = (self.n - n_same) // 2
            i = i if i < first else max(first, i - n_same + 1)
        return (self.base_time + self.step * i).isoformat()

    def _window_start(self, since: str | None) -> int:
        """Index of the first record the change filter ``since`` lets through: at or after ``since``
        (inclusive), or strictly after it (exclusive: the boundary second itself is left out)."""
        if not since:
            return 0
        if self.since_boundary == "exclusive":
            return bisect.bisect_right(self._order, (since, "\uffff"))
        return bisect.bisect_left(self._order, (since, ""))

    def _window_end(self, until: str | None) -> int:
        return len(self._order) if not until else bisect.bisect_right(self._order, (until, "\uffff"))

    @property
    def newest_stamp(self) -> str:
        """The newest stamp committed (what an answer given now covers)."""
        with self.lock:
            return self._order[-1][0] if self._order else self.base_time.isoformat()

    def custno_at(self, since: str | None, until: str | None, position: int) -> str | None:
        """The customer number at ``position`` of the change list ``since``..``until`` (``None`` past its end)."""
        with self.lock:
            start, end = self._window_start(since), self._window_end(until)
            return self._order[start + position][1] if 0 <= position < end - start else None

    # ---------------------------------------------------------------- reads
    def record(self, i: int) -> dict[str, Any]:
        """The current record ``i`` (a copy)."""
        with self.lock:
            if i in self._overrides:
                return dict(self._overrides[i])
        rec = neutral_customer(i, self.seed, self.bad_fraction)
        stamp = self._base_stamp(i)
        rec.update(custno=self.custno(i), record_stat="O", auth_stat="A", modno=1, stamp=stamp,
                   maker="MIGRATION", maker_stamp=stamp, checker="MIGRATION")
        return rec

    def get(self, custno: str) -> dict[str, Any] | None:
        i = self.index(custno)
        if i is None or not 0 <= i < self.n:
            return None
        return self.record(i)

    def live_count(self) -> int:
        with self.lock:
            return self.n - sum(1 for r in self._overrides.values() if r["record_stat"] == "C")

    def live_ids(self) -> set[str]:
        with self.lock:
            closed = {r["custno"] for r in self._overrides.values() if r["record_stat"] == "C"}
            return {self.custno(i) for i in range(self.n)} - closed

    def _slice(self, start: int, size: int) -> list[dict[str, Any]]:
        with self.lock:
            keys = self._order[start:start + size]
        return [self.record(int(c) - 1) for _, c in keys]

    def page_by_number(self, since: str | None, page_no: int, size: int,
                       until: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Page ``page_no`` (from 1) of the records the change filter ``since`` lets through (see
        ``since_boundary``), stamped at or before ``until`` if given; and the total."""
        with self.lock:
            start, end = self._window_start(since), self._window_end(until)
            total = max(0, end - start)
            first = start + (page_no - 1) * size
            keys = self._order[first:min(first + size, end)]
        return [self.record(int(c) - 1) for _, c in keys], total

    def page_after(self, since: str | None, after: tuple[str, str] | None,
                   size: int) -> list[dict[str, Any]]:
        """Up to ``size`` records stamped at or after ``since``, strictly after the key ``after``."""
        with self.lock:
            start = bisect.bisect_left(self._order, (since, "")) if since else 0
            if after is not None:
                start = max(start, bisect.bisect_right(self._order, after))
        return self._slice(start, size)

    # ---------------------------------------------------------------- writes
    def _stamp_now(self) -> datetime:
        now = self.clock()
        self._last_stamp = max(now, self._last_stamp + timedelta(seconds=1))
        return self._last_stamp

    def _commit(self, i: int, rec: dict[str, Any], old_stamp: str) -> None:
        pos = bisect.bisect_left(self._order, (old_stamp, rec["custno"]))
        if pos < len(self._order) and self._order[pos] == (old_stamp, rec["custno"]):
            del self._order[pos]
        bisect.insort(self._order, (rec["stamp"], rec["custno"]))
        self._overrides[i] = rec

    def modify(self, custno: str, modno: int | None, changes: Mapping[str, Any], user: str) -> dict[str, Any]:
        """Apply contact-field ``changes`` if ``modno`` is current; raises :class:`BusinessFailure`."""
        with self.lock:
            rec = self.get(custno)
            if rec is None:
                raise BusinessFailure("ST-CUS-001", "Customer does not exist")
            if rec["record_stat"] == "C":
                raise BusinessFailure("ST-CLOSED-001", "Customer is closed")
            if modno is None:
                raise BusinessFailure("ST-VALS-001", "Modification number is mandatory")
            if int(modno) != int(rec["modno"]):
                raise BusinessFailure("ST-MODNO-01", "Record modified by another user: modification number "
                                      f"{modno} is not the current one")
            bad = sorted(k for k in changes if k not in _WRITABLE)
            if bad:
                raise BusinessFailure("ST-VALS-020", f"Field not amendable through this channel: {bad[0]}")
            mobile = changes.get("mobile")
            if mobile is not None and mobile != "" and not re.fullmatch(r"(\+?86)?1[3-9]\d{9}", str(mobile)):
                raise BusinessFailure("ST-VALS-010", "Invalid mobile number")
            email = changes.get("email")
            if email is not None and email != "" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(email)):
                raise BusinessFailure("ST-VALS-011", "Invalid e-mail address")
            old_stamp = rec["stamp"]
            rec.update({k: v for k, v in changes.items()})
            rec["modno"] = int(rec["modno"]) + 1
            rec["stamp"] = self._stamp_now().isoformat()
            rec["maker"] = rec["checker"] = user
            rec["maker_stamp"] = rec["stamp"]
            self._commit(int(custno) - 1, rec, old_stamp)
            return dict(rec)

    def close(self, custno: str) -> dict[str, Any]:
        """Close a customer (RECORD_STAT C): it then appears in change lists as a tombstone."""
        with self.lock:
            rec = self.get(custno)
            if rec is None:
                raise BusinessFailure("ST-CUS-001", "Customer does not exist")
            old_stamp = rec["stamp"]
            rec.update(record_stat="C", modno=int(rec["modno"]) + 1, stamp=self._stamp_now().isoformat())
            self._commit(int(custno) - 1, rec, old_stamp)
            return dict(rec)

    def touch(self, custno: str, **fields: Any) -> dict[str, Any]:
        """A change made in the core itself (a teller), bypassing the channel checks: bumps MODNO and stamp."""
        with self.lock:
            rec = self.get(custno)
            if rec is None:
                raise KeyError(custno)
            old_stamp = rec["stamp"]
            rec.update(fields)
            rec.update(modno=int(rec["modno"]) + 1, stamp=self._stamp_now().isoformat())
            self._commit(int(custno) - 1, rec, old_stamp)
            return dict(rec)


# ============================================================================================== XML helpers
def local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def xml_to_dict(elem: etree._Element) -> Any:
    """Request element → nested dict by local name (repeated elements → lists, attributes → ``@name``)."""
    children = [c for c in elem if isinstance(c.tag, str)]
    if not children and not elem.attrib:
        return (elem.text or "").strip()
    out: dict[str, Any] = {f"@{etree.QName(k).localname}": v for k, v in elem.attrib.items()
                           if not k.startswith("{http://www.w3.org/2001/XMLSchema-instance}")}
    for c in children:
        k, v = local(c.tag), xml_to_dict(c)
        if k in out:
            if not isinstance(out[k], list):
                out[k] = [out[k]]
            out[k].append(v)
        else:
            out[k] = v
    return out


def build(parent: etree._Element, name: str, value: Any, ns: str | None) -> None:
    """Append ``value`` under ``parent`` as element(s) ``name``: dicts keep their order, lists repeat,
    ``None`` is omitted, keys starting with ``@`` are attributes."""
    if value is None:
        return
    if isinstance(value, list):
        for v in value:
            build(parent, name, v, ns)
        return
    el = etree.SubElement(parent, f"{{{ns}}}{name}" if ns else name)
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k.startswith("@"):
                if v is not None:
                    el.set(k[1:], str(v))
            else:
                build(el, k, v, ns)
    else:
        el.text = str(value)


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if isinstance(d, list):
            d = d[0] if d else None
        if not isinstance(d, Mapping):
            return None
        d = d.get(p)
    return d


@dataclass
class _Raw:
    body: bytes
    status: int
    content_type: str
    headers: dict[str, str] | None = None


#: what a gateway or proxy in front of the SOAP service answers instead of it (``gateway=KIND``)
GATEWAY_REPLIES: dict[str, _Raw] = {
    # nginx's own 503 page: well-formed XML, but not a SOAP envelope
    "html503": _Raw(b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
                    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>"
                    b"\r\n</body>\r\n</html>\r\n", 503, "text/html", {"Retry-After": "1"}),
    # a well-formed XHTML error page (zeep parses it and finds no Fault: "Unknown fault occured", code None)
    "xhtml503": _Raw(b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>503 Service Unavailable</title></head>'
                     b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
                     b"request.</p></body></html>", 503, "text/html; charset=iso-8859-1", {"Retry-After": "1"}),
    # an HTML5 error page (a DOCTYPE: zeep would refuse it as unsafe XML)
    "doctype503": _Raw(b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
                       b"<p>The service is temporarily unavailable.</p></body></html>", 503,
                       "text/html; charset=utf-8"),
    "empty503": _Raw(b"", 503, "text/plain", {"Retry-After": "1"}),
    "text503": _Raw(b"Service Unavailable", 503, "text/plain"),
    "empty502": _Raw(b"", 502, "text/plain"),
    "html429": _Raw(b"<html><body><h1>429 Too Many Requests</h1></body></html>", 429, "text/html",
                    {"Retry-After": "1", "X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0"}),
    "empty200": _Raw(b"", 200, "text/xml; charset=UTF-8"),
    "truncated200": _Raw(f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}">'
                         "<soapenv:Body><fcub:QUERYCUSTOMER_IOFS_RES xmlns:fcub="
                         f'"{FCUBS_NS}"><fcub:FCUBS_HEADER><fcub:SOURCE>CRM'.encode(), 200,
                         "text/xml; charset=UTF-8"),
    "html200": _Raw(b"<html><head><title>Sign in</title></head><body><form action=\"/sso/login\"></form>"
                    b"</body></html>", 200, "text/html"),
}

_TRUE = ("1", "true", "yes", "y", "on")


def _mode(explicit: Any, extra: Mapping[str, Any], key: str, default: Any) -> Any:
    """A simulator mode: the constructor argument, else ``--extra KEY=VALUE``, else the default."""
    if explicit is not None:
        return explicit
    return extra.get(key, default)


# ============================================================================================== SOAP base
class _SoapSimulator(Simulator):
    """SOAP plumbing shared by the dialects: ?wsdl, safe parsing, Faults, encodings, raw replies."""

    vendor = "corebank-soap"
    service_path = "/"
    wsdl_text: str = ""

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 since_boundary: str | None = None, same_second: int | None = None,
                 edits_during_read: int | None = None, gateway: str | None = None,
                 gateway_every: int | None = None, max_page_size: int | None = None,
                 clock_offset_seconds: float | None = None) -> None:
        super().__init__(knobs, host=host, port=port)
        k = self.knobs
        x = k.extra
        self.username: str = str(x.get("username", "CRMBRIDGE"))
        self.password: str = str(x.get("password", "sim-password"))
        #: how far the core's clock runs ahead of the host's (see the module docstring)
        self.clock_offset_seconds = float(_mode(clock_offset_seconds, x, "clock_offset_seconds", 0))
        self.store = CustomerStore(k.records, k.seed, k.bad_fraction, clock=self._core_clock,
                                   since_boundary=str(_mode(since_boundary, x, "since_boundary", "inclusive")),
                                   same_second=int(_mode(same_second, x, "same_second", 0)))
        self.response_encoding = "UTF-8"
        self.declared_encoding: str | None = None
        self._raw: deque[_Raw] = deque()
        #: list calls that first edit one record of the window they read (then answer), until used up
        self.edits_during_read = int(_mode(edits_during_read, x, "edits_during_read", 0))
        self.edits_made: list[str] = []
        self.max_page_size = int(_mode(max_page_size, x, "max_page_size", 1000))
        kind = _mode(gateway, x, "gateway", None)
        if kind is not None and str(kind) not in GATEWAY_REPLIES:
            raise ValueError(f"gateway must be one of {', '.join(GATEWAY_REPLIES)}, not {kind!r}")
        self.gateway: str | None = None if kind is None else str(kind)
        self.gateway_every = max(1, int(_mode(gateway_every, x, "gateway_every", 3)))
        self._posts = 0

    def core_now(self, tz: Any = CORE_TZ) -> datetime:
        """The core's clock (the host's plus ``clock_offset_seconds``), aware, in ``tz``."""
        return datetime.now(tz) + timedelta(seconds=self.clock_offset_seconds)

    def _core_clock(self) -> datetime:
        return self.core_now().replace(tzinfo=None, microsecond=0)

    # ---------------------------------------------------------------- test hooks
    def queue_raw(self, body: bytes | str, *, status: int = 200,
                  content_type: str = "text/xml; charset=UTF-8", times: int = 1,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` POSTs with ``body`` verbatim (unsafe or malformed XML for fault tests)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self.lock:
            self._raw.extend([_Raw(data, status, content_type, headers)] * times)

    def queue_gateway(self, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` POSTs as the gateway in front of the service would (see
        :data:`GATEWAY_REPLIES`: ``html503``, ``empty503``, ``text503``, ``html429``, ``empty200``...)."""
        r = GATEWAY_REPLIES[kind]
        self.queue_raw(r.body, status=r.status, content_type=r.content_type, times=times, headers=r.headers)

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}{self.service_path}?wsdl"

    @property
    def endpoint(self) -> str:
        return f"{self.url}{self.service_path}"

    def banner(self) -> list[str]:
        modes = [f"since_boundary={self.store.since_boundary}"]
        if self.store.same_second:
            modes.append(f"same_second={self.store.same_second}")
        if self.edits_during_read:
            modes.append(f"edits_during_read={self.edits_during_read}")
        if self.gateway:
            modes.append(f"gateway={self.gateway} every {self.gateway_every} calls")
        if self.clock_offset_seconds:
            modes.append(f"clock_offset_seconds={self.clock_offset_seconds:+g}")
        return [f"{self.vendor} simulator: {self.store.n} customers (seed {self.knobs.seed}); {', '.join(modes)}",
                f"WSDL      {self.wsdl_url}",
                f"endpoint  {self.endpoint}",
                f"service user {self.username!r} (simulator password set by Knobs.extra['password'])"]

    # ---------------------------------------------------------------- dialect hooks
    def operations(self) -> dict[str, Callable[[etree._Element, dict[str, Any]], Any]]:
        raise NotImplementedError

    def authenticate(self, envelope: etree._Element, body: dict[str, Any]) -> None:
        """Raise :class:`SoapFault` or :class:`BusinessFailure` if the caller is not the service user."""

    def business_reply(self, op_tag: str, request: dict[str, Any], failure: BusinessFailure) -> etree._Element:
        raise NotImplementedError

    # ---------------------------------------------------------------- HTTP
    def handle(self, req: Request) -> Response:
        if req.method == "GET":
            if "wsdl" in {k.lower() for k in req.query} and req.path.rstrip("/") == self.service_path.rstrip("/"):
                text = re.sub(r'(<soap:address\s+location=")http://localhost[^"]*(")',
                              rf"\g<1>{self.endpoint}\g<2>", self.wsdl_text)
                return Response(200, text.encode("utf-8"), {"Content-Type": "text/xml; charset=UTF-8"})
            return Response(404, b"not found", {"Content-Type": "text/plain"})
        if req.method != "POST":
            return Response(405, b"", {"Allow": "GET, POST"})
        with self.lock:
            raw = self._raw.popleft() if self._raw else None
            self._posts += 1
            if raw is None and self.gateway is not None and self._posts % self.gateway_every == 0:
                raw = GATEWAY_REPLIES[self.gateway]
        if raw is not None:
            return Response(raw.status, raw.body, {"Content-Type": raw.content_type, **(raw.headers or {})})
        try:
            return self._soap(req)
        except SoapFault as f:
            return self.fault(f.code, f.text, f.status, f.headers)

    def _soap(self, req: Request) -> Response:
        try:
            doc = etree.fromstring(req.body, SAFE_PARSER)
        except etree.XMLSyntaxError as exc:
            raise SoapFault("soapenv:Client", "Malformed request: not well-formed XML") from exc
        info = doc.getroottree().docinfo
        if info.doctype or info.internalDTD is not None:
            raise SoapFault("soapenv:Client", "Malformed request: DTDs and entity declarations are not allowed")
        if doc.tag != f"{{{SOAP_NS}}}Envelope":
            raise SoapFault("soapenv:VersionMismatch", "Not a SOAP 1.1 envelope")
        body_el = doc.find(f"{{{SOAP_NS}}}Body")
        ops = [c for c in (body_el if body_el is not None else []) if isinstance(c.tag, str)]
        if len(ops) != 1:
            raise SoapFault("soapenv:Client", "Malformed request: the Body must hold exactly one element")
        op = ops[0]
        handler = self.operations().get(op.tag)
        if handler is None:
            raise SoapFault("soapenv:Client", f"Unknown operation element {local(op.tag)}")
        request = xml_to_dict(op)
        if not isinstance(request, dict):
            raise SoapFault("soapenv:Client", f"Malformed request: {local(op.tag)} is empty")
        try:
            self.authenticate(doc, request)
            result = handler(op, request)
        except BusinessFailure as failure:
            result = self.business_reply(op.tag, request, failure)
        return self.envelope(result)

    def envelope(self, payload: etree._Element, status: int = 200,
                 headers: dict[str, str] | None = None) -> Response:
        env = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soapenv": SOAP_NS})
        body = etree.SubElement(env, f"{{{SOAP_NS}}}Body")
        body.append(payload)
        enc = self.response_encoding
        data = etree.tostring(env, encoding=enc, xml_declaration=True)
        declared = self.declared_encoding or enc
        if declared.lower() != enc.lower():
            data = re.sub(rb"encoding=['\"][^'\"]+['\"]", f"encoding='{declared}'".encode("ascii"), data, count=1)
        return Response(status, data, {"Content-Type": f"text/xml; charset={declared}", **(headers or {})})

    def fault(self, code: str, text: str, status: int = 500, headers: dict[str, str] | None = None) -> Response:
        f = etree.Element(f"{{{SOAP_NS}}}Fault")
        fc = etree.SubElement(f, "faultcode", nsmap={"wsse": WSSE_NS} if code.startswith("wsse:") else None)
        fc.text = code
        etree.SubElement(f, "faultstring").text = text
        return self.envelope(f, status, headers)

    def fault_response(self, fault: Fault, req: Request) -> Response:
        if fault is Fault.THROTTLE:
            return self.fault("soapenv:Server.Busy", "Gateway busy: too many concurrent requests", 503,
                              {"Retry-After": "1"})
        if fault is Fault.TOKEN_EXPIRED:
            return self.fault("wsse:MessageExpired", "The message has expired")
        return self.fault("soapenv:Server", "Internal error in the customer service")

    # ---------------------------------------------------------------- WS-Security
    def check_username_token(self, envelope: etree._Element) -> None:
        token = envelope.find(f"{{{SOAP_NS}}}Header/{{{WSSE_NS}}}Security/{{{WSSE_NS}}}UsernameToken")
        if token is None:
            raise SoapFault("wsse:InvalidSecurity", "An error was discovered processing the <wsse:Security> "
                            "header: no UsernameToken")
        user = (token.findtext(f"{{{WSSE_NS}}}Username") or "").strip()
        pwd_el = token.find(f"{{{WSSE_NS}}}Password")
        if pwd_el is None or user != self.username:
            raise SoapFault("wsse:FailedAuthentication", "The security token could not be authenticated")
        if pwd_el.get("Type", "").endswith("#PasswordDigest"):
            nonce = token.findtext(f"{{{WSSE_NS}}}Nonce") or ""
            created = token.findtext(f"{{{WSU_NS}}}Created") or ""
            try:
                raw_nonce = base64.b64decode(nonce)
            except ValueError as exc:
                raise SoapFault("wsse:InvalidSecurityToken", "Malformed nonce") from exc
            expected = base64.b64encode(hashlib.sha1(raw_nonce + created.encode() + self.password.encode())
                                        .digest()).decode()
            if (pwd_el.text or "") != expected:
                raise SoapFault("wsse:FailedAuthentication", "The security token could not be authenticated")
            try:
                when = datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError as exc:
                raise SoapFault("wsse:InvalidSecurityToken", "Malformed Created timestamp") from exc
            if when.tzinfo is not None and abs((self.core_now(when.tzinfo) - when).total_seconds()) > 300:
                raise SoapFault("wsse:MessageExpired", "The message has expired")
        elif (pwd_el.text or "") != self.password:
            raise SoapFault("wsse:FailedAuthentication", "The security token could not be authenticated")


# ============================================================================================== FLEXCUBE
_UDF = [("CUSTOMER_SEGMENTATION", "segment"), ("AUM_AMOUNT", "aum"), ("AUM_CCY", "currency"),
        ("CONSENT_MARKETING_SMS", "consent_sms"), ("CONSENT_MARKETING_EMAIL", "consent_email"),
        ("CONSENT_SHARE_CRM", "consent_crm")]


def fcubs_record(r: Mapping[str, Any]) -> dict[str, Any]:
    """A neutral record in FLEXCUBE ``Customer-Full`` shape (element order = the XSD sequence)."""
    personal = r["ctype"] == "I"
    d: dict[str, Any] = {
        "CUSTNO": r["custno"], "CTYPE": r["ctype"], "NAME": r["name"],
        "ADDRLN1": r["province"], "ADDRLN2": r["city"], "ADDRLN3": r["district"], "ADDRLN4": r["street"],
        "COUNTRY": r["country"], "SNAME": r["short_name"], "NLTY": r["nationality"], "LBRN": r["branch"],
        "CCATEG": "INDIVIDUAL" if personal else "CORPORATE", "FULLNAME": r["name"],
        "CIFCREATIONDT": r["created"], "UIDNAME": r["id_type"], "UIDVAL": r["id_number"],
        "FROZEN": "N", "DEAD": "N", "RISKCATEG": r["kyc_risk"], "RM_ID": r["rm"],
        "MAKER": r["maker"], "MAKERSTAMP": r["maker_stamp"], "CHECKER": r["checker"], "CHECKERSTAMP": r["stamp"],
        "MODNO": r["modno"], "RECORD_STAT": r["record_stat"], "AUTHSTAT": r["auth_stat"],
    }
    if personal:
        d["Custpersonal"] = {"FSTNAME": r["given"], "LSTNAME": r["family"], "DOB": r["birth_date"],
                             "SEX": r["gender"], "NATIONID": r["id_number"] if r["id_type"] == "RIC" else None,
                             "TELEPHNO": r.get("phone"), "EMAILID": r["email"], "MOBNUM": r["mobile"],
                             "MOBISDNO": "86", "RESSTATUS": "R", "KYCSTAT": r.get("kyc_status")}
    else:
        d["Custcorp"] = {"CORPNAME": r["name"], "INCORPDT": r["birth_date"], "CAPITAL": r.get("capital"),
                         "INCORPCNTRY": "CN", "UIDNAME": r["id_type"], "UIDVALUE": r["id_number"],
                         "TELEPHONE": r.get("phone"), "EMAILID": r["email"], "MOBILENUMBER": r["mobile"]}
    d["UDFDETAILS"] = [{"FLDNAM": name, "FLDVAL": r.get(key)} for name, key in _UDF if r.get(key) is not None]
    return d


_FCUBS_CHANGES = {  # Customer-Full path → neutral key (what ModifyCustomer may change)
    ("Custpersonal", "MOBNUM"): "mobile", ("Custpersonal", "EMAILID"): "email",
    ("Custpersonal", "TELEPHNO"): "phone", ("Custcorp", "MOBILENUMBER"): "mobile",
    ("Custcorp", "EMAILID"): "email", ("Custcorp", "TELEPHONE"): "phone",
    ("ADDRLN1",): "province", ("ADDRLN2",): "city", ("ADDRLN3",): "district", ("ADDRLN4",): "street",
}
_FCUBS_IGNORED = {"CUSTNO", "MODNO", "Custpersonal/MOBISDNO"}
#: UDFs a CRM may write back: the marketing consents (an opt-out withdraws one)
_UDF_WRITABLE = {"CONSENT_MARKETING_SMS": "consent_sms", "CONSENT_MARKETING_EMAIL": "consent_email"}


class CorebankSoapSimulator(_SoapSimulator):
    """FLEXCUBE-style ``FCUBSCustomerService`` (QueryCustomer, ModifyCustomer, QueryCustomersModifiedSince) and,
    on the same host as a FLEXCUBE gateway serves both, ``FCUBSAccService`` at ``account_path`` (QueryCustAcc and
    the QueryAccountsModifiedSince change list; :mod:`.accounts`, knob ``orphan_accounts``)."""

    vendor = "corebank-soap"
    service_path = "/FCUBSCustomerService/FCUBSCustomerService"
    account_path = "/FCUBSAccService/FCUBSAccService"

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 **modes: Any) -> None:
        super().__init__(knobs, host=host, port=port, **modes)
        pkg = resources.files("crmbridge.adapters.corebank_soap")
        self.wsdl_text = pkg.joinpath("fcubs_customer.wsdl").read_text(encoding="utf-8")
        self.account_wsdl_text = pkg.joinpath("fcubs_account.wsdl").read_text(encoding="utf-8")
        self._service = threading.local()   # which service the request in this thread was posted to
        self.accounts = AccountStore(self.store.n, self.knobs.seed, self.store.custno,
                                     orphans=int(self.knobs.extra.get("orphan_accounts", 0)), clock=self._core_clock,
                                     since_boundary=self.store.since_boundary)

    def reseed_accounts(self, n: int) -> None:
        """Hold exactly ``n`` accounts, one per customer from the first (tests)."""
        with self.lock:
            self.accounts = AccountStore(self.store.n, self.knobs.seed, self.store.custno, clock=self._core_clock,
                                         since_boundary=self.store.since_boundary, exactly=n)

    @property
    def account_wsdl_url(self) -> str:
        return f"{self.url}{self.account_path}?wsdl"

    @property
    def account_endpoint(self) -> str:
        return f"{self.url}{self.account_path}"

    def handle(self, req: Request) -> Response:
        on_accounts = req.path.rstrip("/") == self.account_path
        if req.method == "GET" and on_accounts and "wsdl" in {k.lower() for k in req.query}:
            text = re.sub(r'(<soap:address\s+location=")http://localhost[^"]*(")',
                          rf"\g<1>{self.account_endpoint}\g<2>", self.account_wsdl_text)
            return Response(200, text.encode("utf-8"), {"Content-Type": "text/xml; charset=UTF-8"})
        if req.method == "POST" and req.path.rstrip("/") not in (self.service_path, self.account_path):
            return Response(404, b"not found", {"Content-Type": "text/plain"})
        self._service.ns = FCUBS_ACC_NS if on_accounts else FCUBS_NS
        return super().handle(req)

    def operations(self) -> dict[str, Callable[[etree._Element, dict[str, Any]], Any]]:
        ops: dict[str, Callable[[etree._Element, dict[str, Any]], Any]] = {
            f"{{{FCUBS_NS}}}QUERYCUSTOMER_IOFS_REQ": self._query,
            f"{{{FCUBS_NS}}}MODIFYCUSTOMER_FSFS_REQ": self._modify,
            f"{{{FCUBS_NS}}}QUERYCUSTMODSINCE_IOFS_REQ": self._changes,
            f"{{{FCUBS_ACC_NS}}}QUERYCUSTACC_IOFS_REQ": self._acc_query,
            f"{{{FCUBS_ACC_NS}}}QUERYACCMODSINCE_IOFS_REQ": self._acc_changes}
        # each service answers only its own operations (the other's are unknown at its endpoint)
        ns = getattr(self._service, "ns", FCUBS_NS)
        return {tag: fn for tag, fn in ops.items() if tag.startswith(f"{{{ns}}}")}

    def _acc_reply(self, name: str, request: dict[str, Any], body: dict[str, Any], status: str = "SUCCESS"
                   ) -> etree._Element:
        el = etree.Element(f"{{{FCUBS_ACC_NS}}}{name}", nsmap={"fcub": FCUBS_ACC_NS})
        build(el, "FCUBS_HEADER", self._header(request, status), FCUBS_ACC_NS)
        build(el, "FCUBS_BODY", body, FCUBS_ACC_NS)
        return el

    def _acc_query(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        self._header(request, "")
        q = self._body(request, "Cust-Account-IO")
        acc = str(q.get("ACC") or "")
        rec = self.accounts.get(acc)
        if rec is None or (q.get("BRN") not in (None, "") and q.get("BRN") != rec["BRN"]):
            raise BusinessFailure("ST-ACC-001", "Account does not exist")
        return self._acc_reply("QUERYCUSTACC_IOFS_RES", request, {"Cust-Account-Full": rec})

    def _acc_changes(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        self._header(request, "")
        q = self._body(request, "Cust-Account-Changes-IO")
        bounds = []
        for name in ("FROM", "UNTIL"):
            raw = q.get(name) or None
            if raw is not None:
                try:
                    raw = datetime.fromisoformat(str(raw)).isoformat()
                except ValueError as exc:
                    raise BusinessFailure("ST-REQ-001", f"{name} is not a timestamp (YYYY-MM-DDTHH:MM:SS)") from exc
            bounds.append(raw)
        try:
            page_no = int(q.get("PAGE_NO") or 1)
            size = int(q.get("PAGE_SIZE") or 100)
        except ValueError as exc:
            raise SoapFault("soapenv:Client", "Malformed request: PAGE_NO/PAGE_SIZE are not numbers") from exc
        if page_no < 1 or not 1 <= size <= self.max_page_size:
            raise BusinessFailure("ST-REQ-001", f"PAGE_NO must be >= 1 and PAGE_SIZE 1..{self.max_page_size}")
        as_of = self.accounts.newest_stamp
        records, total = self.accounts.page(bounds[0], page_no, size, bounds[1])
        return self._acc_reply("QUERYACCMODSINCE_IOFS_RES", request, {
            "Page-Info": {"PAGE_NO": page_no, "PAGE_SIZE": size, "TOTAL_RECORDS": total,
                          "HAS_MORE": "Y" if page_no * size < total else "N", "AS_OF": as_of},
            "Cust-Account-Full": records})

    def authenticate(self, envelope: etree._Element, body: dict[str, Any]) -> None:
        self.check_username_token(envelope)

    @staticmethod
    def _header(request: dict[str, Any], status: str) -> dict[str, Any]:
        h = request.get("FCUBS_HEADER")
        if not isinstance(h, dict):
            raise SoapFault("soapenv:Client", "Malformed request: FCUBS_HEADER is missing")
        order = ["SOURCE", "UBSCOMP", "MSGID", "CORRELID", "USERID", "BRANCH", "MODULEID", "SERVICE",
                 "OPERATION", "SOURCE_OPERATION", "SOURCE_USERID", "DESTINATION", "MULTITRIPID", "FUNCTIONID",
                 "ACTION"]
        out = {k: h.get(k) for k in order if isinstance(h.get(k), str)}
        for k in ("SOURCE", "UBSCOMP", "USERID", "SERVICE", "OPERATION"):
            out.setdefault(k, "")
        out = {k: out.get(k) for k in order}
        out["MSGSTAT"] = status
        return out

    def _reply(self, name: str, request: dict[str, Any], body: dict[str, Any], status: str = "SUCCESS"
               ) -> etree._Element:
        el = etree.Element(f"{{{FCUBS_NS}}}{name}", nsmap={"fcub": FCUBS_NS})
        build(el, "FCUBS_HEADER", self._header(request, status), FCUBS_NS)
        build(el, "FCUBS_BODY", body, FCUBS_NS)
        return el

    def business_reply(self, op_tag: str, request: dict[str, Any], failure: BusinessFailure) -> etree._Element:
        name = local(op_tag).replace("_REQ", "_RES")
        if op_tag.startswith(f"{{{FCUBS_ACC_NS}}}"):
            return self._acc_reply(name, request, {"FCUBS_ERROR_RESP": {"ERROR": {"ECODE": failure.code,
                                                                                  "EDESC": failure.text}}}, "FAILURE")
        return self._reply(name, request, {"FCUBS_ERROR_RESP": {"ERROR": {"ECODE": failure.code,
                                                                          "EDESC": failure.text}}}, "FAILURE")

    @staticmethod
    def _body(request: dict[str, Any], child: str) -> dict[str, Any]:
        b = _get(request, "FCUBS_BODY", child)
        if not isinstance(b, dict):
            raise SoapFault("soapenv:Client", f"Malformed request: FCUBS_BODY/{child} is missing")
        return b

    def _query(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        self._header(request, "")
        custno = str(self._body(request, "Customer-IO").get("CUSTNO") or "")
        rec = self.store.get(custno)
        if rec is None:
            raise BusinessFailure("ST-CUS-001", "Customer does not exist")
        return self._reply("QUERYCUSTOMER_IOFS_RES", request, {"Customer-Full": fcubs_record(rec)})

    def _modify(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        self._header(request, "")
        full = self._body(request, "Customer-Full")
        custno = str(full.get("CUSTNO") or "")
        modno_raw = full.get("MODNO")
        if modno_raw not in (None, "") and not str(modno_raw).isdigit():
            raise SoapFault("soapenv:Client", "Malformed request: MODNO is not a number")
        changes: dict[str, Any] = {}
        for path, key in _FCUBS_CHANGES.items():
            value = _get(full, *path)
            if value is not None:
                changes[key] = value
        changes.update(self._udf_changes(full.get("UDFDETAILS")))
        known = {"/".join(p) for p in _FCUBS_CHANGES} | _FCUBS_IGNORED | {"Custpersonal", "Custcorp", "UDFDETAILS"}
        for k, v in full.items():
            if k == "UDFDETAILS":
                continue   # read above
            if isinstance(v, dict):
                for sub in v:
                    if f"{k}/{sub}" not in known:
                        changes[f"{k}/{sub}"] = v[sub]
            elif k not in known:
                changes[k] = v
        user = str(_get(request, "FCUBS_HEADER", "USERID") or self.username)
        rec = self.store.modify(custno, None if modno_raw in (None, "") else int(modno_raw), changes, user)
        return self._reply("MODIFYCUSTOMER_FSFS_RES", request, {"Customer-Full": fcubs_record(rec)})

    @staticmethod
    def _udf_changes(udfs: Any) -> dict[str, Any]:
        """UDFDETAILS in a ModifyCustomer: only the marketing-consent UDFs are amendable through this channel (the
        bank's choice of channel rights), with Y or N; any other UDF is refused like a golden field."""
        entries = udfs if isinstance(udfs, list) else [udfs] if isinstance(udfs, dict) else []
        out: dict[str, Any] = {}
        for e in entries:
            name = e.get("FLDNAM") if isinstance(e, dict) else None
            key = _UDF_WRITABLE.get(str(name))
            if key is None:
                raise BusinessFailure("ST-VALS-020", f"Field not amendable through this channel: UDF {name}")
            if e.get("FLDVAL") not in ("Y", "N"):
                raise BusinessFailure("ST-VALS-012", f"UDF {name} takes Y or N")
            out[key] = e["FLDVAL"]
        return out

    def _changes(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        self._header(request, "")
        q = self._body(request, "Customer-Changes-IO")
        since = q.get("FROM") or None
        if since is not None:
            try:
                since = datetime.fromisoformat(str(since)).isoformat()
            except ValueError as exc:
                raise BusinessFailure("ST-REQ-001", "FROM is not a timestamp (YYYY-MM-DDTHH:MM:SS)") from exc
        until = q.get("UNTIL") or None
        if until is not None:
            try:
                until = datetime.fromisoformat(str(until)).isoformat()
            except ValueError as exc:
                raise BusinessFailure("ST-REQ-001", "UNTIL is not a timestamp (YYYY-MM-DDTHH:MM:SS)") from exc
        try:
            page_no = int(q.get("PAGE_NO") or 1)
            size = int(q.get("PAGE_SIZE") or 100)
        except ValueError as exc:
            raise SoapFault("soapenv:Client", "Malformed request: PAGE_NO/PAGE_SIZE are not numbers") from exc
        if page_no < 1 or not 1 <= size <= self.max_page_size:
            raise BusinessFailure("ST-REQ-001", f"PAGE_NO must be >= 1 and PAGE_SIZE 1..{self.max_page_size}")
        self._edit_during_read(since, until, max(0, (page_no - 1) * size - 1))
        as_of = self.store.newest_stamp
        records, total = self.store.page_by_number(since, page_no, size, until)
        more = page_no * size < total
        return self._reply("QUERYCUSTMODSINCE_IOFS_RES", request, {
            "Page-Info": {"PAGE_NO": page_no, "PAGE_SIZE": size, "TOTAL_RECORDS": total,
                          "HAS_MORE": "Y" if more else "N", "AS_OF": as_of},
            "Customer-Full": [fcubs_record(r) for r in records]})

    def _edit_during_read(self, since: str | None, until: str | None, position: int) -> None:
        """``edits_during_read``: a teller edits the record just before the page asked for (or the first of the
        window), so it moves to the end of the change list and every later record shifts one place back."""
        with self.lock:
            if self.edits_during_read <= 0:
                return
            custno = self.store.custno_at(since, until, position) or self.store.custno_at(since, until, 0)
            if custno is None:
                return
            self.edits_during_read -= 1
            self.edits_made.append(custno)
        self.store.touch(custno)


# ============================================================================================== T24 style
T24_NS = "http://temenos.com/CRMBRIDGE"


def t24_stamp(iso: str) -> str:
    """Core-local ISO stamp → T24 ``DATE.TIME`` (``yymmddHHMM``: minute granularity)."""
    return datetime.fromisoformat(iso).strftime("%y%m%d%H%M")


def t24_record(r: Mapping[str, Any]) -> dict[str, Any]:
    """A neutral record in the T24-style ``CUSTOMERType`` shape (multi-value groups, language values)."""
    closed = r["record_stat"] == "C"
    return {
        "@id": r["custno"],
        "gSHORTNAME": {"ShortName": [r["name_en"], r["short_name"]]},
        "gNAME1": {"Name1": [r["name_en"], r["name"]]},
        "Sector": "1001" if r["ctype"] == "I" else "2001",
        "AccountOfficer": r["rm"], "Target": r["segment"], "Nationality": r["nationality"],
        "Residence": r["country"], "CustomerStatus": "CLOSED" if closed else "ACTIVE",
        "gLEGALID": {"mLEGALID": [{"LegalId": r["id_number"],
                                   "LegalDocName": {"RIC": "RESIDENT.ID", "USCC": "USCC"}.get(r["id_type"],
                                                                                              r["id_type"])}]},
        "DateOfBirth": r["birth_date"].replace("-", ""),
        "Gender": {"M": "MALE", "F": "FEMALE"}.get(r.get("gender") or "", None),
        "gPHONE1": {"mPHONE1": [{"PHONE1": r.get("phone"), "SMS1": r["mobile"], "EMAIL1": r["email"]}]},
        "CountrySubdivision": r["province"], "TownCountry": r["city"], "Address": r["district"],
        "Street": r["street"], "CompanyBook": f"CN00100{r['branch']}",
        "CalcRiskClass": r["kyc_risk"], "AumAmount": r["aum"], "AumCurrency": r["currency"],
        "PrivacyStatus": "OPT-IN" if r["consent_crm"] == "Y" else "OPT-OUT",
        "CurrNo": r["modno"], "Inputter": r["maker"], "DateTime": t24_stamp(r["stamp"]),
    }


_T24_CHANGES = {("gPHONE1", "mPHONE1", "SMS1"): "mobile", ("gPHONE1", "mPHONE1", "EMAIL1"): "email",
                ("gPHONE1", "mPHONE1", "PHONE1"): "phone", ("CountrySubdivision",): "province",
                ("TownCountry",): "city", ("Address",): "district", ("Street",): "street"}


class T24StyleSimulator(_SoapSimulator):
    """A T24 TWS-style customer service: credentials in ``WebRequestCommon``, ``Status/successIndicator``,
    an enquiry paged by continuation key, ``CURR.NO`` as the record version.

    Args:
        wsdl_path: the T24-style WSDL (kept under ``tests/fixtures/corebank_soap/``).
    """

    vendor = "corebank-soap-t24"
    service_path = "/T24WebServices/CRMBRIDGE"

    def __init__(self, knobs: Knobs | None = None, *, wsdl_path: str | Path, host: str = "127.0.0.1",
                 port: int = 0, **modes: Any) -> None:
        super().__init__(knobs, host=host, port=port, **modes)
        self.wsdl_text = Path(wsdl_path).read_text(encoding="utf-8")
        self.company = str(self.knobs.extra.get("company", "CN0010001"))

    def operations(self) -> dict[str, Callable[[etree._Element, dict[str, Any]], Any]]:
        return {f"{{{T24_NS}}}CustomerChanges": self._changes, f"{{{T24_NS}}}CustomerRead": self._read,
                f"{{{T24_NS}}}CustomerAmend": self._amend}

    def authenticate(self, envelope: etree._Element, body: dict[str, Any]) -> None:
        wrc = body.get("WebRequestCommon")
        if not isinstance(wrc, dict):
            raise SoapFault("soapenv:Client", "Malformed request: WebRequestCommon is missing")
        if wrc.get("userName") != self.username or wrc.get("password") != self.password:
            raise BusinessFailure("EB-SECURITY.VIOLATION", "SECURITY VIOLATION: user name or password invalid")
        if wrc.get("company") not in (None, "", self.company):
            raise BusinessFailure("EB-COMPANY.NOT.ALLOWED", "Company not allowed for this user")

    def fault_response(self, fault: Fault, req: Request) -> Response:
        if fault is Fault.THROTTLE:  # the TWS gateway in front of T24 rate-limits with 429 and no SOAP body
            return Response(429, b"", {"Retry-After": "1"})
        if fault is Fault.TOKEN_EXPIRED:  # T24 has no tokens: the closest is the OFS security violation
            return self.envelope(self._status_only("CustomerChangesResponse", BusinessFailure(
                "EB-SECURITY.VIOLATION", "SECURITY VIOLATION: password expired")))
        return self.fault("soapenv:Server", "TWS: T24 is not responding")

    def _status(self, indicator: str = "Success", messages: Iterable[str] = ()) -> dict[str, Any]:
        return {"transactionId": None, "messageId": None, "successIndicator": indicator,
                "application": "CUSTOMER", "messages": list(messages) or None}

    def _status_only(self, name: str, failure: BusinessFailure) -> etree._Element:
        el = etree.Element(f"{{{T24_NS}}}{name}", nsmap={"t24": T24_NS})
        build(el, "Status", self._status("T24Error", [f"{failure.code}: {failure.text}"]), T24_NS)
        return el

    def business_reply(self, op_tag: str, request: dict[str, Any], failure: BusinessFailure) -> etree._Element:
        return self._status_only(f"{local(op_tag)}Response", failure)

    def _read(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        cid = str(_get(request, "CustomerReadInput", "transactionId") or "")
        rec = self.store.get(cid)
        if rec is None:
            raise BusinessFailure("EB-NO.SUCH.RECORD", "RECORD NOT FOUND")
        el = etree.Element(f"{{{T24_NS}}}CustomerReadResponse", nsmap={"t24": T24_NS})
        build(el, "Status", self._status(), T24_NS)
        build(el, "CUSTOMERType", t24_record(rec), T24_NS)
        return el

    def _amend(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        rec_in = request.get("CUSTOMERType")
        if not isinstance(rec_in, dict) or not rec_in.get("@id"):
            raise SoapFault("soapenv:Client", "Malformed request: CUSTOMERType with an id is missing")
        changes: dict[str, Any] = {}
        for path, key in _T24_CHANGES.items():
            value = _get(rec_in, *path)
            if value is not None:
                changes[key] = value
        allowed = {"@id", "CurrNo", "gPHONE1", "CountrySubdivision", "TownCountry", "Address", "Street"}
        for k in rec_in:
            if k not in allowed:
                changes[k] = rec_in[k]
        curr = rec_in.get("CurrNo")
        try:
            rec = self.store.modify(str(rec_in["@id"]), None if curr in (None, "") else int(curr), changes,
                                    self.username)
        except BusinessFailure as f:
            mapping = {"ST-CUS-001": "EB-NO.SUCH.RECORD", "ST-MODNO-01": "EB-CURR.NO.CHANGED",
                       "ST-CLOSED-001": "EB-RECORD.CLOSED"}
            raise BusinessFailure(mapping.get(f.code, "EB-INVALID.INPUT"), f.text.upper()) from f
        el = etree.Element(f"{{{T24_NS}}}CustomerAmendResponse", nsmap={"t24": T24_NS})
        build(el, "Status", self._status(), T24_NS)
        build(el, "CUSTOMERType", t24_record(rec), T24_NS)
        return el

    def _changes(self, op: etree._Element, request: dict[str, Any]) -> etree._Element:
        crit = request.get("enquiryInputCollection") or []
        crit = crit if isinstance(crit, list) else [crit]
        since: str | None = None
        for c in crit:
            if isinstance(c, dict) and c.get("columnName") == "DATE.TIME" and c.get("operand") == "GE":
                try:
                    since = datetime.strptime(str(c.get("criteriaValue")), "%y%m%d%H%M").isoformat()
                except ValueError as exc:
                    raise BusinessFailure("EB-INVALID.DATE.TIME", "DATE.TIME MUST BE YYMMDDHHMM") from exc
        try:
            size = int(request.get("maxRecords") or 100)
        except ValueError as exc:
            raise SoapFault("soapenv:Client", "Malformed request: maxRecords is not a number") from exc
        after: tuple[str, str] | None = None
        key = request.get("startKey")
        if key:
            try:
                stamp, custno = base64.urlsafe_b64decode(str(key).encode()).decode().split("|")
                after = (stamp, custno)
            except ValueError as exc:
                raise BusinessFailure("EB-INVALID.START.KEY", "INVALID START KEY") from exc
        records = self.store.page_after(since, after, size + 1)
        more = len(records) > size
        records = records[:size]
        nxt = None
        if more and records:
            last = records[-1]
            nxt = base64.urlsafe_b64encode(f"{last['stamp']}|{last['custno']}".encode()).decode()
        el = etree.Element(f"{{{T24_NS}}}CustomerChangesResponse", nsmap={"t24": T24_NS})
        build(el, "Status", self._status(), T24_NS)
        build(el, "nextKey", nxt, T24_NS)
        build(el, "CUSTOMERCHANGESType", {"gCUSTOMERCHANGESDetailType": {
            "mCUSTOMERCHANGESDetailType": [t24_record(r) for r in records] or None}}, T24_NS)
        return el
