"""crmbridge.adapters.fxiaoke."""
