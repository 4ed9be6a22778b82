"""Shared test helpers for the core-banking REST adapter: configurations and contract harnesses.

The two configurations differ in configuration only: ``fineract_config`` speaks the Fineract clients API,
``openbank_config`` a differently shaped bank service (OAuth2 bearer, page/size with next links, string dates,
If-Match versions). Both drive the same :class:`CorebankRestAdapter`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.corebank_rest import CorebankRestAdapter, CorebankRestConfig
from crmbridge.adapters.corebank_rest.simulator import CorebankRestSimulator
from crmbridge.core.retry import RetryPolicy
from crmbridge.testing.contract import ContractHarness

FAST = {"max_attempts": 4, "initial_wait": 0.001, "max_wait": 0.01, "jitter": 0.0}
ENV = {"CB_REST_PASSWORD": "password", "CB_REST_BAD": "wrong-password",
       "CB_OB_SECRET": "s3cret", "CB_OB_BAD": "not-it"}


def set_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def fineract_config(sim: CorebankRestSimulator, *, bad: bool = False, page_size: int = 10,
                    **over: Any) -> CorebankRestConfig:
    """Fineract: the adapter's built-in Client resource, with a smaller page and the simulator's version."""
    return CorebankRestConfig.model_validate(fineract_data(sim, bad=bad, page_size=page_size, **over))


def fineract_data(sim: CorebankRestSimulator, *, bad: bool = False, page_size: int = 10,
                  **over: Any) -> dict[str, Any]:
    """The Fineract system's configuration as it is written in crmbridge.yaml."""
    data: dict[str, Any] = {
        "adapter": "corebank_rest",
        "base_url": f"{sim.url}/fineract-provider/api",
        "auth": {"type": "basic", "username": "mifos",
                 "password": "env:CB_REST_BAD" if bad else "env:CB_REST_PASSWORD"},
        "headers": {"Fineract-Platform-TenantId": "default"},
        "timezone": "Asia/Shanghai",
        "retry": FAST,
        "resources": {"Client": {
            "list_path": "/v1/clients", "item_path": "/v1/clients/{id}", "write_path": "/v1/clients/{id}",
            "find_paths": {"externalId": "/v1/clients/external-id/{key}"},
            "params": {"orderBy": "id", "sortOrder": "ASC"}, "fields_param": "fields",
            "pagination": {"style": "offset", "page_size": page_size, "total_path": "totalFilteredRecords"},
            "paths": {"list": "pageItems", "item": "", "id": "id", "version": "version", "changes": "changes"},
            "version_in": "body", "version_name": "version",
            "writable": ["mobileNo", "emailAddress", "externalId"], "ignore": ["legalForm", "legalFormId"],
        }},
    }
    data.update(over)
    return data


def openbank_config(sim: CorebankRestSimulator, *, bad: bool = False, page_size: int = 10,
                    style: str = "next_link", **over: Any) -> CorebankRestConfig:
    """The second bank: nothing but configuration differs."""
    pagination: dict[str, Any] = {"style": style, "page_size": page_size, "size_param": "size"}
    if style == "next_link":
        pagination["next_path"] = "links.next"
    else:
        pagination.update(page_param="page", first_page=1, total_pages_path="meta.totalPages")
    data: dict[str, Any] = {
        "adapter": "corebank_rest",
        "base_url": sim.url,
        "auth": {"type": "bearer", "token_url": "/oauth/token", "client_id": "crm-sync",
                 "client_secret": "env:CB_OB_BAD" if bad else "env:CB_OB_SECRET"},
        "headers": {},
        "timezone": "Asia/Shanghai",
        "retry": FAST,
        "resources": {"Customer": {
            "list_path": "/api/v2/customers", "item_path": "/api/v2/customers/{id}",
            "write_path": "/api/v2/customers/{id}/contact",
            "modified_since_param": "updatedSince", "modified_since_format": "iso",
            "pagination": pagination,
            "paths": {"list": "data", "item": "data", "id": "customerNo", "modified": "updatedAt",
                      "version": "etag"},
            "version_in": "header", "version_name": "If-Match",
            "writable": ["mobile", "email"], "refetch_after_write": False,
        }},
    }
    data.update(over)
    return CorebankRestConfig.model_validate(data)


class FineractHarness(ContractHarness):
    object_name = "Client"
    key_field = "externalId"
    page_size = 10
    supports_create = False      # core banking is the golden source: crmbridge never creates customers there
    supports_delete = False
    supports_versions = True     # the simulator's version extension, sent in the PUT body
    token_auth = False           # HTTP Basic

    def __init__(self, sim: CorebankRestSimulator) -> None:
        self.simulator = sim
        self.sim = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return CorebankRestAdapter(fineract_config(self.sim, bad=bad_credentials, page_size=self.page_size,
                                                   retry=RetryPolicy(**FAST)))

    def seed(self, n: int) -> None:
        self.sim.seed(n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {"mobileNo": f"139{variant:02d}{i:06d}", "emailAddress": f"c{i}.v{variant}@example.com"}

    def count(self) -> int:
        return self.sim.count()

    def ids(self) -> set[str]:
        return self.sim.ids()

    def invalid_payload(self, i: int) -> dict:
        return {"mobileNo": "1" * 51}


class OpenbankHarness(FineractHarness):
    object_name = "Customer"
    key_field = None
    token_auth = True
    modified_granularity = timedelta(seconds=1)  # updatedAt has whole seconds

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return CorebankRestAdapter(openbank_config(self.sim, bad=bad_credentials, page_size=self.page_size))

    def payload(self, i: int, variant: int = 0) -> dict:
        return {"mobile": f"+86139{variant:02d}{i:06d}", "email": f"c{i}.v{variant}@example.com"}

    def invalid_payload(self, i: int) -> dict:
        return {"mobile": "n/a"}
