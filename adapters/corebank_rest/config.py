"""The configuration model of a ``corebank_rest`` system, in a module of its own so that reading a configuration does
not import the adapter's transport (issue 19). Re-exported by :mod:`crmbridge.adapters.corebank_rest.adapter`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crmbridge.adapters._paths import vendor_path
from crmbridge.adapters.base import AdapterConfig
from crmbridge.adapters.errortable import ErrorKind, ErrorRule
from crmbridge.core.secrets import SecretRef
from crmbridge.core.types import TimeZoneName

__all__ = [
    "AuthConfig",
    "BusinessErrorRule",
    "CorebankRestConfig",
    "DEFAULT_ERROR_PATHS",
    "EmbedConfig",
    "FINERACT_CLIENTS",
    "FINERACT_LOANS",
    "FINERACT_SAVINGS_ACCOUNTS",
    "PaginationConfig",
    "PathsConfig",
    "ResourceConfig",
]

_Strict = ConfigDict(extra="forbid")

#: Where error details are in a body, first found wins (Fineract, OAuth2, generic ``{code, message}``).
DEFAULT_ERROR_PATHS: Mapping[str, tuple[str, ...]] = {
    "code": ("errors[0].userMessageGlobalisationCode", "userMessageGlobalisationCode", "error.code", "code",
             "error"),
    "message": ("errors[0].defaultUserMessage", "defaultUserMessage", "developerMessage", "error.message",
                "message", "error_description"),
    "field": ("errors[0].parameterName", "error.field", "field"),
}


def _check_path(value: str | None) -> str | None:
    """A configured JSON path must parse in the one path language (crmbridge.core.paths)."""
    if value is not None:
        try:
            vendor_path(value)
        except ValueError as exc:
            raise ValueError(f"bad JSON path {value!r}: {exc}") from None
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

    A reply with no records while ``has_more_path`` says more follow, or ``total_path``/``total_pages_path`` say
    records remain, is refused (:class:`BadResponseError`): a wrong ``paths.list`` must not read as an empty list.

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
    total_path: str | None = Field(None, description="records in the whole (filtered) list")
    total_pages_path: str | None = None
    has_more_path: str | None = Field(None, description="a boolean: more pages follow")

    _paths = field_validator("next_path", "total_path", "total_pages_path", "has_more_path")(_check_path)

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
    since_boundary: Literal["inclusive", "exclusive", "unknown"] = Field(
        "unknown", description="whether the modified-since filter keeps records stamped exactly at the given time; "
                               "unknown (safe) asks from since_overlap_seconds earlier and drops repeats")
    since_overlap_seconds: int = Field(
        1, ge=0, le=31 * 86400, description="how much earlier an exclusive or unknown filter is asked from: the "
                                            "filter's granularity (1 for seconds, 86400 for dates)")
    until_param: str | None = Field(None, description="as-of/until parameter pinned for a whole read (null = off)")
    until_path: str | None = Field(None, description="path of the as-of time in the first reply (null = its Date "
                                                     "header)")
    resume: Literal["keyset", "position"] = Field(
        "keyset", description="how a list filtered by modification time is continued: keyset re-asks from the "
                              "newest stamp read (an edit during the read cannot shift a record out of reach; the "
                              "list must be sorted ascending by paths.modified); position pages on")
    reread: int = Field(2, ge=0, description="records re-read at each offset step (keyset: inside one stamp; "
                                             "0 = none)")

    _until = field_validator("until_path")(_check_path)

    @model_validator(mode="after")
    def _until_needs_param(self) -> ResourceConfig:
        if self.until_path is not None and self.until_param is None:
            raise ValueError("until_path needs until_param")
        return self

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

#: Fineract's ``/v1/savingsaccounts`` (``SavingsAccountData``; docs/vendors/corebank.md §6): read-only holdings. The
#: list has no modification filter (a read is a full scan; the engine's content hashes find changes) and returns
#: every account when ``limit`` is absent, so the adapter always sends it.
FINERACT_SAVINGS_ACCOUNTS = ResourceConfig(
    list_path="/v1/savingsaccounts", item_path="/v1/savingsaccounts/{id}", write_path=None,
    find_paths={"externalId": "/v1/savingsaccounts/external-id/{key}"},
    params={"orderBy": "id", "sortOrder": "ASC"},
    pagination=PaginationConfig(style="offset", page_size=200, total_path="totalFilteredRecords"),
    paths=PathsConfig(list="pageItems", item="", id="id"),
)

#: Fineract's ``/v1/loans`` (``LoanAccountData``; docs/vendors/corebank.md §6): read-only, as savings.
FINERACT_LOANS = ResourceConfig(
    list_path="/v1/loans", item_path="/v1/loans/{id}", write_path=None,
    find_paths={"externalId": "/v1/loans/external-id/{key}"},
    params={"orderBy": "id", "sortOrder": "ASC"},
    pagination=PaginationConfig(style="offset", page_size=200, total_path="totalFilteredRecords"),
    paths=PathsConfig(list="pageItems", item="", id="id"),
)


class BusinessErrorRule(BaseModel):
    """A bank-specific error and what it means (tried before the built-in table)."""

    model_config = _Strict
    status: int | Literal["4xx", "5xx"]
    code: str | None = Field(None, description="regular expression matched in full against the vendor code")
    text: str | None = Field(None, description="regular expression searched in the vendor message")
    kind: ErrorKind

    def rule(self) -> ErrorRule:
        return ErrorRule(self.kind, f"{self.kind.value} error", status=self.status, code=self.code, text=self.text)


class CorebankRestConfig(AdapterConfig):
    """Configuration of a core-banking REST system (``adapter: corebank_rest``)."""

    adapter: Literal["corebank_rest"] = "corebank_rest"
    base_url: str = Field(description="service root, e.g. https://host/fineract-provider/api")
    auth: AuthConfig
    headers: dict[str, str] = Field(default_factory=lambda: {"Fineract-Platform-TenantId": "default"})
    verify: bool | str = Field(True, description="TLS verification: true, false, or a CA bundle path")
    timezone: TimeZoneName = Field("UTC", description="zone of dates without an offset (Fineract: the tenant's zone)")
    resources: dict[str, ResourceConfig] = Field(default_factory=lambda: {
        "Client": FINERACT_CLIENTS, "SavingsAccount": FINERACT_SAVINGS_ACCOUNTS, "LoanAccount": FINERACT_LOANS})
    business_errors: list[BusinessErrorRule] = Field(default_factory=list)
    error_paths: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in
                                                                        DEFAULT_ERROR_PATHS.items()})
    request_id_header: str = "X-Request-Id"
