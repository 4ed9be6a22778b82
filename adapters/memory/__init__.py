"""crmbridge.adapters.memory."""
