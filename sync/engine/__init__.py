"""The sync engine: one run of one job, with no loss and no duplicates (see :mod:`.runner`).

The package's parts, along the engine's seams:

* :mod:`.context`: the typed vocabulary (:class:`RunContext`, :class:`Side`, :class:`Decision`,
  :class:`CursorState`, :class:`BatchKind`, :class:`BatchResult`);
* :mod:`.hashing`: the record hash and the echo hash, one definition each;
* :mod:`.lease`: a job's :class:`Lease` (one run of a job at a time);
* :mod:`.identity`: which existing party a new record is (match rules over blind indexes);
* :mod:`.oneway`, :mod:`.twoway`, :mod:`.erasure`, :mod:`.records`: the steps of a run;
* :mod:`.versions`: mapping versions per job (a changed mapping re-derives every record), full refresh, resync;
* :mod:`.vendorplan`: plans in the vendor's terms (target fields that would change, masked);
* :mod:`.runner`: :class:`JobRunner`, :func:`run_job` and :func:`process_batch`, the per-batch step a local run
  and a distributed worker share.

Everything another module needs is exported here; nothing ``_``-prefixed is meant for use outside the package.
"""

from crmbridge.sync.engine.context import (
    BatchKind,
    BatchResult,
    CursorState,
    Decision,
    RunContext,
    Side,
    StopRequested,
    iso,
    parse_iso,
)
from crmbridge.sync.engine.erasure import ERASED_NAME, anonymised_payload
from crmbridge.sync.engine.hashing import (
    content,
    echo_hash,
    keyed_hash,
    path_filter,
    payload_hash,
    project,
    record_hash,
    watermark_of,
)
from crmbridge.sync.engine.identity import identity_keys, index_identities, match_party, match_value
from crmbridge.sync.engine.lease import LEASE_TTL_SECONDS, Lease, new_holder
from crmbridge.sync.engine.oneway import CLOSED_STAGES
from crmbridge.sync.engine.records import (
    DEAD_LETTER_BACKOFF,
    TOMBSTONE,
    correlation_id,
    masked_value,
    new_call_id,
    snapshot_row,
)
from crmbridge.sync.engine.runner import (
    CLOCK_AHEAD_WARN_SECONDS,
    SUSPICIOUS_DROP_FROM,
    JobRunner,
    effective_batch_size,
    process_batch,
    run_job,
)
from crmbridge.sync.engine.stream import batched, reading
from crmbridge.sync.engine.twoway import RECOVERED
from crmbridge.sync.engine.vendorplan import flat_payload, vendor_changes
from crmbridge.sync.engine.versions import RESYNC_REASON

__all__ = [
    "CLOCK_AHEAD_WARN_SECONDS",
    "CLOSED_STAGES",
    "DEAD_LETTER_BACKOFF",
    "ERASED_NAME",
    "LEASE_TTL_SECONDS",
    "RECOVERED",
    "RESYNC_REASON",
    "SUSPICIOUS_DROP_FROM",
    "TOMBSTONE",
    "BatchKind",
    "BatchResult",
    "CursorState",
    "Decision",
    "JobRunner",
    "Lease",
    "RunContext",
    "Side",
    "StopRequested",
    "anonymised_payload",
    "batched",
    "content",
    "correlation_id",
    "echo_hash",
    "effective_batch_size",
    "flat_payload",
    "identity_keys",
    "index_identities",
    "iso",
    "keyed_hash",
    "masked_value",
    "match_party",
    "match_value",
    "new_call_id",
    "new_holder",
    "parse_iso",
    "path_filter",
    "payload_hash",
    "process_batch",
    "project",
    "reading",
    "record_hash",
    "run_job",
    "snapshot_row",
    "vendor_changes",
    "watermark_of",
]
