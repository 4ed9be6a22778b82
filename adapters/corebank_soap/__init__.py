"""crmbridge.adapters.corebank_soap: the core-banking SOAP adapter (Oracle FLEXCUBE, Temenos T24 by configuration).

The vendor folder: ``adapter`` (the class and its configuration), ``client`` (the zeep transport), ``auth``
(WS-Security UsernameToken, credentials in the header), ``errors`` (the error table), ``metadata`` (field metadata
from the WSDL), ``simulator`` (the simulated service).
"""

from crmbridge.adapters.corebank_soap.adapter import FCUBS_ACCOUNTS, CorebankSoapAdapter, CorebankSoapConfig

__all__ = ["FCUBS_ACCOUNTS", "CorebankSoapAdapter", "CorebankSoapConfig"]
