"""crmbridge.adapters."""
