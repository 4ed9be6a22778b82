"""Helpers of the end-to-end sync tests: the ground truth the simulators were seeded from."""

from __future__ import annotations

from typing import Any

from crmbridge.canonical.synthetic import customer_at

CUSTOMERS = 60
BAD = 0.1
SEED = 11


def synthetic(i: int):  # type: ignore[no-untyped-def]
    """The ground truth of core customer i (0-based), as the simulator seeded it."""
    return customer_at(i, SEED, BAD)


def custno(i: int) -> str:
    from crmbridge.adapters.corebank_soap.simulator import CustomerStore

    return CustomerStore.custno(i)


def share_granted(c: Any) -> bool:
    """Whether the latest SHARE_WITH_CRM_VENDOR consent of a synthetic customer is granted."""
    records = sorted((x for x in c.consents if x.purpose == "SHARE_WITH_CRM_VENDOR"), key=lambda x: x.captured_at)
    return bool(records) and records[-1].status == "GRANTED" and records[-1].withdrawn_at is None


def zoho_party_ids(env: Any) -> list[str]:
    return [r.get("Party_ID") for r in env.zoho.stores["Contacts"].records.values()]


def expected_in_zoho() -> set[str]:
    out = set()
    for i in range(CUSTOMERS):
        c = synthetic(i)
        # the core simulator seeds every customer open (RECORD_STAT O), whatever the generator's lifecycle says
        if c.is_individual and c.should_validate and share_granted(c):
            out.add(custno(i))
    return out
