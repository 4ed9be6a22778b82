"""crmbridge.adapters.complaints: the bank's complaint-handling service (a small REST API), which receives the
service cases and complaints logged in a CRM and reports their handling status back.

The vendor folder: ``adapter`` (the class), ``config`` (its configuration model), ``client`` (the HTTP transport),
``errors`` (the error table), ``simulator`` (the simulated service). The API is described in
docs/vendors/complaints.md.

The configuration model is imported with the package, the adapter class when first asked for (it imports
the transport): reading a configuration does not load the transport (issue 19).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmbridge.adapters.complaints.config import ComplaintsConfig

if TYPE_CHECKING:
    from crmbridge.adapters.complaints.adapter import ComplaintsAdapter

__all__ = ["ComplaintsAdapter", "ComplaintsConfig"]


def __getattr__(name: str) -> Any:
    if name == "ComplaintsAdapter":
        from crmbridge.adapters.complaints.adapter import ComplaintsAdapter

        return ComplaintsAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
