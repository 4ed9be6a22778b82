"""crmbridge.adapters.corebank_soap: the core-banking SOAP adapter (Oracle FLEXCUBE, Temenos T24 by configuration).

The vendor folder: ``adapter`` (the class), ``config`` (its configuration model), ``client`` (the zeep transport),
``auth`` (WS-Security UsernameToken, credentials in the header), ``errors`` (the error table), ``metadata`` (field
metadata from the WSDL), ``simulator`` (the simulated service).

The configuration model is imported with the package, the adapter class when first asked for (it imports
the transport): reading a configuration does not load the transport (issue 19).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmbridge.adapters.corebank_soap.config import FCUBS_ACCOUNTS, CorebankSoapConfig

if TYPE_CHECKING:
    from crmbridge.adapters.corebank_soap.adapter import CorebankSoapAdapter

__all__ = ["CorebankSoapAdapter", "CorebankSoapConfig", "FCUBS_ACCOUNTS"]


def __getattr__(name: str) -> Any:
    if name == "CorebankSoapAdapter":
        from crmbridge.adapters.corebank_soap.adapter import CorebankSoapAdapter

        return CorebankSoapAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
