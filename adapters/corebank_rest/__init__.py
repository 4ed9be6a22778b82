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
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any, ClassVar, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crmbridge.adapters.base import (
    Adapter,
    AdapterConfig,
    FieldInfo,
    Page,
    RawRecord,
    WriteItem,
    WriteResult,
    WriteStatus,
)
from crmbridge.adapters.corebank_rest.client import (
    format_since,
    json_get,
    parse_path,
    parse_vendor_datetime,
    resolve_link,
)
from crmbridge.adapters.corebank_rest.errors import (
    DEFAULT_ERROR_PATHS,
    VENDOR,
    Classified,
    ErrorKind,
    Rule,
    bad_response,
    classify,
    to_error,
    to_record_error,
)
from crmbridge.core.errors import AuthenticationError, BadResponseError, ConfigurationError, RecordRejectedError
from crmbridge.core.secrets import SecretRef, resolve_secret
from crmbridge.core.types import TimeZoneName

__all__ = [
    "AuthConfig",
    "CorebankRestAdapter",
    "CorebankRestConfig",
    "EmbedConfig",
    "FINERACT_CLIENTS",
    "PaginationConfig",
    "PathsConfig",
    "ResourceConfig",
]

log = logging.getLogger(__name__)
_Strict = ConfigDict(extra="forbid")


def _check_path(value: str | None) -> str | None:
    if value is not None:
        parse_path(value)
    return value


class AuthConfig(BaseModel):
    """``basic`` (username + password) or ``bearer`` (a static ``token``, or OAuth2 client credentials at
    ``token_url`` with ``client_id`` + ``client_secret``). Secrets are references (``env:``/``file:``)."""

    model_config = _Strict
    type: Literal["basic", "bearer"]
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    token_url: str | None = Field(None, description="OAuth2 token endpoint (absolute, or relative to base_url)")
    client_id: str | None = None
    client_secret: SecretRef | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> AuthConfig:
        if self.type == "basic" and (not self.username or not self.password):
            raise ValueError("basic auth needs username and password")
        if self.type == "bearer":
            if self.token is None and not (self.token_url and self.client_id and self.client_secret):
                raise ValueError("bearer auth needs a token, or token_url + client_id + client_secret")
        return self


class PaginationConfig(BaseModel):
    """How a list is paged.

    ``offset``: ``offset_param``/``limit_param``; ends on a short or empty page or when ``total_path`` is reached.
    ``page``: ``page_param``/``size_param`` from ``first_page``; ends when ``next_path`` is null, ``total_pages_path``
    is reached, or on a short page. ``next_link``: the first request sends ``size_param``, then the link at
    ``next_path`` is followed (same origin only) until it is null. ``cursor``: the token at ``next_path`` is sent
    back as ``cursor_param`` until it is null. ``none``: one request.
    """

    model_config = _Strict
    style: Literal["offset", "page", "next_link", "cursor", "none"] = "offset"
    page_size: int = Field(100, ge=1, le=10_000)
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_param: str = "page"
    size_param: str = "size"
    first_page: int = 1
    cursor_param: str = "cursor"
    next_path: str | None = None
    total_path: str | None = None
    total_pages_path: str | None = None

    _paths = field_validator("next_path", "total_path", "total_pages_path")(_check_path)

    @model_validator(mode="after")
    def _needs_next(self) -> PaginationConfig:
        if self.style in ("next_link", "cursor") and not self.next_path:
            raise ValueError(f"pagination style {self.style} needs next_path")
        return self


class PathsConfig(BaseModel):
    """JSON paths: ``list`` in a list reply, ``item`` in a one-record reply (``""`` = the body), and ``id``,
    ``modified``, ``version`` inside a record (``null`` = the service has none)."""

    model_config = _Strict
    list: str = "pageItems"
    item: str = ""
    id: str = "id"
    modified: str | None = None
    modified_format: str | None = Field(None, description="strptime format; null = ISO 8601, arrays or epoch")
    version: str | None = None
    changes: str | None = Field(None, description="path of the change list in a write reply (empty = UNCHANGED)")

    _paths = field_validator("list", "item", "id", "modified", "version", "changes")(_check_path)


