"""End-to-end fixtures: the demo environment (simulators on loopback) and a runtime over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_helpers import BAD, CUSTOMERS, SEED

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=BAD, seed=SEED) as e:
        yield e


@pytest.fixture
def rt(env: DemoEnvironment) -> Iterator[Runtime]:
    runtime = bootstrap(env.config_path)
    yield runtime
    runtime.close()
