"""The zeep side of the core-banking SOAP adapter: one configured client, one ``call``.

:class:`SoapClient` owns everything zeep- and requests-specific: the injected ``requests.Session`` inside a
:class:`zeep.Transport` (load and operation timeouts), WS-Security UsernameToken, safe XML settings (strict,
no huge trees, no DTD, no entities, no external references), service/port selection and the endpoint override.
:meth:`SoapClient.call` sends one operation and returns the reply as plain dicts, lists and strings, having
checked the business status configured for the system. Every failure leaves as a crmbridge error through the
one table in :mod:`crmbridge.adapters.corebank_soap.errors`.

Paths (``FCUBS_BODY.Customer-IO.CUSTNO``, ``UDFDETAILS[FLDNAM=RISK].FLDVAL``, ``["CURR.NO"]``) are in the one path
language of :mod:`crmbridge.core.paths`, the mappings' own. One rule is added when reading a reply: a name applied to
a list of structures reads its first entry (T24 single-valued multi-value groups). The ``/``-separated form of
earlier configurations (``FCUBS_BODY/Customer-IO/CUSTNO``, a numeric segment indexing a list) is still accepted:
:func:`soap_path` rewrites it when the configuration is read, the one place it is understood.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import requests
import zeep
import zeep.exceptions as zx
from lxml import etree
from pydantic import SecretStr
from zeep.transports import Transport
from zeep.xsd.valueobjects import CompoundValue

from crmbridge.adapters._paths import join_path, key_names, vendor_path, vendor_set
from crmbridge.adapters.corebank_soap.auth import username_token
from crmbridge.adapters.corebank_soap.bulk import BulkReader
from crmbridge.adapters.corebank_soap.config import SoapPath, soap_path
from crmbridge.adapters.corebank_soap.errors import (
    Classified,
    ErrorKind,
    classify_business,
    classify_exception,
    classify_fault,
    classify_http,
    to_error,
)
from crmbridge.adapters.errortable import ErrorRule
from crmbridge.core.errors import ConfigurationError, CrmBridgeError
from crmbridge.core.paths import Path as VendorPath
from crmbridge.core.paths import PathKey, path_get
from crmbridge.core.retry import retry_after_seconds

__all__ = [
    "BusinessStatus",
    "SoapClient",
    "get_path",
    "new_message_id",
    "normalise",
    "resolve_wsdl",
    "set_path",
    "SoapPath",
    "soap_path",
]

# ---------------------------------------------------------------------------------------------- paths
_INTEGER = re.compile(r"\s*[+-]?\d{1,18}\s*")


def is_integer_text(text: str) -> bool:
    """Whether ``text`` is an integer as XML carries one (optional sign, digits, surrounding blanks)."""
    return _INTEGER.fullmatch(text) is not None


class IntegerGuard(zeep.Plugin):
    """Checks the record's integer fields (the version: FLEXCUBE ``MODNO``, T24 ``CURR.NO``) in the raw reply,
    before zeep reads it.

    zeep turns a value that does not parse as its XSD type into ``None`` and logs a full traceback (with the value
    in it) for each one: a core answering ``MODNO`` "abc" gave a traceback per record, a run that "succeeded",
    and a stored version of NULL, so later write-backs lost their stale-version check. This plugin empties such a
    value (zeep then reads an absent element, quietly) and remembers which record, by its id, held it; the
    adapter turns that into a record error naming the field (:meth:`refused`).
    """

    def __init__(self, fields: Mapping[str, str], id_path: str) -> None:
        """``fields``: the configured path (inside a record) of each integer field, by its element's local
        name; ``id_path``: the record's id path (``CUSTNO``)."""
        self._fields = {name: key_names(path) for name, path in fields.items()}
        self._id = key_names(id_path)
        self._local = threading.local()

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        found: dict[str, list[tuple[str, int]]] = {}
        for name, segs in self._fields.items():
            for el in envelope.iter(f"{{*}}{name}"):
                text = el.text
                if text is None or not text.strip() or _INTEGER.fullmatch(text):
                    continue
                record = el
                for _ in segs:
                    record = record.getparent() if record is not None else None
                found.setdefault(self._record_id(record), []).append((join_path(segs), len(text)))
                el.text = None
                for child in list(el):
                    el.remove(child)
        self._local.found = found
        return envelope, http_headers

    def _record_id(self, record: Any) -> str:
        cur = record
        for seg in self._id:
            cur = next((c for c in (cur if cur is not None else ()) if isinstance(c.tag, str)
                        and etree.QName(c).localname == seg), None)
        return (cur.text or "").strip() if cur is not None else ""

    def refused(self) -> dict[str, list[tuple[str, int]]]:
        """This thread's last reply: record id -> [(field path, length of the refused value)]."""
        return getattr(self._local, "found", {})