class EmbedConfig(BaseModel):
    """A sub-resource fetched for every record and stored in it under the embed's name (one extra call per
    record: use it for what the core keeps only there, such as Fineract's ID documents).

    With ``key``/``value`` the reply's list is pivoted into ``{key: value}`` (Fineract identifiers by document
    type: ``{path: /v1/clients/{id}/identifiers, key: documentType.name, value: documentKey}``), so a mapping
    reads ``identifiers.["Resident Identity Card"]``. A 404 stores ``null``.
    """

    model_config = _Strict
    path: str = Field(description="with {id}")
    list: str = Field("", description="path of the list in the reply ('' = the body)")
    key: str | None = None
    value: str | None = None

    _paths = field_validator("list", "key", "value")(_check_path)

    @model_validator(mode="after")
    def _shape(self) -> EmbedConfig:
        if "{id}" not in self.path:
            raise ValueError("path must contain {id}")
        if (self.key is None) != (self.value is None):
            raise ValueError("key and value go together")
        return self


class ResourceConfig(BaseModel):
    """One object (``Client``, ``Customer``) of the service."""

    model_config = _Strict
    list_path: str
    item_path: str = Field(description="with {id}, e.g. /v1/clients/{id}")
    write_path: str | None = Field(None, description="with {id}; null = read-only")
    write_method: Literal["PUT", "PATCH", "POST"] = "PUT"
    find_paths: dict[str, str] = Field(default_factory=dict, description="key field -> path with {key}")
    params: dict[str, str] = Field(default_factory=dict, description="fixed list parameters (sorting...)")
    fields_param: str | None = Field(None, description="projection parameter (Fineract: fields)")
    modified_since_param: str | None = None
    modified_since_format: str = Field("%Y-%m-%dT%H:%M:%SZ", description="strftime in the service's zone, or iso")
    pagination: PaginationConfig = PaginationConfig()
    paths: PathsConfig = PathsConfig()
    version_in: Literal["body", "header", "none"] = "none"
    version_name: str = Field("version", description="body field or header (If-Match) carrying the version")
    writable: list[str] | None = Field(None, description="payload fields a CRM may write; null = any")
    ignore: list[str] = Field(default_factory=list, description="payload fields dropped before writing")
    refetch_after_write: bool = Field(True, description="read the record after a write for its new version")
    embed: dict[str, EmbedConfig] = Field(default_factory=dict, description="sub-resources fetched per record")

    @field_validator("item_path", "write_path")
    @classmethod
    def _has_id(cls, v: str | None) -> str | None:
        if v is not None and "{id}" not in v:
            raise ValueError("must contain {id}")
        return v

    @field_validator("find_paths")
    @classmethod
    def _has_key(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if "{key}" not in path:
                raise ValueError(f"find_paths.{name} must contain {{key}}")
        return v


#: Fineract's ``/v1/clients`` (the defaults of a ``Client`` resource).
FINERACT_CLIENTS = ResourceConfig(
    list_path="/v1/clients", item_path="/v1/clients/{id}", write_path="/v1/clients/{id}",
    find_paths={"externalId": "/v1/clients/external-id/{key}"},
    params={"orderBy": "id", "sortOrder": "ASC"}, fields_param="fields",
    pagination=PaginationConfig(style="offset", page_size=200, total_path="totalFilteredRecords"),
    paths=PathsConfig(list="pageItems", item="", id="id", changes="changes"),
    writable=["mobileNo", "emailAddress", "externalId"], ignore=["legalForm", "legalFormId"],
    embed={"identifiers": EmbedConfig(path="/v1/clients/{id}/identifiers", key="documentType.name",
                                      value="documentKey")},
)


class BusinessErrorRule(BaseModel):
    """A bank-specific error and what it means (tried before the built-in table)."""

    model_config = _Strict
    status: int | Literal["4xx", "5xx"]
    code: str | None = Field(None, description="regular expression matched in full against the vendor code")
    text: str | None = Field(None, description="regular expression searched in the vendor message")
    kind: ErrorKind

    def rule(self) -> Rule:
        return Rule(self.status, self.kind, code=self.code, text=self.text, message=f"{self.kind.value} error")


class CorebankRestConfig(AdapterConfig):
    """Configuration of a core-banking REST system (``adapter: corebank_rest``)."""

    adapter: Literal["corebank_rest"] = "corebank_rest"
    base_url: str = Field(description="service root, e.g. https://host/fineract-provider/api")
    auth: AuthConfig
    headers: dict[str, str] = Field(default_factory=lambda: {"Fineract-Platform-TenantId": "default"})
    verify: bool | str = Field(True, description="TLS verification: true, false, or a CA bundle path")
    timezone: TimeZoneName = Field("UTC", description="zone of dates without an offset (Fineract: the tenant's zone)")
    resources: dict[str, ResourceConfig] = Field(default_factory=lambda: {"Client": FINERACT_CLIENTS})
    business_errors: list[BusinessErrorRule] = Field(default_factory=list)
    error_paths: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in
                                                                        DEFAULT_ERROR_PATHS.items()})
    request_id_header: str = "X-Request-Id"



