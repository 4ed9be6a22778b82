"""Adapter and simulator registries.

Adapters are found by name: first the built-in ones, then those registered in this process
(:func:`register`, :func:`registered`: tests, an embedding application), then any installed distribution's
``crmbridge.adapters`` entry points. An unknown name raises :class:`UnknownAdapterError` listing the known names.

The in-repo test adapter (``memory``, :mod:`crmbridge.testing.memory`) is not a built-in: a test session
registers it (crmbridge's own ``tests/conftest.py``, or the ``crmbridge_memory`` fixture of the
:mod:`crmbridge.testing.plugin` pytest plugin), so a production configuration cannot name it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from crmbridge.core.errors import UnknownAdapterError

if TYPE_CHECKING:
    from crmbridge.adapters.base import Adapter, AdapterConfig
    from crmbridge.adapters.simulator import Simulator
    from crmbridge.canonical.mapping import TargetProfile

__all__ = [
    "adapter_class", "adapter_config_class", "adapter_names", "register", "registered", "simulator_class",
    "simulator_names", "target_profile", "unregister", "unregistered",
]

_BUILTIN_ADAPTERS = {
    "complaints": "crmbridge.adapters.complaints:ComplaintsAdapter",
    "corebank_rest": "crmbridge.adapters.corebank_rest:CorebankRestAdapter",
    "corebank_soap": "crmbridge.adapters.corebank_soap:CorebankSoapAdapter",
    "fxiaoke": "crmbridge.adapters.fxiaoke:FxiaokeAdapter",
    "zoho": "crmbridge.adapters.zoho:ZohoAdapter",
}

#: the built-in adapters' configuration models, in modules of their own: reading a configuration validates each
#: system through its model without importing the adapter's transport (zeep, requests; issue 19)
_BUILTIN_CONFIGS = {
    "complaints": "crmbridge.adapters.complaints.config:ComplaintsConfig",
    "corebank_rest": "crmbridge.adapters.corebank_rest.config:CorebankRestConfig",
    "corebank_soap": "crmbridge.adapters.corebank_soap.config:CorebankSoapConfig",
    "fxiaoke": "crmbridge.adapters.fxiaoke.config:FxiaokeConfig",
    "zoho": "crmbridge.adapters.zoho.config:ZohoConfig",
}

_BUILTIN_SIMULATORS = {
    "complaints": "crmbridge.adapters.complaints.simulator:ComplaintSimulator",
    "corebank_rest": "crmbridge.adapters.corebank_rest.simulator:CorebankRestSimulator",
    "corebank_soap": "crmbridge.adapters.corebank_soap.simulator:CorebankSoapSimulator",
    "fxiaoke": "crmbridge.adapters.fxiaoke.simulator:FxiaokeSimulator",
    "zoho": "crmbridge.adapters.zoho.simulator:ZohoSimulator",
}

#: adapters and simulators registered in this process, by normalised name
_REGISTERED_ADAPTERS: dict[str, type[Adapter]] = {}
_REGISTERED_SIMULATORS: dict[str, type[Simulator]] = {}
_LOCK = threading.Lock()


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_point_targets() -> dict[str, str]:
    return {_normalise(ep.name): ep.value for ep in entry_points(group="crmbridge.adapters")}


def register(name: str, adapter: type[Adapter], *, simulator: type[Simulator] | None = None) -> None:
    """Make ``adapter`` (and its ``simulator``) known as ``name`` in this process.

    Registering the same class again under the same name is a no-op.

    Raises:
        ValueError: ``name`` is a built-in adapter, or registered already to another class.
    """
    key = _normalise(name)
    if key in _BUILTIN_ADAPTERS:
        raise ValueError(f"{name!r} is a built-in adapter and cannot be registered again")
    with _LOCK:
        have = _REGISTERED_ADAPTERS.get(key)
        if have is not None and have is not adapter:
            raise ValueError(f"adapter {name!r} is registered already ({have.__module__}.{have.__qualname__})")
        _REGISTERED_ADAPTERS[key] = adapter
        if simulator is not None:
            _REGISTERED_SIMULATORS[key] = simulator


def unregister(name: str) -> None:
    """Forget an adapter (and its simulator) :func:`register` made known; unknown names are ignored."""
    key = _normalise(name)
    with _LOCK:
        _REGISTERED_ADAPTERS.pop(key, None)
        _REGISTERED_SIMULATORS.pop(key, None)


@contextmanager
def registered(name: str, adapter: type[Adapter], *, simulator: type[Simulator] | None = None) -> Iterator[None]:
    """``adapter`` known as ``name`` for the duration of a ``with`` block (left as it was before afterwards)."""
    key = _normalise(name)
    with _LOCK:
        before = _REGISTERED_ADAPTERS.get(key), _REGISTERED_SIMULATORS.get(key)
    register(name, adapter, simulator=simulator)
    try:
        yield
    finally:
        with _LOCK:
            for table, old in ((_REGISTERED_ADAPTERS, before[0]), (_REGISTERED_SIMULATORS, before[1])):
                if old is None:
                    table.pop(key, None)
                else:
                    table[key] = old  # type: ignore[assignment]


@contextmanager
def unregistered(name: str) -> Iterator[None]:
    """``name`` not registered for the duration of a ``with`` block (what a production process sees: crmbridge's
    own tests register the ``memory`` test adapter for the whole session); restored afterwards."""
    key = _normalise(name)
    with _LOCK:
        before = _REGISTERED_ADAPTERS.pop(key, None), _REGISTERED_SIMULATORS.pop(key, None)
    try:
        yield
    finally:
        with _LOCK:
            if before[0] is not None:
                _REGISTERED_ADAPTERS[key] = before[0]
            if before[1] is not None:
                _REGISTERED_SIMULATORS[key] = before[1]


def adapter_names() -> list[str]:
    return sorted({*_BUILTIN_ADAPTERS, *_REGISTERED_ADAPTERS, *_entry_point_targets()})


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class registered as ``name`` (``corebank-soap`` and ``corebank_soap`` are the same)."""
    key = _normalise(name)
    if key in _BUILTIN_ADAPTERS:
        return _load(_BUILTIN_ADAPTERS[key])
    if key in _REGISTERED_ADAPTERS:
        return _REGISTERED_ADAPTERS[key]
    target = _entry_point_targets().get(key)
    if target is None:
        raise UnknownAdapterError(name, adapter_names())
    return _load(target)