class _QuietTranslation(logging.Filter):
    """zeep logs ``logger.exception`` (a traceback carrying the value, possibly personal data) for every value
    that does not parse as its XSD type. One line without the value instead; the integer fields crmbridge relies
    on never get here (:class:`IntegerGuard`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.getMessage().startswith("Error during xml -> python translation"):
            exc = record.exc_info[1]
            record.msg = ("a value in the core's reply does not parse as its XSD type (%s); zeep reads it as "
                          "empty")
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("zeep.xsd.types.simple").addFilter(_QuietTranslation())




def get_path(data: Any, path: str | None, default: Any = None) -> Any:
    """The value at ``path`` in nested dicts/lists (``default`` if any step is missing). Each step is the one path
    language's; a name applied to a list of structures reads its first entry (a single-valued multi-value group)."""
    if not path:
        return default
    parsed = vendor_path(path)
    found = path_get(data, parsed)
    if found is not None:
        return found
    cur = data   # missing, or a name met a list: step by step, through single-valued groups
    for op in parsed.ops:
        if isinstance(op, PathKey) and isinstance(cur, list) and cur and isinstance(cur[0], Mapping):
            cur = cur[0]
        cur = path_get(cur, VendorPath(path, (op,)))
        if cur is None:
            return default
    return cur


def set_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set ``value`` at ``path``, creating what is missing on the way; returns ``data``."""
    return vendor_set(data, path, value)


def normalise(value: Any) -> Any:
    """zeep objects → plain ``dict``/``list``/``str``: empty elements dropped from structures (kept as ``None`` in
    lists, where the position is the meaning), numbers and dates as text."""
    # one pass over zeep's objects (zeep's serialize_object at every level re-walked each subtree: quadratic in
    # the depth, a fifth of a core-banking read's CPU)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping | CompoundValue):
        out = {}
        for k in value:
            v = value[k]
            if v is None:
                continue
            nv = normalise(v)
            if nv is not None:
                out[str(k)] = nv
        return out
    if isinstance(value, list | tuple):  # positions matter (T24 language multi-values): empty entries stay None
        return [normalise(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, int | float | Decimal):
        return str(value)
    if value is None:
        return None
    return str(value)


# ---------------------------------------------------------------------------------------------- config pieces
@dataclass(frozen=True, slots=True)
class BusinessStatus:
    """Where a system reports business success or failure inside an HTTP-200 reply.

    Attributes:
        path: the status element (``FCUBS_HEADER/MSGSTAT``, ``Status/successIndicator``).
        success: the values that mean success (anything else, or a missing status, is a failure).
        errors: the error entries (``FCUBS_BODY/FCUBS_ERROR_RESP/ERROR``, ``Status/messages``): a list, one entry,
            or plain strings.
        code: the code inside an entry (``ECODE``); without it the code comes from ``code_pattern`` or the status.
        text: the text inside an entry (``EDESC``); plain-string entries are their own text.
        code_pattern: a regular expression with one group that finds the code in the text (T24 messages).
        rules: configured business rows, tried before the default table.
    """

    path: str
    success: tuple[str, ...]
    errors: str | None = None
    code: str | None = None
    text: str | None = None
    code_pattern: str | None = None
    rules: tuple[ErrorRule, ...] = ()

    def check(self, reply: Mapping[str, Any]) -> Classified | None:
        """``None`` on success, else the classified failure (the first error entry decides)."""
        status = get_path(reply, self.path)
        if status is not None and str(status) in self.success:
            return None
        entries = get_path(reply, self.errors, [])
        if not isinstance(entries, list):
            entries = [entries]
        code: str | None = None
        texts: list[str] = []
        for entry in entries:
            if isinstance(entry, Mapping):
                if code is None and self.code:
                    code = get_path(entry, self.code)
                t = get_path(entry, self.text) if self.text else None
                if t:
                    texts.append(str(t))
            elif entry is not None:
                texts.append(str(entry))
        if code is None and self.code_pattern:
            import re

            for t in texts:
                m = re.search(self.code_pattern, t)
                if m:
                    code = m.group(1)
                    break
        if code is None:
            code = "" if status is None else str(status)
        return classify_business(code, "; ".join(texts), self.rules)


def resolve_wsdl(wsdl: str) -> str:
    """A WSDL location zeep can load: ``package:NAME`` (a WSDL shipped in this package), a URL or a file path."""
    if wsdl.startswith("package:"):
        ref = resources.files("crmbridge.adapters.corebank_soap").joinpath(wsdl.split(":", 1)[1])
        if not ref.is_file():
            raise ConfigurationError(f"no packaged WSDL named {wsdl.split(':', 1)[1]!r}", where="wsdl")
        return str(ref)
    if wsdl.startswith(("http://", "https://")):
        return wsdl
    path = Path(wsdl.removeprefix("file://"))
    if not path.is_file():
        raise ConfigurationError(f"WSDL file {path} does not exist", where="wsdl")
    return str(path)


class GatewayReply(Exception):
    """A reply that is not the SOAP service's own (a gateway or proxy page, an empty or cut body)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


