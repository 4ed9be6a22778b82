"""Adapter and simulator registries.

Adapters are found by name: first the built-in ones, then any installed distribution's
``crmbridge.adapters`` entry points. An unknown name raises :class:`UnknownAdapterError` listing the
known names.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from crmbridge.canonical.mapping import TargetProfile
from crmbridge.core.errors import UnknownAdapterError

if TYPE_CHECKING:
    from crmbridge.adapters.base import Adapter
    from crmbridge.adapters.simulator import Simulator

__all__ = ["adapter_class", "adapter_names", "simulator_class", "simulator_names", "target_profile"]

_BUILTIN_ADAPTERS = {
    "corebank_rest": "crmbridge.adapters.corebank_rest:CorebankRestAdapter",
    "corebank_soap": "crmbridge.adapters.corebank_soap:CorebankSoapAdapter",
    "fxiaoke": "crmbridge.adapters.fxiaoke:FxiaokeAdapter",
    "memory": "crmbridge.adapters.memory:MemoryAdapter",
    "zoho": "crmbridge.adapters.zoho:ZohoAdapter",
}

_BUILTIN_SIMULATORS = {
    "corebank_rest": "crmbridge.adapters.corebank_rest.simulator:CorebankRestSimulator",
    "corebank_soap": "crmbridge.adapters.corebank_soap.simulator:CorebankSoapSimulator",
    "fxiaoke": "crmbridge.adapters.fxiaoke.simulator:FxiaokeSimulator",
    "memory": "crmbridge.adapters.memory.simulator:MemorySimulator",
    "zoho": "crmbridge.adapters.zoho.simulator:ZohoSimulator",
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_point_targets() -> dict[str, str]:
    return {_normalise(ep.name): ep.value for ep in entry_points(group="crmbridge.adapters")}


def adapter_names() -> list[str]:
    return sorted({*_BUILTIN_ADAPTERS, *_entry_point_targets()})


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class registered as ``name`` (``corebank-soap`` and ``corebank_soap`` are the same)."""
    key = _normalise(name)
    target = _BUILTIN_ADAPTERS.get(key) or _entry_point_targets().get(key)
    if target is None:
        raise UnknownAdapterError(name, adapter_names())
    return _load(target)


def target_profile(name: str, obj: str) -> TargetProfile:
    """What the canonical layer needs to know about adapter ``name`` writing ``obj``: its role (system of record or
    CRM), the object's mandatory fields and its source-system naming, read from the adapter class. Pass it to
    ``load_mapping(path, profile=target_profile)``. Raises UnknownAdapterError for an unregistered name."""
    cls = adapter_class(name)
    role = "system_of_record" if cls.role == "system_of_record" else "crm"
    return TargetProfile(role=role, mandatory_fields=tuple(cls.mandatory_fields.get(obj, ())),
                         source_system=cls.source_system)


def simulator_names() -> list[str]:
    return sorted(n.replace("_", "-") for n in _BUILTIN_SIMULATORS)


def simulator_class(name: str) -> type[Simulator]:
    key = _normalise(name)
    if key not in _BUILTIN_SIMULATORS:
        raise UnknownAdapterError(name, simulator_names())
    return _load(_BUILTIN_SIMULATORS[key])