def adapter_config_class(name: str) -> type[AdapterConfig]:
    """The configuration model of adapter ``name`` (its class's ``Config``). A built-in adapter's is read from its
    light ``config`` module, without the adapter's transport; a registered or installed adapter's from its class.
    Raises UnknownAdapterError for an unregistered name, ImportError/AttributeError as :func:`adapter_class`."""
    key = _normalise(name)
    if key in _BUILTIN_CONFIGS:
        return _load(_BUILTIN_CONFIGS[key])
    return adapter_class(name).Config


def target_profile(name: str, obj: str) -> TargetProfile:
    """What the canonical layer needs to know about adapter ``name`` writing ``obj``: its role (system of record or
    CRM), the object's mandatory fields and its source-system naming, read from the adapter class. Pass it to
    ``load_mapping(path, profile=target_profile)``. Raises UnknownAdapterError for an unregistered name."""
    from crmbridge.canonical.mapping import TargetProfile  # when used: the CLI imports this registry at start-up

    cls = adapter_class(name)
    role = "system_of_record" if cls.role == "system_of_record" else "crm"
    return TargetProfile(role=role, mandatory_fields=tuple(cls.mandatory_fields.get(obj, ())),
                         source_system=cls.source_system)


def simulator_names() -> list[str]:
    return sorted(n.replace("_", "-") for n in {*_BUILTIN_SIMULATORS, *_REGISTERED_SIMULATORS})


def simulator_class(name: str) -> type[Simulator]:
    key = _normalise(name)
    if key in _BUILTIN_SIMULATORS:
        return _load(_BUILTIN_SIMULATORS[key])
    if key in _REGISTERED_SIMULATORS:
        return _REGISTERED_SIMULATORS[key]
    raise UnknownAdapterError(name, simulator_names())