_ENVELOPE = re.compile(rb"<([A-Za-z_][\w.-]*:)?Envelope[\s>/]")


def _not_soap(response: requests.Response) -> str | None:
    """What a reply is instead of a SOAP envelope (``None`` if it may be one: zeep then parses it).

    Any status other than 200 with a body that holds no ``Envelope`` element is the gateway's (nginx's 503 page,
    an empty 502, plain text); a 200 that is empty or an HTML page is not the service's answer either. A 200 that
    starts like an envelope but is cut or malformed is left to zeep, whose XML error the table classifies."""
    body = response.content or b""
    head = body[:4096].lstrip()
    ctype = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if not head:
        return None if response.status_code in (201, 202) else "an empty body"   # one-way operations: no reply
    low = head[:512].lower()
    html = ctype in ("text/html", "application/xhtml+xml") or low.startswith((b"<!doctype html", b"<html"))
    if response.status_code == 200:
        if html and not _ENVELOPE.search(head):
            return f"an HTML page ({ctype or 'no content type'}), not a SOAP envelope"
        return None
    if _ENVELOPE.search(head):
        return None
    if html:
        return "an HTML page, not a SOAP envelope"
    if head.startswith(b"<"):
        return f"XML that is not a SOAP envelope ({ctype or 'no content type'})"
    return f"a {ctype or 'non-XML'} body, not a SOAP envelope"


