"""crmbridge.canonical."""
