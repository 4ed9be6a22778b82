"""crmbridge.mappings."""
