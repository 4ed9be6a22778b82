"""crmbridge: integration middleware between core banking and the bank's CRMs.

The package root stays light: import the parts you need
(``crmbridge.canonical``, ``crmbridge.adapters``, ``crmbridge.sync``).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
