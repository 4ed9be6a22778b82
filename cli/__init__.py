"""The ``crmbridge`` command line."""
