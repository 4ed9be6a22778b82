"""crmbridge.adapters.corebank_rest."""