class _RecordingTransport(Transport):
    """zeep's transport with two changes: each POST takes its timeout from a callable (so a changed configuration
    applies at once), and the HTTP status and headers of the last POST are remembered per thread for the error
    table. zeep's own ``post`` is bypassed because it logs whole envelopes (personal data) at DEBUG."""

    def __init__(self, *args: Any, operation_timeout_fn: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local = threading.local()
        self._timeout_fn = operation_timeout_fn

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        self.local.last = None
        response = self.session.post(address, data=message, headers=headers, timeout=self._timeout_fn())
        self.local.last = response
        not_soap = _not_soap(response)
        if not_soap is not None:   # a gateway's page, an empty or cut body: classified here, not parsed by zeep
            raise GatewayReply(response.status_code, not_soap)
        return response

    def last(self) -> requests.Response | None:
        return getattr(self.local, "last", None)


class SoapClient:
    """One configured zeep client.

    Args:
        wsdl: ``package:NAME``, an ``http(s)://`` URL or a file path.
        session: the injected ``requests.Session`` (TLS, client certificates, proxies are set on it).
        username / password: the service user; with ``wsse`` they go in a WS-Security UsernameToken, and they
            can also be spliced into header values as ``{username}`` / ``{password}`` (T24 WebRequestCommon).
        wsse: send a UsernameToken; ``use_digest`` sends PasswordDigest (nonce + created) instead of PasswordText.
        service / port: which WSDL service and port to bind (the first of each if ``None``).
        endpoint: overrides the port's ``soap:address``.
        load_timeout / operation_timeout: seconds for WSDL/XSD loading and for each operation (the latter may be a
            callable returning a requests timeout, read at every call).
        huge_tree: lift libxml2's size limits (only for known-large replies).
        status: the business status check.
        on_call: counts each operation call with its HTTP status (or ``timeout``/``connection``/``error``).
        slot: a context manager factory that bounds concurrency and rate (the adapter's gate).
    """

    def __init__(self, *, wsdl: str, session: requests.Session, username: str | None,
                 password: SecretStr | None, wsse: bool = True, use_digest: bool = True,
                 service: str | None = None, port: str | None = None, endpoint: str | None = None,
                 load_timeout: float = 30.0,
                 operation_timeout: float | tuple[float, float] | Callable[[], Any] = 30.0,
                 huge_tree: bool = False, status: BusinessStatus | None = None,
                 on_call: Callable[[int | str], None] = lambda s: None,
                 slot: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                 vendor: str = "corebank_soap", plugins: Iterable[Any] = ()) -> None:
        self._wsdl = wsdl
        self._username = username
        self._password = password
        self._wsse = wsse
        self._use_digest = use_digest
        self._service_name = service
        self._port_name = port
        self._endpoint = endpoint
        self._status = status
        self._on_call = on_call
        self._slot = slot
        self.vendor = vendor
        timeout_fn = operation_timeout if callable(operation_timeout) else (lambda: operation_timeout)
        self.transport = _RecordingTransport(session=session, timeout=load_timeout,
                                             operation_timeout_fn=timeout_fn)
        self.settings = zeep.Settings(strict=True, xml_huge_tree=huge_tree, forbid_dtd=True,
                                      forbid_entities=True, forbid_external=True)
        #: the change list's records read with lxml (the last plugin: after any that edits the raw reply)
        self.bulk = BulkReader()
        self._plugins = [*plugins, self.bulk]
        self._client: zeep.Client | None = None
        self._proxy: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ binding
    def _bind(self) -> Any:
        with self._lock:
            if self._proxy is not None:
                return self._proxy
            location = resolve_wsdl(self._wsdl)
            wsse = username_token(self._username, self._password, use_digest=self._use_digest) \
                if self._wsse else None
            with self._translated("loading the WSDL"):
                client = zeep.Client(location, transport=self.transport, wsse=wsse, settings=self.settings,
                                     plugins=self._plugins)
            services = client.wsdl.services
            if not services:
                raise ConfigurationError("the WSDL declares no service", where="wsdl")
            sname = self._service_name or next(iter(services))
            if sname not in services:
                raise ConfigurationError(f"the WSDL has no service {sname!r}; it has {', '.join(services)}",
                                         where="service")
            ports = services[sname].ports
            pname = self._port_name or next(iter(ports))
            if pname not in ports:
                raise ConfigurationError(f"service {sname!r} has no port {pname!r}; it has {', '.join(ports)}",
                                         where="port")
            if self._endpoint:
                proxy = client.create_service(ports[pname].binding.name, self._endpoint)
            else:
                proxy = client.bind(sname, pname)
            self._client, self._proxy = client, proxy
            return proxy

    def operations(self) -> list[str]:
        """The operation names of the bound port."""
        proxy = self._bind()
        return sorted(proxy._binding._operations)

    def element_type(self, operation: str, output: bool = False) -> Any:
        """The zeep type of an operation's input (or output) body element (for ``describe``)."""
        proxy = self._bind()
        op = proxy._binding._operations[operation]
        msg = op.output if output else op.input
        return msg.body.type

    # ------------------------------------------------------------------ the call
    def call(self, operation: str, body: Mapping[str, Any], *, where: str | None = None,
             check_status: bool = True, records: str | None = None) -> dict[str, Any]:
        """Call ``operation`` with ``body`` (the children of its input element) and return the reply as plain
        data, after the business-status check. ``records``: the reply path of the records of a bulk reply (a
        change list), read with lxml instead of zeep's objects when the reply is plain
        (:mod:`crmbridge.adapters.corebank_soap.bulk`); the reply is the same either way.

        Raises:
            crmbridge errors only (see :mod:`crmbridge.adapters.corebank_soap.errors`).
        """
        proxy = self._bind()
        try:
            method = getattr(proxy, operation)
        except AttributeError as exc:
            raise ConfigurationError(f"the WSDL port has no operation {operation!r}",
                                     where="operations") from exc
        names = None
        if records and all(isinstance(op, PathKey) for op in vendor_path(records).ops):
            names = key_names(records)
        self.bulk.expect(names)
        try:
            with self._slot(), self._translated(operation, where=where, count=True):
                result = method(**dict(body))
        finally:
            read_here, items = self.bulk.take()
        reply = normalise(result)
        if not isinstance(reply, dict):
            reply = {"_value": reply}
        if read_here and items is not None and records:
            set_path(reply, records, items)
        if check_status and self._status is not None:
            failure = self._status.check(reply)
            if failure is not None:
                raise to_error(failure, where=where or operation)
        return reply

    @contextlib.contextmanager
    def _translated(self, what: str, *, where: str | None = None, count: bool = False) -> Iterator[None]:
        """Translate everything zeep, lxml and requests raise into crmbridge errors, via the one table."""
        try:
            yield
        except CrmBridgeError:
            raise
        except GatewayReply as exc:
            last = self.transport.last()
            if count:
                self._on_call(exc.status)
            if exc.status == 200:
                c = Classified(ErrorKind.BAD_RESPONSE, f"the reply (HTTP 200) is {exc.body}", status=200)
            else:
                c = classify_http(exc.status, _retry_after(last), body=exc.body)
            raise to_error(c, where=where or what) from None
        except zx.Fault as exc:
            last = self.transport.last()
            status = last.status_code if last is not None else None
            if count:
                self._on_call(status or "fault")
            c = classify_fault(exc.code, exc.subcodes, exc.message, status=status,
                               retry_after=_retry_after(last))
            raise to_error(c, where=where or what) from exc
        except Exception as exc:
            last = self.transport.last()
            if count:
                self._on_call(last.status_code if last is not None else _call_label(exc))
            c = classify_exception(exc)
            if c is None:
                c = Classified(ErrorKind.BAD_RESPONSE, f"unexpected {type(exc).__name__} while {what}")
            elif c.status is not None:
                message = c.message
                if c.status == 200 and isinstance(exc, zx.TransportError):
                    message = _broken_200(last)
                c = Classified(c.kind, message, c.vendor_code, c.status, _retry_after(last))
            raise to_error(c, where=where or what) from exc
        else:
            if count:
                last = self.transport.last()
                self._on_call(last.status_code if last is not None else "ok")

    def last_headers(self) -> dict[str, str]:
        """The HTTP headers of this thread's last reply (doctor: Date, rate-limit headers)."""
        last = self.transport.last()
        return dict(last.headers) if last is not None else {}

    def close(self) -> None:
        self._client = None
        self._proxy = None


def _broken_200(resp: requests.Response | None) -> str:
    """The message for an HTTP 200 whose body zeep could not parse."""
    body = (resp.content or b"") if resp is not None else b""
    if not body.strip():
        return "the reply (HTTP 200) is empty"
    if _ENVELOPE.search(body[:4096]) and not re.search(rb"</([A-Za-z_][\w.-]*:)?Envelope\s*>\s*$", body[-256:]):
        return f"the reply (HTTP 200) is truncated: the SOAP envelope is not closed ({len(body)} bytes)"
    return "the reply (HTTP 200) is not well-formed XML"


def _retry_after(resp: requests.Response | None) -> float | None:
    """Seconds from a Retry-After header: a number or an HTTP date."""
    return None if resp is None else retry_after_seconds(resp.headers.get("Retry-After"))


def _call_label(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection"
    return "error"


def new_message_id() -> str:
    """A fresh message id (FLEXCUBE MSGID, T24 messageId)."""
    return uuid.uuid4().hex[:20].upper()
