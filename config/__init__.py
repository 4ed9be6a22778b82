"""crmbridge.config."""
