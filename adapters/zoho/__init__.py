"""crmbridge.adapters.zoho: the Zoho CRM adapter (REST API v8).

The vendor folder: ``adapter`` (the class), ``config`` (its configuration model), ``client`` (the HTTP transport),
``auth`` (OAuth tokens), ``errors`` (the error table), ``metadata`` (field metadata), ``simulator`` (the simulated
service).

What the sync engine can rely on:

* ``extract(obj, since=..., fields=[...])`` reads ``sort_by=Modified_Time&sort_order=asc`` with
  ``If-Modified-Since = since - overlap_seconds`` (one second earlier unless ``since_boundary: inclusive``, as Zoho
  does not document whether the comparison is > or >=): records up to ``overlap_seconds`` older than ``since`` come
  back again on purpose (dedupe by content hash). ``RawRecord.version`` is Zoho's ``Modified_Time`` string (pass it back
  as ``WriteItem.expected_version``); ``modified_at`` is the same instant in UTC.
* ``extract_deleted(obj, since=...)`` yields tombstones from ``/{module}/deleted``: ``deleted=True``,
  ``external_id`` = the Zoho id, ``modified_at`` = ``deleted_time``; ``data`` holds only ``id, display_name, type,
  deleted_by, created_by, deleted_time`` (no Party_ID: resolve the party through the id cross-reference).
* ``write`` upserts by ``WriteItem.key`` into ``key_field`` (``duplicate_check_fields``), 100 per call, ``trigger``
  from config (default ``[]``). Zoho also matches on every other unique field (e.g. Accounts ``USCC``).
  ``expected_version`` → ``If-Unmodified-Since`` → ``CONFLICT`` on 412 (one-second precision).
* ``find`` uses COQL (read-after-write; search lags), ``get`` a single GET, ``delete`` ``DELETE ?ids=``.
* Access tokens are shared per process and per refresh token (Zoho allows 10 grants per 10 minutes).
* Replies that are not Zoho's (a gateway's 5xx HTML/empty/text body) are transient and honour ``Retry-After``; an
  empty or truncated 200 is a BadResponseError; unknown codes are named (per record: a failed result with code and
  field). ``doctor`` probes authentication, data centre, edition, page size, the If-Modified-Since boundary, clock
  skew and API credits (docs/zoho.md).

The configuration model is imported with the package, the adapter class when first asked for (it imports
the transport): reading a configuration does not load the transport (issue 19).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmbridge.adapters.zoho.config import ZohoConfig

if TYPE_CHECKING:
    from crmbridge.adapters.zoho.adapter import ZohoAdapter

__all__ = ["ZohoAdapter", "ZohoConfig"]


def __getattr__(name: str) -> Any:
    if name == "ZohoAdapter":
        from crmbridge.adapters.zoho.adapter import ZohoAdapter

        return ZohoAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
