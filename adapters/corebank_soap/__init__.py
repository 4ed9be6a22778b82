"""crmbridge.adapters.corebank_soap."""
