"""crmbridge.adapters.corebank_rest: the core-banking REST adapter (Apache Fineract by default, any JSON customer
service by configuration).

The vendor folder: ``adapter`` (the class), ``config`` (its configuration model), ``client`` (the HTTP transport),
``auth`` (Basic or bearer credentials), ``errors`` (the error table), ``metadata`` (field metadata from a sample
record), ``simulator`` (the simulated service).

The configuration model is imported with the package, the adapter class when first asked for (it imports
the transport): reading a configuration does not load the transport (issue 19).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmbridge.adapters.corebank_rest.config import CorebankRestConfig

if TYPE_CHECKING:
    from crmbridge.adapters.corebank_rest.adapter import CorebankRestAdapter

__all__ = ["CorebankRestAdapter", "CorebankRestConfig"]


def __getattr__(name: str) -> Any:
    if name == "CorebankRestAdapter":
        from crmbridge.adapters.corebank_rest.adapter import CorebankRestAdapter

        return CorebankRestAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
