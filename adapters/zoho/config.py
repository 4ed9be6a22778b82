"""The configuration model of a ``zoho`` system, in a module of its own so that reading a configuration does
not import the adapter's transport (issue 19). Re-exported by :mod:`crmbridge.adapters.zoho.adapter`."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from crmbridge.adapters.base import AdapterConfig
from crmbridge.core.secrets import SecretRef

__all__ = ["ZohoConfig"]


_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_$]*$")
_CHINA_HOSTS = (".zoho.com.cn", ".zohoapis.com.cn")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ZohoConfig(AdapterConfig):
    """A system with ``adapter: zoho``.

    Example (YAML)::

        systems:
          zoho_cn:
            adapter: zoho
            accounts_url: https://accounts.zoho.com.cn
            api_domain: https://www.zohoapis.com.cn
            client_id: 1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXX
            client_secret: env:ZOHO_CLIENT_SECRET
            refresh_token: file:/run/secrets/zoho_refresh_token
            edition: enterprise
            trigger: []
            key_field: Party_ID
            overlap_seconds: 5
            since_boundary: unknown   # inclusive | exclusive | unknown (safe either way)
    """

    adapter: Literal["zoho"] = "zoho"
    accounts_url: str = Field("https://accounts.zoho.com.cn",
                              description="accounts server; the token URL is {accounts_url}/oauth/v2/token")
    api_domain: str = Field("https://www.zohoapis.com.cn", description="API domain of the org's data centre")
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    refresh_token: SecretRef
    edition: Literal["free", "standard", "professional", "enterprise", "ultimate"] = "enterprise"
    api_version: str = Field("v8", pattern=r"^v\d+(\.\d+)?$")
    trigger: list[Literal["workflow", "approval", "blueprint", "pathfinder", "orchestration"]] = Field(
        default_factory=list, description="automation run on writes; [] runs none")
    key_field: str = Field("Party_ID", description="unique field holding crmbridge's external key (upserts)")
    overlap_seconds: int = Field(5, ge=0, le=86_400, description="If-Modified-Since = since minus this")
    since_boundary: Literal["inclusive", "exclusive", "unknown"] = Field("unknown", description=(
        "whether Zoho's If-Modified-Since returns records modified AT the given second (inclusive) or only after "
        "it (exclusive); Zoho does not document it. unknown (the default) is safe either way: the header goes one "
        "second earlier, as for exclusive. `crmbridge doctor` detects it by reading"))
    page_size: int = Field(200, ge=1, le=200, description="per_page on list calls")
    require_china_dc: bool = Field(True, description="refuse non-CN Zoho hosts (PIPL data localisation)")
    modules: dict[str, str] = Field(default_factory=dict, description=(
        "object name used by jobs and mappings -> the org's module API name, e.g. {Holdings: CustomModule1} (a custom "
        "module created without an API name gets CustomModule<n>); unlisted names are used as they are"))
    members_relation: str = Field("Campaigns.Contacts", pattern=r"^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$",
                                  description=(
        "object name of campaign membership: {parent module}.{related list API name}; records are members "
        "with their Member_Status (docs/vendors/zoho.md §15)"))
    member_fields: list[str] = Field(default_factory=lambda: ["Party_ID", "Modified_Time"], description=(
        "member fields read with each campaign member (the related list needs fields)"))
    token_cache: str | None = Field(None, description=(
        "file sharing the access token among this system's processes (encrypted, mode 0600; relative to the "
        "configuration's folder). Unset: one token per process - Zoho grants 10 per 10 minutes"))

    @field_validator("accounts_url", "api_domain")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute URL such as https://www.zohoapis.com.cn")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError("plain http is only allowed on loopback (simulators)")
        value = value.rstrip("/")
        return value.removesuffix("/oauth/v2/token")  # the full token URL is accepted for accounts_url too

    @field_validator("key_field")
    @classmethod
    def _api_name(cls, value: str) -> str:
        if not _API_NAME.match(value):
            raise ValueError("must be a Zoho field API name (letters, digits, underscore)")
        return value

    @model_validator(mode="after")
    def _china(self) -> ZohoConfig:
        if self.require_china_dc:
            for key in ("accounts_url", "api_domain"):
                host = urlsplit(getattr(self, key)).hostname or ""
                if host not in _LOOPBACK and not host.endswith(_CHINA_HOSTS):
                    raise ValueError(f"{key} {host} is not Zoho's China data centre (accounts.zoho.com.cn / "
                                     "www.zohoapis.com.cn); set require_china_dc: false only with a legal basis")
        return self