class CorebankRestAdapter(Adapter):
    """Adapter for a core-banking customer service over REST/JSON."""

    name: ClassVar[str] = VENDOR
    Config: ClassVar[type[AdapterConfig]] = CorebankRestConfig
    max_batch_size: ClassVar[int] = 1
    default_concurrency: ClassVar[int] = 2

    config: CorebankRestConfig

    def __init__(self, config: AdapterConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        cfg = self.config
        self._base = cfg.base_url.rstrip("/")
        self._tz: tzinfo = ZoneInfo(cfg.timezone)
        self._rules = tuple(r.rule() for r in cfg.business_errors)
        self.session.verify = cfg.verify
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    # ---------------------------------------------------------------- hooks: reading
    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None,
                   state: Any) -> Page:
        res = self._resource(obj)
        pg = res.pagination
        full_scan = since is not None and res.modified_since_param is None
        params: dict[str, Any] = dict(res.params)
        if since is not None and res.modified_since_param:
            params[res.modified_since_param] = format_since(since, res.modified_since_format, self._tz)
        if fields and res.fields_param:
            wanted = [res.paths.id, *(p for p in (res.paths.modified, res.paths.version) if p)]
            params[res.fields_param] = ",".join(dict.fromkeys([*(w.split(".")[0] for w in wanted), *fields]))
        url = self._url(res.list_path)
        position = state or {}
        if pg.style == "offset":
            params[pg.offset_param] = position.get("offset", 0)
            params[pg.limit_param] = pg.page_size
        elif pg.style == "page":
            params[pg.page_param] = position.get("page", pg.first_page)
            params[pg.size_param] = pg.page_size
        elif pg.style in ("next_link", "cursor"):
            params[pg.size_param] = pg.page_size
            if pg.style == "cursor" and "cursor" in position:
                params[pg.cursor_param] = position["cursor"]
            if pg.style == "next_link" and "url" in position:
                url, params = position["url"], {}  # the link carries its own query
        body, resp = self._call("GET", url, params=params)
        rows = json_get(body, res.paths.list)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise bad_response(f"no record list at '{res.paths.list or '$'}'", resp)
        records = [self._record(obj, res, self._embedded(res, r)) for r in rows]
        return Page(records, self._next_state(pg, body, position, len(rows)), full_scan=full_scan)

    def _next_state(self, pg: PaginationConfig, body: Any, position: Mapping[str, Any], got: int) -> Any:
        if pg.style == "none":
            return None
        if pg.style == "offset":
            offset = position.get("offset", 0) + got
            total = self._int_at(body, pg.total_path)
            if got == 0 or got < pg.page_size or (total is not None and offset >= total):
                return None
            return {"offset": offset}
        if pg.style == "page":
            page = position.get("page", pg.first_page)
            if pg.next_path is not None and json_get(body, pg.next_path) in (None, ""):
                return None
            pages = self._int_at(body, pg.total_pages_path)
            if pages is not None and page - pg.first_page + 1 >= pages:
                return None
            if got == 0 or (pg.next_path is None and got < pg.page_size):
                return None
            return {"page": page + 1}
        nxt = json_get(body, pg.next_path)
        if nxt in (None, ""):
            return None
        if not isinstance(nxt, str | int):
            raise BadResponseError(f"next page value at '{pg.next_path}' is not a string", vendor=VENDOR)
        if got == 0 and pg.style == "cursor" and str(nxt) == str(position.get("cursor")):
            raise BadResponseError("the cursor did not advance", vendor=VENDOR)
        if pg.style == "cursor":
            return {"cursor": str(nxt)}
        try:
            url = resolve_link(self._base, str(nxt))
        except ValueError as exc:
            raise BadResponseError(str(exc), vendor=VENDOR) from exc
        if url == position.get("url"):
            raise BadResponseError("the next link points at the same page", vendor=VENDOR)
        return {"url": url}

    def _get(self, obj: str, external_id: str) -> RawRecord | None:
        res = self._resource(obj)
        return self._fetch_one(obj, res, self._url(res.item_path.format(id=quote(str(external_id), safe=""))))

    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        res = self._resource(obj)
        if key_field == res.paths.id:
            return self._get(obj, key)
        path = res.find_paths.get(key_field)
        if path is None:
            log.debug("%s cannot be searched by %s", obj, key_field)
            return None
        return self._fetch_one(obj, res, self._url(path.format(key=quote(str(key), safe=""))))

    def _fetch_one(self, obj: str, res: ResourceConfig, url: str) -> RawRecord | None:
        body, resp = self._call("GET", url, outcomes=(ErrorKind.NOT_FOUND,))
        if isinstance(body, Classified):
            return None
        row = json_get(body, res.paths.item)
        if not isinstance(row, dict):
            raise bad_response(f"no record at '{res.paths.item or '$'}'", resp)
        return self._record(obj, res, self._embedded(res, row))

    def _embedded(self, res: ResourceConfig, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with its configured sub-resources fetched in."""
        if not res.embed:
            return row
        rid = json_get(row, res.paths.id)
        if rid is None:
            return row  # _record reports the missing id
        out = dict(row)
        for name, emb in res.embed.items():
            body, resp = self._call("GET", self._url(emb.path.format(id=quote(str(rid), safe=""))),
                                    outcomes=(ErrorKind.NOT_FOUND,))
            if isinstance(body, Classified):
                out[name] = None
                continue
            items = json_get(body, emb.list)
            if not isinstance(items, list):
                raise bad_response(f"embed {name}: no list at '{emb.list or '$'}'", resp)
            if emb.key is None:
                out[name] = items
            else:
                out[name] = {str(json_get(i, emb.key)): json_get(i, emb.value) for i in items
                             if json_get(i, emb.key) is not None}
        return out

    def _describe(self, obj: str) -> list[FieldInfo]:
        res = self._resource(obj)
        page = self._list_page(obj, since=None, fields=None, state=None)
        names: dict[str, str] = {}
        for r in page.records:
            for k, v in r.data.items():
                names.setdefault(k, _json_type(v))
        writable = set(res.writable or names) if res.write_path else set()
        return [FieldInfo(n, t, read_only=n not in writable) for n, t in sorted(names.items())]

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
                if res.paths.version is not None and current.version != item.expected_version:
                    return self._conflict_or_unchanged(obj, item, target, current)
        url = self._url(res.write_path.format(id=quote(str(target), safe="")))
        body, resp = self._call(res.write_method, url, json=body_out, headers=headers,
                                outcomes=(ErrorKind.NOT_FOUND, ErrorKind.CONFLICT, ErrorKind.VALIDATION,
                                          ErrorKind.REJECTED))
        if isinstance(body, Classified):
            if body.kind is ErrorKind.CONFLICT:
                return self._conflict_or_unchanged(obj, item, target, None)
            return WriteResult(item.key, WriteStatus.FAILED, external_id=target, error=to_record_error(body))
        status = WriteStatus.UPDATED
        if res.paths.changes is not None:
            changes = json_get(body, res.paths.changes)
            if isinstance(changes, dict) and not ({k for k in changes if k not in ("locale", "dateFormat")}):
                status = WriteStatus.UNCHANGED
        after = None
        row = json_get(body, res.paths.item) if body else None
        if isinstance(row, dict) and json_get(row, res.paths.id) is not None:
            after = self._record(obj, res, row)
        elif res.refetch_after_write:
            after = self._get(obj, target)
        return WriteResult(item.key, status, external_id=str(target),
                           version=after.version if after else None, modified_at=after.modified_at if after else None)

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
        with self._token_lock:
            self._token = None

    # ---------------------------------------------------------------- wire
    def _resource(self, obj: str) -> ResourceConfig:
        try:
            return self.config.resources[obj]
        except KeyError:
            raise ConfigurationError(f"unknown object {obj!r}; configured: {', '.join(self.config.resources)}",
                                     where=f"systems.{self.system}.resources") from None

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self._base}/{path.lstrip('/')}"

    def _auth_headers(self) -> dict[str, str]:
        auth = self.config.auth
        where = f"systems.{self.system}.auth"
        if auth.type == "basic":
            assert auth.username is not None and auth.password is not None
            pw = resolve_secret(auth.password, where=f"{where}.password").get_secret_value()
            return {"Authorization": "Basic " + base64.b64encode(f"{auth.username}:{pw}".encode()).decode("ascii")}
        return {"Authorization": f"Bearer {self._bearer_token()}"}

    def _bearer_token(self) -> str:
        auth = self.config.auth
        where = f"systems.{self.system}.auth"
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            if auth.token is not None:
                self._token = resolve_secret(auth.token, where=f"{where}.token").get_secret_value()
                self._token_expires = float("inf")
                return self._token
            assert auth.token_url and auth.client_id and auth.client_secret
            secret = resolve_secret(auth.client_secret, where=f"{where}.client_secret").get_secret_value()
            form = {"grant_type": "client_credentials", "client_id": auth.client_id, "client_secret": secret}
            if auth.scope:
                form["scope"] = auth.scope
            resp = self._http("POST", self._url(auth.token_url), data=form, headers=dict(self.config.headers))
            if resp.status_code in (400, 401, 403):
                c = classify(resp, auth="basic", extra=self._rules, error_paths=self.config.error_paths)
                raise AuthenticationError(f"token request refused: {c.message}", vendor=VENDOR,
                                          status=resp.status_code, vendor_code=c.vendor_code, where=where)
            body = self._json(resp) if resp.ok else None
            if body is None:
                raise to_error(classify(resp, auth="bearer", extra=self._rules,
                                        error_paths=self.config.error_paths), where="token")
            token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
            if not isinstance(token, str) or not isinstance(lifetime, int | float):
                raise bad_response("token reply lacks access_token/expires_in", resp)
            self._token = token
            self._token_expires = time.monotonic() + float(lifetime) * 0.9
            return token

    def _call(self, method: str, url: str, *, outcomes: tuple[ErrorKind, ...] = (),
              headers: Mapping[str, str] | None = None, **kw: Any) -> tuple[Any, requests.Response]:
        """One call. Returns ``(body, response)``; a non-2xx reply of a kind in ``outcomes`` comes back as its
        :class:`Classified` instead of being raised."""
        hdrs = {"Accept": "application/json", **self.config.headers, **self._auth_headers(), **(headers or {})}
        resp = self._http(method, url, headers=hdrs, **kw)
        if 200 <= resp.status_code < 300:
            return self._json(resp), resp
        c = classify(resp, auth=self.config.auth.type, extra=self._rules, error_paths=self.config.error_paths,
                     request_id_header=self.config.request_id_header)
        if c.kind in outcomes:
            return c, resp
        raise to_error(c, where=requests.utils.urlparse(url).path)

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        if resp.status_code == 204 or not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError as exc:
            raise BadResponseError("reply is not JSON", vendor=VENDOR, status=resp.status_code,
                                   request_id=resp.headers.get("X-Request-Id")) from exc

    def _record(self, obj: str, res: ResourceConfig, row: Mapping[str, Any]) -> RawRecord:
        rid = json_get(row, res.paths.id)
        if rid is None or isinstance(rid, dict | list | bool) or str(rid) == "":
            raise BadResponseError(f"a record has no id at '{res.paths.id}'", vendor=VENDOR)
        modified = None
        if res.paths.modified is not None:
            try:
                modified = parse_vendor_datetime(json_get(row, res.paths.modified), self._tz,
                                                 res.paths.modified_format)
            except (ValueError, OverflowError) as exc:
                raise BadResponseError(f"record {rid}: unparsable modification time at "
                                       f"'{res.paths.modified}'", vendor=VENDOR) from exc
        version = json_get(row, res.paths.version) if res.paths.version else None
        return RawRecord(obj, str(rid), dict(row), modified, None if version is None else str(version))

    @staticmethod
    def _int_at(body: Any, path: str | None) -> int | None:
        if path is None:
            return None
        v = json_get(body, path)
        if v is None:
            return None
        try:
            return int(v)
        except (TypeError, ValueError) as exc:
            raise BadResponseError(f"'{path}' is not a number", vendor=VENDOR) from exc


def _version_value(v: str) -> int | str:
    return int(v) if v.isdigit() else v


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "string"

