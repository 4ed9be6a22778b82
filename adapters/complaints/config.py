"""The configuration model of a ``complaints`` system, in a module of its own so that reading a configuration does
not import the adapter's transport (issue 19). Re-exported by :mod:`crmbridge.adapters.complaints.adapter`."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from crmbridge.adapters.base import AdapterConfig
from crmbridge.core.secrets import SecretRef

__all__ = ["ComplaintsConfig"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ComplaintsConfig(AdapterConfig):
    """A system with ``adapter: complaints``.

    Example (YAML)::

        systems:
          complaints:
            adapter: complaints
            base_url: https://complaints.bank.local/api/v1
            api_key: file:/run/secrets/complaints_api_key
            source_system: ZOHO
    """

    adapter: Literal["complaints"] = "complaints"
    base_url: str = Field(description="API root, e.g. https://complaints.bank.local/api/v1")
    api_key: SecretRef = Field(description="bearer API key")
    source_system: str = Field("CRM", min_length=1, max_length=64,
                               description="source_system sent with each complaint (the CRM it came from)")
    page_size: int = Field(100, ge=1, le=100, description="page_size on list calls")
    overlap_seconds: int = Field(2, ge=0, le=3600, description="updated_since = since minus this")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute URL such as https://complaints.bank.local/api/v1")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError("plain http is only allowed on loopback (simulators)")
        return value.rstrip("/")
