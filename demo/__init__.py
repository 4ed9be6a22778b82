"""The demo environment: the four simulators on loopback and a configuration that points at them.

``crmbridge demo`` and the end-to-end tests build the same environment: a core-banking SOAP simulator seeded
with synthetic customers (a fraction of them realistically bad), a Fineract-shaped REST core, and empty Zoho CRM
and Fxiaoke simulators; a working folder holding a fresh master key, a ledger signing key, the embedded SQLite
state database and ``crmbridge.yaml``. Vendor credentials reach crmbridge through environment variables, as they
would in production (``env:`` references), never as literals in the file.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crmbridge.adapters.corebank_soap import FCUBS_ACCOUNTS
from crmbridge.adapters.corebank_soap.adapter import ModifyOperation
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Knobs, Simulator
from crmbridge.adapters.zoho.simulator import ZohoSimulator
from crmbridge.sync.state.ledger import generate_signing_key
from crmbridge.sync.state.store import open_private

__all__ = ["DemoEnvironment"]

ENV = {
    "CRMBRIDGE_DEMO_CORE_PASSWORD": "core_password",
    "CRMBRIDGE_DEMO_ZOHO_CLIENT_SECRET": "zoho_client_secret",
    "CRMBRIDGE_DEMO_ZOHO_REFRESH_TOKEN": "zoho_refresh_token",
    "CRMBRIDGE_DEMO_FXIAOKE_APP_SECRET": "fx_app_secret",
    "CRMBRIDGE_DEMO_FXIAOKE_PERMANENT_CODE": "fx_permanent_code",
}


@dataclass
class DemoEnvironment:
    """Simulators plus a configuration folder (see the module docstring).

    Args:
        workdir: folder for the configuration, keys and state database (emptied first).
        customers: customers seeded in the core-banking simulator.
        bad_fraction: fraction of them carrying one realistic defect.
        seed: seed of the synthetic data.
        latency_ms: simulated latency on every vendor call.
        state_url: state database URL (default: SQLite in ``workdir``).
        jobs: override the jobs written to the configuration.
        core_extra: modes of the core-banking simulator (``since_boundary``, ``same_second``, ``edits_during_read``,
            ``gateway``...: see :mod:`crmbridge.adapters.corebank_soap.simulator`).
    """

    workdir: Path
    customers: int = 200
    bad_fraction: float = 0.05
    seed: int = 7
    latency_ms: float = 0.0
    state_url: str | None = None
    jobs: dict[str, Any] | None = None
    core_extra: dict[str, Any] | None = None
    core: CorebankSoapSimulator = field(init=False)
    zoho: ZohoSimulator = field(init=False)
    fxiaoke: FxiaokeSimulator = field(init=False)
    simulators: list[Simulator] = field(default_factory=list, init=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "crmbridge.yaml"

    def start(self) -> DemoEnvironment:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.core = CorebankSoapSimulator(Knobs(seed=self.seed, records=self.customers, bad_fraction=self.bad_fraction,
                                                latency_ms=self.latency_ms, extra=dict(self.core_extra or {})))
        self.zoho = ZohoSimulator(Knobs(seed=self.seed, records=0, latency_ms=self.latency_ms,
                                        extra={"accounts": 0}))
        self.fxiaoke = FxiaokeSimulator(Knobs(seed=self.seed, records=0, latency_ms=self.latency_ms,
                                              extra={"contacts": 0}))
        self.simulators = [self.core, self.zoho, self.fxiaoke]
        for sim in self.simulators:
            sim.start()
        for name, value in self.secrets().items():
            os.environ[name] = value
        with open_private(self.workdir / "master.key", exclusive=True) as fh:   # 0600 whatever the umask
            fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        generate_signing_key(self.workdir / "ledger-signing.pem")
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False, allow_unicode=True))
        return self

    def stop(self) -> None:
        for sim in self.simulators:
            sim.stop()

    def __enter__(self) -> DemoEnvironment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def secrets(self) -> dict[str, str]:
        return {
            "CRMBRIDGE_DEMO_CORE_PASSWORD": self.core.password,
            "CRMBRIDGE_DEMO_ZOHO_CLIENT_SECRET": self.zoho.client_secret,
            "CRMBRIDGE_DEMO_ZOHO_REFRESH_TOKEN": self.zoho.refresh_token,
            "CRMBRIDGE_DEMO_FXIAOKE_APP_SECRET": self.fxiaoke.app_secret,
            "CRMBRIDGE_DEMO_FXIAOKE_PERMANENT_CODE": self.fxiaoke.permanent_code,
        }

    def config(self) -> dict[str, Any]:
        fast = {"max_attempts": 5, "initial_wait": 0.05, "max_wait": 1.0}
        return {
            "state": {"url": self.state_url or f"sqlite:///{self.workdir / 'crmbridge.db'}"},
            "keys": {"master_key": "file:master.key", "signing_key": "file:ledger-signing.pem"},
            "systems": {
                "corebank": {"adapter": "corebank_soap", "wsdl": self.core.wsdl_url, "username": self.core.username,
                             "password": "env:CRMBRIDGE_DEMO_CORE_PASSWORD", "retry": fast,
                             # campaign opt-outs are written back as the marketing-consent UDFs (responses job)
                             "operations": {"modify": {"writable": [*ModifyOperation().writable,
                                                                    "UDFDETAILS.FLDNAM", "UDFDETAILS.FLDVAL"]}}},
                # the core's account service (FCUBSAccService): the holdings feed, a second corebank_soap system
                "corebank_accounts": {**FCUBS_ACCOUNTS, "endpoint": self.core.account_endpoint,
                                      "username": self.core.username,
                                      "password": "env:CRMBRIDGE_DEMO_CORE_PASSWORD", "retry": fast},
                "zoho_cn": {"adapter": "zoho", "accounts_url": self.zoho.url, "api_domain": self.zoho.url,
                            "client_id": self.zoho.client_id, "client_secret": "env:CRMBRIDGE_DEMO_ZOHO_CLIENT_SECRET",
                            "refresh_token": "env:CRMBRIDGE_DEMO_ZOHO_REFRESH_TOKEN", "edition": "enterprise",
                            "token_cache": "zoho_cn.token", "retry": fast},
                "fxiaoke": {"adapter": "fxiaoke", "base_url": self.fxiaoke.url, "app_id": self.fxiaoke.app_id,
                            "app_secret": "env:CRMBRIDGE_DEMO_FXIAOKE_APP_SECRET",
                            "permanent_code": "env:CRMBRIDGE_DEMO_FXIAOKE_PERMANENT_CODE",
                            "open_user_id": FxiaokeSimulator.ADMIN_OPEN_USER_ID, "rate_per_second": None,
                            "token_cache": "fxiaoke.token", "retry": fast},
            },
            "jobs": self.jobs if self.jobs is not None else {
                "core_to_zoho": {
                    "source": "corebank.Customer", "target": "zoho_cn.Contacts",
                    "source_mapping": "corebank_soap_customer.yaml", "target_mapping": "zoho_contacts.yaml",
                    "consent_purpose": "SHARE_WITH_CRM_VENDOR", "match_rules": [["CN_RIC"], ["CN_USCC"]],
                    "delete_policy": "deactivate", "schedule": "*/15 * * * *",
                },
                "zoho_responses": {
                    "source": "zoho_cn.Campaigns.Contacts", "target": "corebank.Customer",
                    "source_mapping": "zoho_campaign_members.yaml", "target_mapping": "corebank_soap_consent.yaml",
                },
                "core_holdings_to_zoho": {   # holdings after their owners: a holding waits for its Contact
                    "source": "corebank_accounts.Account", "target": "zoho_cn.Holdings",
                    "source_mapping": "corebank_soap_account.yaml", "target_mapping": "zoho_holdings.yaml",
                    "parent": {"source": "corebank.Customer", "target_object": "Contacts"},
                    "delete_policy": "deactivate", "schedule": "*/15 * * * *",
                    # organisations' and unconsented customers' accounts wait for a Contact that never comes
                    "max_failed_ratio": 0.5,
                },
                "core_fxiaoke": {
                    "source": "corebank.Customer", "target": "fxiaoke.AccountObj", "direction": "two_way",
                    "source_mapping": "corebank_soap_customer.yaml", "target_mapping": "fxiaoke_accountobj.yaml",
                    "consent_purpose": "SHARE_WITH_CRM_VENDOR", "match_rules": [["CN_RIC"], ["CN_USCC"]],
                    "delete_policy": "deactivate", "schedule": "*/15 * * * *",
                    "conflict_policy": {
                        "type": "source_of_truth",
                        "owners": {"contact_points*": "fxiaoke", "consents*": "corebank", "name.*": "corebank",
                                   "identifiers*": "corebank", "kyc.*": "corebank"},
                    },
                },
            },
        }
