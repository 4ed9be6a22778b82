"""crmbridge.adapters.zoho: the Zoho CRM adapter (REST API v8) and its simulator (``.simulator``).

What the sync engine can rely on:

* ``extract(obj, since=..., fields=[...])`` reads ``sort_by=Modified_Time&sort_order=asc`` with
  ``If-Modified-Since = since - overlap_seconds``: records up to ``overlap_seconds`` older than ``since`` come back
  again on purpose (dedupe by content hash). ``RawRecord.version`` is Zoho's ``Modified_Time`` string (pass it back
  as ``WriteItem.expected_version``); ``modified_at`` is the same instant in UTC.
* ``extract_deleted(obj, since=...)`` yields tombstones from ``/{module}/deleted``: ``deleted=True``,
  ``external_id`` = the Zoho id, ``modified_at`` = ``deleted_time``; ``data`` holds only ``id, display_name, type,
  deleted_by, created_by, deleted_time`` (no Party_ID: resolve the party through the id cross-reference).
* ``write`` upserts by ``WriteItem.key`` into ``key_field`` (``duplicate_check_fields``), 100 per call, ``trigger``
  from config (default ``[]``). Zoho also matches on every other unique field (e.g. Accounts ``USCC``).
  ``expected_version`` → ``If-Unmodified-Since`` → ``CONFLICT`` on 412 (one-second precision).
* ``find`` uses COQL (read-after-write; search lags), ``get`` a single GET, ``delete`` ``DELETE ?ids=``.
* Access tokens are shared per process and per refresh token (Zoho allows 10 grants per 10 minutes).
"""

from crmbridge.adapters.zoho.client import EDITION_CONCURRENCY, ZohoAdapter, ZohoConfig

__all__ = ["EDITION_CONCURRENCY", "ZohoAdapter", "ZohoConfig"]
