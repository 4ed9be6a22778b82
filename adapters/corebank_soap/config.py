"""The configuration model of a ``corebank_soap`` system, in a module of its own so that reading a configuration does
not import the adapter's transport (issue 19). Re-exported by :mod:`crmbridge.adapters.corebank_soap.adapter`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from crmbridge.adapters._paths import join_path, vendor_path
from crmbridge.adapters.base import AdapterConfig
from crmbridge.adapters.errortable import ErrorKind
from crmbridge.core.secrets import SecretRef
from crmbridge.core.types import TimeZoneName

__all__ = [
    "BusinessErrorRule",
    "CorebankSoapConfig",
    "FCUBS_ACCOUNTS",
    "GetOperation",
    "HeaderConfig",
    "ListOperation",
    "ModifyOperation",
    "OperationsConfig",
    "PagingConfig",
    "PivotConfig",
    "RecordConfig",
    "SoapPath",
    "StatusConfig",
    "soap_path",
]

_Strict = ConfigDict(extra="forbid")


def soap_path(text: str) -> str:
    """A configured path in the one path language. The legacy ``/``-separated form is rewritten: names joined by
    dots, a numeric segment as ``[n]``, a name holding a dot quoted (``Status/CURR.NO`` → ``Status.["CURR.NO"]``).
    A path without ``/`` is already in the one language and is returned as it is."""
    if not isinstance(text, str) or "/" not in text:
        return text
    segs = [s for s in text.strip().strip("/").split("/") if s]
    return join_path([int(s) if s.isdigit() and i else s for i, s in enumerate(segs)])


def _soap_path_checked(text: Any) -> Any:
    if text is None or not isinstance(text, str):
        return text
    out = soap_path(text)
    vendor_path(out)   # ValueError (a pydantic error naming the key) if it does not parse
    return out


#: a path in a SOAP system's configuration: the one path language, or the legacy ``/`` form (rewritten)
SoapPath = Annotated[str, BeforeValidator(_soap_path_checked)]


class HeaderConfig(BaseModel):
    """The request header block (FLEXCUBE ``FCUBS_HEADER``, T24 ``WebRequestCommon``)."""

    model_config = _Strict
    path: SoapPath | None = Field("FCUBS_HEADER", description="request path of the header block; null = none")
    values: dict[SoapPath, str] = Field(default_factory=lambda: {
        "SOURCE": "CRMBRIDGE", "UBSCOMP": "FCUBS", "USERID": "CRMBRIDGE", "BRANCH": "000",
        "MODULEID": "ST", "SERVICE": "FCUBSCustomerService"},
        description="fixed values (paths inside the header); '{username}'/'{password}' are spliced in")
    message_id: SoapPath | None = Field("MSGID", description="header element given a fresh id per call")
    operation: SoapPath | None = Field("OPERATION", description="header element given the operation's business name")


class StatusConfig(BaseModel):
    """Where the business status and errors are in every reply."""

    model_config = _Strict
    path: SoapPath = "FCUBS_HEADER.MSGSTAT"
    success: list[str] = ["SUCCESS", "WARNING"]
    errors: SoapPath | None = "FCUBS_BODY.FCUBS_ERROR_RESP.ERROR"
    code: SoapPath | None = "ECODE"
    text: SoapPath | None = "EDESC"
    code_pattern: str | None = None


class BusinessErrorRule(BaseModel):
    """A bank-specific business code and what it means (tried before the built-in table)."""

    model_config = _Strict
    code: str = Field(description="regular expression matched in full against the vendor code")
    kind: ErrorKind
    message: str = "the core refused the operation"


class PagingConfig(BaseModel):
    """How the change list is paged.

    * ``keyset`` (default): each page asks again for the records changed since the newest instant read (lowered by
      one ``since_format`` unit unless ``since_boundary`` is ``inclusive``: see :class:`ListOperation`); page
      numbers only step through records sharing that window, each stepped page beginning with a record read
      already so that a shift (an edit during the read) shows and the page before is read again. Records this
      extract has yielded already (same id and version) are dropped. Needs the reply in modification order,
      which is checked. A record edited while the list is read moves to the end and is read there.
    * ``page_number``: pages 1, 2, 3... of one query. A record edited during the read moves to the end and shifts
      every later record one place back, so the record at the next page's edge is never read, and the cursor
      then passes it: use only against a source that does not change while it is read.
    * ``continuation``: the server's own continuation key (T24 enquiries), as safe as keyset.
    """

    model_config = _Strict
    mode: Literal["keyset", "page_number", "continuation"] = "keyset"
    page: SoapPath | None = Field("FCUBS_BODY.Customer-Changes-IO.PAGE_NO",
                             description="request path of the page number (page_number, keyset)")
    first_page: int = 1
    size: SoapPath | None = Field("FCUBS_BODY.Customer-Changes-IO.PAGE_SIZE", description="request path of the size")
    page_size: int = Field(100, ge=1, le=10_000)
    max_page_size: int = Field(1000, ge=1, le=100_000, description="the largest page size the service accepts "
                               "(keyset paging asks for a little more than page_size to make up for re-reads)")
    has_more: SoapPath | None = Field("FCUBS_BODY.Page-Info.HAS_MORE",
                                 description="reply path of a more-pages flag (else: a full page means more)")
    total: SoapPath | None = Field("FCUBS_BODY.Page-Info.TOTAL_RECORDS",
                              description="reply path of the number of records the query matches (checks only)")
    token: SoapPath | None = Field(None, description="request path of the continuation key (continuation)")
    next_token: SoapPath | None = Field(None, description="reply path of the next continuation key (continuation)")


class ListOperation(BaseModel):
    """The change list (customers changed since a timestamp) and what its filter means.

    ``since_boundary`` says whether the core's changed-since filter lets through records stamped exactly at the
    timestamp asked for. ``inclusive`` asks from the watermark itself; ``exclusive`` and ``unknown`` (the safe
    default, correct under either) ask from ``since_overlap_seconds`` before it and drop the records already
    read in this extract (same id and version). ``crmbridge doctor`` finds the semantics by reading.
    """

    model_config = _Strict
    operation: str = "QueryCustomersModifiedSinceIO"
    name: str | None = "QueryCustomersModifiedSince"
    static: dict[SoapPath, Any] = Field(default_factory=dict, description="fixed request values by path")
    since_static: dict[SoapPath, Any] = Field(default_factory=dict,
                                         description="fixed values sent only with a since (T24 criteria)")
    since: SoapPath = "FCUBS_BODY.Customer-Changes-IO.FROM"
    since_format: str = "%Y-%m-%dT%H:%M:%S"
    since_boundary: Literal["inclusive", "exclusive", "unknown"] = Field(
        "unknown", description="whether the changed-since filter includes the boundary instant; unknown (the "
        "default) loses nothing under either semantics, at the cost of re-reading an overlap")
    since_overlap_seconds: float | None = Field(
        None, ge=0, description="how far before the watermark exclusive/unknown ask again; null = one unit of "
        "since_format (1 s for %S, 60 s for %M)")
    until: SoapPath | None = Field(None, description="request path of an upper bound (as-of) pinned for the whole "
                              "read, so records edited during it are not chased; off by default")
    until_from: SoapPath | None = Field(None, description="reply path of the as-of value the first page reports; "
                                   "sent at 'until' on every later page")
    records: SoapPath = Field("FCUBS_BODY.Customer-Full", description="reply path of the records")
    paging: PagingConfig = PagingConfig()

    @model_validator(mode="after")
    def _until_pair(self) -> ListOperation:
        if bool(self.until) != bool(self.until_from):
            raise ValueError("operations.list.until and until_from go together (request path, reply path)")
        return self


class GetOperation(BaseModel):
    model_config = _Strict
    operation: str = "QueryCustomerIO"
    name: str | None = "QueryCustomer"
    static: dict[SoapPath, Any] = Field(default_factory=dict)
    id: SoapPath = "FCUBS_BODY.Customer-IO.CUSTNO"
    record: SoapPath = "FCUBS_BODY.Customer-Full"


class ModifyOperation(BaseModel):
    model_config = _Strict
    operation: str = "ModifyCustomerFS"
    name: str | None = "ModifyCustomer"
    static: dict[SoapPath, Any] = Field(default_factory=dict)
    record: SoapPath = Field("FCUBS_BODY.Customer-Full", description="request path the record goes to")
    id: SoapPath = Field("CUSTNO", description="id path inside the request record")
    version: SoapPath | None = Field("MODNO", description="version path inside the request record")
    result: SoapPath | None = Field("FCUBS_BODY.Customer-Full", description="reply path of the updated record")
    writable: list[SoapPath] = Field(default_factory=lambda: [
        "Custpersonal.MOBNUM", "Custpersonal.MOBISDNO", "Custpersonal.EMAILID", "Custpersonal.TELEPHNO",
        "Custcorp.MOBILENUMBER", "Custcorp.EMAILID", "Custcorp.TELEPHONE",
        "ADDRLN1", "ADDRLN2", "ADDRLN3", "ADDRLN4"],
        description="record paths a CRM may write back; anything else is a golden field and refused")
    ignore: list[SoapPath] = Field(default_factory=lambda: ["CTYPE"], description=(
        "payload paths dropped before writing: what a mapping emits only to identify the record type"))
    require_version: bool = Field(False, description="refuse writes without expected_version (else read it first)")


class OperationsConfig(BaseModel):
    model_config = _Strict
    list: ListOperation = ListOperation()
    get: GetOperation = GetOperation()
    modify: ModifyOperation | None = ModifyOperation()


class PivotConfig(BaseModel):
    """Turn a list of name/value entries (FLEXCUBE ``UDFDETAILS``) into a mapping, for readable mappings."""

    model_config = _Strict
    path: SoapPath
    key: SoapPath
    value: SoapPath


class RecordConfig(BaseModel):
    """Where the id, version, timestamp and status are inside one customer record."""

    model_config = _Strict
    id: SoapPath = "CUSTNO"
    version: SoapPath | None = "MODNO"
    modified_at: SoapPath | None = "CHECKERSTAMP"
    modified_at_format: str | None = Field(None, description="strptime format; null = ISO 8601")
    closed_path: SoapPath | None = "RECORD_STAT"
    closed_values: list[str] = ["C"]
    pivots: list[PivotConfig] = Field(default_factory=list, description=(
        "name/value lists to turn into mappings, e.g. {path: UDFDETAILS, key: FLDNAM, value: FLDVAL}; off by "
        "default: mappings select UDFDETAILS[FLDNAM=...].FLDVAL on the wire shape"))


class CorebankSoapConfig(AdapterConfig):
    """Configuration of ``adapter: corebank_soap`` (defaults: the FLEXCUBE-style FCUBSCustomerService)."""

    adapter: str = "corebank_soap"
    wsdl: str = Field("package:fcubs_customer.wsdl", description="package:NAME, http(s) URL or file path")
    endpoint: str | None = Field(None, description="overrides the WSDL's soap:address")
    service: str | None = None
    port: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    wsse: bool = Field(True, description="send a WS-Security UsernameToken (T24 puts credentials in the header)")
    wsse_digest: bool = Field(True, description="PasswordDigest (nonce + created) instead of PasswordText")
    load_timeout: float = Field(30.0, description="seconds to load the WSDL and its schemas")
    huge_tree: bool = Field(False, description="lift libxml2 size limits (known-large replies only)")
    timezone: TimeZoneName = Field("Asia/Shanghai", description="the core's local time zone for naive timestamps")
    object_name: str = "Customer"
    header: HeaderConfig = HeaderConfig()
    status: StatusConfig = StatusConfig()
    business_errors: list[BusinessErrorRule] = Field(default_factory=list)
    record: RecordConfig = RecordConfig()
    operations: OperationsConfig = OperationsConfig()


#: The FLEXCUBE ``FCUBSAccService`` holdings feed as a system's configuration (a second ``corebank_soap`` system
#: beside the customer one; docs/vendors/corebank.md §7): the account change list, QueryCustAcc for one account,
#: read-only, a closed account (``RECORD_STAT=C``) a tombstone. Use ``CorebankSoapConfig.model_validate({**
#: FCUBS_ACCOUNTS, "endpoint": ..., "username": ..., "password": ...})`` or write the same keys in YAML.
FCUBS_ACCOUNTS: Mapping[str, Any] = {
    "adapter": "corebank_soap",
    "wsdl": "package:fcubs_account.wsdl",
    "object_name": "Account",
    "header": {"values": {"SOURCE": "CRMBRIDGE", "UBSCOMP": "FCUBS", "USERID": "CRMBRIDGE", "BRANCH": "000",
                          "MODULEID": "CA", "SERVICE": "FCUBSAccService"}},
    "business_errors": [{"code": "ST-ACC-001", "kind": "not_found", "message": "no such account"}],
    "record": {"id": "ACC", "version": "MODNO", "modified_at": "CHECKERSTAMP", "closed_path": "RECORD_STAT",
               "closed_values": ["C"]},
    "operations": {
        "list": {"operation": "QueryAccountsModifiedSinceIO", "name": "QueryAccountsModifiedSince",
                 "since": "FCUBS_BODY.Cust-Account-Changes-IO.FROM", "records": "FCUBS_BODY.Cust-Account-Full",
                 "paging": {"page": "FCUBS_BODY.Cust-Account-Changes-IO.PAGE_NO",
                            "size": "FCUBS_BODY.Cust-Account-Changes-IO.PAGE_SIZE"}},
        "get": {"operation": "QueryCustAccIO", "name": "QueryCustAcc", "id": "FCUBS_BODY.Cust-Account-IO.ACC",
                "record": "FCUBS_BODY.Cust-Account-Full"},
        "modify": None,
    },
}
