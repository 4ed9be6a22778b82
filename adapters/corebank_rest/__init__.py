"""crmbridge.adapters.corebank_rest: the core-banking REST adapter (Apache Fineract by default, any JSON customer
service by configuration).

The vendor folder: ``adapter`` (the class and its configuration), ``client`` (the HTTP transport), ``auth`` (Basic
or bearer credentials), ``errors`` (the error table), ``metadata`` (field metadata from a sample record),
``simulator`` (the simulated service).
"""

from crmbridge.adapters.corebank_rest.adapter import CorebankRestAdapter, CorebankRestConfig

__all__ = ["CorebankRestAdapter", "CorebankRestConfig"]
