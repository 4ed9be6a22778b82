"""Fixtures for the Zoho adapter tests: secrets in the environment and a simulator factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from zoho_helpers import BAD_ENV, REFRESH_ENV, SECRET_ENV

from crmbridge.adapters.simulator import Knobs
from crmbridge.adapters.zoho.auth import forget_shared_tokens
from crmbridge.adapters.zoho.simulator import ZohoSimulator


@pytest.fixture(autouse=True)
def _zoho_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    forget_shared_tokens()  # a new simulator may reuse an old one's port: no token carries over
    monkeypatch.setenv(SECRET_ENV, ZohoSimulator.client_secret)
    monkeypatch.setenv(REFRESH_ENV, ZohoSimulator.refresh_token)
    monkeypatch.setenv(BAD_ENV, "not-the-secret")


@pytest.fixture
def zoho_sim() -> Iterator[Callable[..., ZohoSimulator]]:
    """``zoho_sim(records=..., **knobs, extra=...)`` starts a simulator that stops after the test."""
    started: list[ZohoSimulator] = []

    def make(**kw: Any) -> ZohoSimulator:
        kw.setdefault("records", 0)
        sim = ZohoSimulator(Knobs(**kw))
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
