"""crmbridge.adapters.zoho."""
