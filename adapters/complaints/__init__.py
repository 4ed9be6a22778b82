"""crmbridge.adapters.complaints: the bank's complaint-handling service (a small REST API), which receives the
service cases and complaints logged in a CRM and reports their handling status back.

The vendor folder: ``adapter`` (the class and its configuration), ``client`` (the HTTP transport), ``errors`` (the
error table), ``simulator`` (the simulated service). The API is described in docs/vendors/complaints.md.
"""

from crmbridge.adapters.complaints.adapter import ComplaintsAdapter, ComplaintsConfig

__all__ = ["ComplaintsAdapter", "ComplaintsConfig"]
