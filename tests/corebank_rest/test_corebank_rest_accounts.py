"""Fineract savings and loan accounts (holdings) through the core-banking REST adapter, over real HTTP on loopback:
the adapter's built-in SavingsAccount and LoanAccount resources, paging, the full-scan read (no modification filter
in Fineract), filters, 404s, and accounts listed before their client."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from corebank_rest_support import FAST, set_env

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.corebank_rest import CorebankRestAdapter, CorebankRestConfig
from crmbridge.adapters.corebank_rest.adapter import FINERACT_SAVINGS_ACCOUNTS, PaginationConfig
from crmbridge.adapters.corebank_rest.simulator import FINERACT_PREFIX, CorebankRestSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.testing.contract import AdapterContract, ContractHarness


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)


@pytest.fixture
def sim() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(records=40, seed=4)) as s:
        yield s  # type: ignore[misc]


def adapter(sim: CorebankRestSimulator, **over) -> CorebankRestAdapter:
    """The adapter with the built-in resources (no ``resources:`` in the configuration)."""
    cfg = CorebankRestConfig.model_validate({
        "adapter": "corebank_rest", "base_url": f"{sim.url}/fineract-provider/api",
        "auth": {"type": "basic", "username": "mifos", "password": "env:CB_REST_PASSWORD"},
        "timezone": "Asia/Shanghai", "retry": FAST, **over})
    return CorebankRestAdapter(cfg, system="core_rest")


def _raw(sim: CorebankRestSimulator, path: str) -> requests.Response:
    auth = base64.b64encode(b"mifos:password").decode()
    return requests.get(f"{sim.url}{FINERACT_PREFIX}{path}", timeout=5,
                        headers={"Authorization": f"Basic {auth}", "Fineract-Platform-TenantId": "default"})


def test_savings_accounts_paged_to_the_end_as_a_full_scan(sim: CorebankRestSimulator) -> None:
    assert len(sim.savings) > 30
    with adapter(sim) as ad:
        # a copy with a small page (the built-in resource is shared by every configuration)
        ad.config.resources["SavingsAccount"] = FINERACT_SAVINGS_ACCOUNTS.model_copy(update={"pagination": (
            PaginationConfig(style="offset", page_size=7, total_path="totalFilteredRecords"))})
        pages = list(ad.extract("SavingsAccount"))
        recs = [r for p in pages for r in p.records]
        assert [r.external_id for r in recs] == sorted(sim.savings, key=int)
        assert len(recs) == len(sim.savings) and len(pages) >= len(sim.savings) // 7
        one = recs[0].data
        assert one["status"]["code"] == "savingsAccountStatusType.active" or one["status"]["closed"]
        assert one["currency"]["code"] == "CNY" and isinstance(one["summary"]["accountBalance"], float)
        assert one["timeline"]["activatedOnDate"][0] >= 2019 and isinstance(one["clientId"], int)
        # no modification filter: an extract with since is still the whole list, marked a full scan
        since = list(ad.extract("SavingsAccount", since=datetime(2030, 1, 1, tzinfo=UTC)))
        assert sum(len(p.records) for p in since) == len(sim.savings) and all(p.full_scan for p in since)


def test_closing_an_account_shows_in_the_next_scan(sim: CorebankRestSimulator) -> None:
    with adapter(sim) as ad:
        target = next(k for k, v in sim.loans.items() if v["status"]["active"])
        sim.set_account_status("loans", target, 600)
        got = ad.get("LoanAccount", target)
        assert got.data["status"]["closedObligationsMet"] and got.data["status"]["closed"]
        assert got.data["timeline"]["closedOnDate"] == [2026, 12, 1]
        assert got.data["summary"]["totalOutstanding"] == 0.0
        assert ad.get("LoanAccount", "999999") is None
        assert ad.get("SavingsAccount", "999999") is None


def test_loans_filters_and_fineract_errors(sim: CorebankRestSimulator) -> None:
    body = _raw(sim, "/loans?status=300&limit=500").json()
    assert body["totalFilteredRecords"] == len([v for v in sim.loans.values() if v["status"]["id"] == 300])
    assert all(r["status"]["id"] == 300 for r in body["pageItems"])
    acc = next(iter(sim.loans.values()))["accountNo"]
    assert [r["accountNo"] for r in _raw(sim, f"/loans?accountNo={acc}").json()["pageItems"]] == [acc]
    assert _raw(sim, "/loans?status=active").status_code == 500      # Integer.parseInt in Fineract
    miss = _raw(sim, "/savingsaccounts/424242")
    assert miss.status_code == 404 and miss.json()["userMessageGlobalisationCode"] == \
        "error.msg.saving.account.id.invalid"
    assert _raw(sim, "/loans/424242").json()["userMessageGlobalisationCode"] == "error.msg.loan.id.invalid"
    assert _raw(sim, "/savingsaccounts?orderBy=balance").status_code == 400


def test_a_list_without_limit_returns_every_account_unlike_clients(sim: CorebankRestSimulator) -> None:
    sim.seed(260)
    assert len(_raw(sim, "/savingsaccounts").json()["pageItems"]) == len(sim.savings) > 200
    assert len(_raw(sim, "/clients").json()["pageItems"]) == 200


def test_accounts_of_a_client_not_yet_listed() -> None:
    """``orphan_accounts``: an account whose client the client list does not hold (opened on a client created after
    the client read): the adapter reads it as it is; the engine must hold the child until its parent exists."""
    with CorebankRestSimulator(Knobs(records=5, extra={"orphan_accounts": 2})) as sim, adapter(sim) as ad:
        recs = [r for p in ad.extract("SavingsAccount") for r in p.records]
        clients = {r.external_id for p in ad.extract("Client") for r in p.records}
        orphans = [r for r in recs if str(r.data["clientId"]) not in clients]
        assert len(orphans) == 2 and all(r.data["clientName"] is None for r in orphans)


def test_accounts_are_read_only(sim: CorebankRestSimulator) -> None:
    from crmbridge.adapters.base import WriteItem, WriteStatus
    with adapter(sim) as ad:
        res = ad.write("SavingsAccount", [WriteItem(key="k", payload={"externalId": "x"}, external_id="1")])
        assert res[0].status is WriteStatus.FAILED and "read-only" in str(res[0].error)
        assert sim.savings["1"]["externalId"] is None


class SavingsHarness(ContractHarness):
    """The read-only contract on Fineract savings accounts (no writes, no modification times: full scans)."""

    object_name = "SavingsAccount"
    key_field = None
    page_size = 5
    supports_write = False
    supports_delete = False
    token_auth = False

    def __init__(self, sim: CorebankRestSimulator) -> None:
        self.simulator = sim
        self.sim = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        ad = adapter(self.sim, auth={"type": "basic", "username": "mifos",
                                     "password": "env:CB_REST_BAD" if bad_credentials else "env:CB_REST_PASSWORD"})
        ad.config.resources["SavingsAccount"] = FINERACT_SAVINGS_ACCOUNTS.model_copy(update={"pagination": (
            PaginationConfig(style="offset", page_size=self.page_size, total_path="totalFilteredRecords"))})
        return ad

    def seed(self, n: int) -> None:
        self.sim.seed_savings(n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {}

    def count(self) -> int:
        return len(self.sim.savings)

    def ids(self) -> set[str]:
        return set(self.sim.savings)


class TestSavingsContract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[SavingsHarness]:
        with CorebankRestSimulator(Knobs(records=4)) as sim:
            yield SavingsHarness(sim)  # type: ignore[arg-type]
