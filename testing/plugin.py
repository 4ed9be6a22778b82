"""The crmbridge pytest plugin, loaded by pytest through the ``crmbridge`` ``pytest11`` entry point.

For a third-party adapter's test suite::

    from crmbridge.testing.contract import AdapterContract, ContractHarness

    class AcmeHarness(ContractHarness): ...

    class TestAcmeContract(AdapterContract):
        @pytest.fixture
        def harness(self):
            with AcmeSimulator() as sim:
                yield AcmeHarness(sim)

What the plugin adds:

* the contract suite's ``assert`` statements are rewritten by pytest (failures show the values compared);
* ``crmbridge_register``: a function ``(name, adapter_class, simulator=None)`` registering an adapter for the
  test (configuration, ``crmbridge.adapters.registry.adapter_class`` and the CLI then find it by name), undone after;
* ``crmbridge_memory``: the ``memory`` test adapter registered for the test (the fixture's value is its class);
* :func:`install_entry_points`: a tiny installed distribution declaring ``crmbridge.adapters`` entry points in a
  folder, for a subprocess (an installed ``crmbridge`` script) that must find an adapter: put the folder on its
  ``PYTHONPATH``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.register_assert_rewrite("crmbridge.testing.contract")

from crmbridge.adapters import registry  # noqa: E402 - after the assert rewrite is registered

if TYPE_CHECKING:
    from crmbridge.adapters.base import Adapter
    from crmbridge.adapters.simulator import Simulator

__all__ = ["MEMORY", "crmbridge_memory", "crmbridge_register", "install_entry_points", "register_memory_adapter"]

#: the name the memory test adapter is registered under
MEMORY = "memory"


def register_memory_adapter() -> None:
    """Register the ``memory`` test adapter and its simulator for the rest of this process
    (:func:`crmbridge.testing.memory.register`)."""
    from crmbridge.testing.memory import register

    register()


@pytest.fixture
def crmbridge_register() -> Iterator[Callable[..., None]]:
    """Register adapters for this test: ``crmbridge_register("acme", AcmeAdapter, simulator=AcmeSimulator)``."""
    with ExitStack() as stack:
        def register(name: str, adapter: type[Adapter], simulator: type[Simulator] | None = None) -> None:
            stack.enter_context(registry.registered(name, adapter, simulator=simulator))

        yield register


@pytest.fixture
def crmbridge_memory() -> Iterator[type[Adapter]]:
    """The ``memory`` test adapter, registered for this test."""
    from crmbridge.testing.memory import MemoryAdapter
    from crmbridge.testing.memory.simulator import MemorySimulator

    with registry.registered(MEMORY, MemoryAdapter, simulator=MemorySimulator):
        yield MemoryAdapter


def install_entry_points(folder: Path, adapters: Mapping[str, str], *, dist: str = "crmbridge-test-adapters",
                         version: str = "0") -> Path:
    """Write a distribution's metadata into ``folder`` declaring ``adapters`` (name → ``module:Class``) in the
    ``crmbridge.adapters`` entry-point group, as an installed plugin would. Returns ``folder``: put it on
    ``sys.path`` or a subprocess's ``PYTHONPATH``."""
    info = Path(folder) / f"{re.sub(r'[^A-Za-z0-9.]+', '_', dist)}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    lines = "".join(f"{name} = {target}\n" for name, target in adapters.items())
    (info / "entry_points.txt").write_text(f"[crmbridge.adapters]\n{lines}", encoding="utf-8")
    return Path(folder)
