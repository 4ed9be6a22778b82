"""The state store: the sealed unit of work over crmbridge's tables (defined in :mod:`.tables`, re-exported here).

Every SQL statement on the state database lives behind a repository method of :class:`StoreTx` (or of the data-key
repository ``tx.keys``, :class:`crmbridge.sync.state.keys.KeyRepository`); no caller outside ``sync/state`` holds
a connection.

Tables (SQLite and PostgreSQL alike; the Alembic migration ``0001`` creates exactly these):

================= ==============================================================================
table             holds
================= ==============================================================================
runs              one row per sync run: job, status, timings, counts, actor, host/pid, error summary
cursors           the watermark per (job, source object): field, value, overlap, boundary dedupe set
xref              (system, object, external id) → canonical party id
identity_index    (scheme, blind index) → party id, for matching new records without clear identifiers
snapshots         the last canonical state written per (party, target system, object), encrypted
dead_letters      records that failed a stage, with reason, masked message and encrypted payload
conflicts         fields changed on both sides of a two-way job, waiting for a decision
job_leases        one holder per job at a time, across processes and hosts
write_intents     a write about to be sent, so a crash between send and commit is recognised on resume
erasures          one row per erased party (migration ``0005``): when, why, by whom; lifted or not
erasure_keys      what suppresses an erased party: blind-indexed identifiers (scheme, bidx) and the vendor
                  records (system, object, external id) it was known as; a CRM record's key also carries the
                  erasure's propagation to that CRM (pending until a job targeting it carried it out)
================= ==============================================================================

The repository is explicit SQL (SQLAlchemy Core statements) in explicit transactions::

    store = StateStore.from_url(url)
    with store.transaction() as tx:          # one transaction: all or nothing
        tx.put_xref("zoho_cn", "Contacts", "4876876000000123", party_id)
        tx.put_snapshot(party_id, "zoho_cn", "Contacts", content_hash=h, blob=enc)
        tx.put_cursor(job, "Customer", field="LAST_MOD", value="2024-05-01T08:00:00Z")

A dry run opens a unit of work that cannot commit, ``store.transaction(read_only=True)`` (whatever it wrote is
rolled back); a report or preview opens one the database refuses writes in, ``transaction(refuse_writes=True)``.

Leases commit on their own (they must be visible to other processes at once)::

    if store.acquire_lease(job, holder, ttl_seconds=300): ...

All times are timezone-aware UTC (:class:`UTCDateTime` stores naive UTC on SQLite). Encrypted values are
``bytes`` the caller produced with the field cipher; the store never sees clear personal data.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Dialect,
    Table,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, RowMapping, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from crmbridge.core.errors import ConfigurationError, FatalSyncError, SystemUnavailableError
from crmbridge.core.extras import installed_version
from crmbridge.sync.state.db import chunked, make_engine
from crmbridge.sync.state.keys import KeyRepository
from crmbridge.sync.state.tables import (  # re-exported: the store's tables, defined with every other table
    ERASURE_IDENTITY,
    ERASURE_SOURCE,
    ERASURE_TARGET,
    ReencryptProgress,
    UTCDateTime,
    apscheduler_jobs,
    conflicts,
    cursors,
    dead_letters,
    erasure_keys,
    erasures,
    identity_index,
    job_leases,
    mapping_versions,
    runs,
    snapshots,
    write_intents,
    xref,
)
from crmbridge.sync.state.version_sets import ensure_set as ensure_version_set
from crmbridge.sync.state.version_sets import is_key as is_version_set_key
from crmbridge.sync.state.version_sets import load_sets as load_version_sets
from crmbridge.sync.state.version_sets import resolve as resolve_version_set

__all__ = [
    "ConflictStatus",
    "Cursor",
    "DeadLetterStatus",
    "IntentStatus",
    "ReadOnlyTransactionError",
    "RunStatus",
    "Snapshot",
    "StateStore",
    "StoreTx",
    "UTCDateTime",
    "conflicts",
    "cursors",
    "dead_letters",
    "erasure_keys",
    "erasures",
    "identity_index",
    "job_leases",
    "open_private",
    "private_file",
    "runs",
    "snapshots",
    "utcnow",
    "write_intents",
    "xref",
]


#: completing a write intent, prepared once (also sent as one executemany per batch: StoreTx.batched_writes): a
#: failed write's intent is kept, marked failed; a done one is deleted, since the cross-reference, snapshot and
#: ledger entry committed in the same transaction hold its outcome (the table holds only what is in flight)
_COMPLETE_INTENT = update(write_intents).where(write_intents.c.id == bindparam("b_id")).values(
    status=bindparam("b_status"), external_id=bindparam("b_external_id"), updated_at=bindparam("b_updated_at"))
_DELETE_INTENT = delete(write_intents).where(write_intents.c.id == bindparam("b_id"))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"          # finished, some records dead-lettered, refused or in conflict
    FAILED = "failed"            # stopped on an error, or refused more than the job's max_failed_ratio
    STOPPED = "stopped"          # stopped on request after a committed batch
    SUSPICIOUS = "suspicious"    # a full scan read nothing after runs that read plenty
    CRASHED = "crashed"          # found running with its process gone: recorded so by a later run
    REFUSED = "refused"          # not started: another process held the job's lease (its holder in error_summary)
    ABORTED = "aborted"          # (rows of earlier versions: stopped, or its process gone)


class DeadLetterStatus(enum.StrEnum):
    OPEN = "open"
    RETRYING = "retrying"
    RESOLVED = "resolved"
    ABANDONED = "abandoned"


class ConflictStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IntentStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class Cursor:
    """A job's watermark on one source object.

    Attributes:
        value: the watermark as a UTC string at the source's own granularity (``2024-05-01T08:00:00Z``).
        overlap_seconds: how far before ``value`` the next extract starts (clock skew, late commits).
        boundary: external id → content hash of the records already processed AT the watermark, so the
            overlap re-reads them without re-processing.
    """

    job: str
    object: str
    field: str
    value: str | None
    overlap_seconds: int
    boundary: dict[str, str]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    party_id: str
    system: str
    object: str
    content_hash: str
    blob: bytes
    written_hash: str | None
    version: str | None
    synced_at: datetime
    #: file name -> version (content hash) of each mapping that produced it (``None``: written before 0011)
    mapping_versions: dict[str, str] | None = None



def _row(r: RowMapping | None) -> dict[str, Any] | None:
    return None if r is None else dict(r)


def _table(name: str) -> Table:
    """A table of the state database by name (every table module's, the ledger's included)."""
    from crmbridge.sync.state.db import import_models

    try:
        return import_models().tables[name]
    except KeyError:
        raise KeyError(f"no table {name!r} in the state database's models") from None


# ---------------------------------------------------------------------------------------------- tx
#: prepared upsert statements by (dialect, table, key columns, updated columns, insert-only columns)
_UPSERTS: dict[tuple[Any, ...], Any] = {}
#: prepared lookups of the sync hot path (built once: building a SELECT per record cost as much as running it)
_Q_XREF = select(xref.c.party_id).where(xref.c.system == bindparam("q_system"), xref.c.object == bindparam(
    "q_object"), xref.c.external_id == bindparam("q_external_id"))
_Q_XREFS_FOR = select(xref.c.system, xref.c.object, xref.c.external_id).where(
    xref.c.party_id == bindparam("q_party_id"), xref.c.system == bindparam("q_system"),
    xref.c.object == bindparam("q_object")).order_by(xref.c.id)
_Q_IDENTITY = select(identity_index.c.party_id).where(
    identity_index.c.scheme == bindparam("q_scheme"), identity_index.c.bidx == bindparam("q_bidx")).order_by(
    identity_index.c.id)
_Q_SNAPSHOT = select(snapshots).where(snapshots.c.party_id == bindparam("q_party_id"),
                                      snapshots.c.system == bindparam("q_system"),
                                      snapshots.c.object == bindparam("q_object"))


class StoreTx:
    """The repository methods, inside one open transaction (see :meth:`StateStore.transaction`).

    ``connection`` is the SQLAlchemy connection, for other modules (ledger) writing in the same transaction.
    """

    def __init__(self, connection: Connection, clock: Callable[[], datetime], *, read_only: bool = False) -> None:
        self._conn = connection
        # writes held back inside batched_writes(): [statement, table name, parameter rows, rows to check]
        self._pending: list[list[Any]] = []
        self._batching = False
        #: this unit of work cannot commit (``StateStore.transaction(read_only=True)``)
        self.read_only = read_only
        self._now = clock
        # read-through caches filled by the prefetch_* methods (one query per batch instead of one per record);
        # they live as long as this transaction, and every write through this object keeps them true
        self._xref_c: dict[tuple[str, str, str], str | None] = {}
        self._xfor_c: dict[tuple[str, str], dict[str, list[tuple[str, str, str]]]] = {}
        self._snap_c: dict[tuple[str, str, str], Snapshot | None] = {}
        self._known_sets: set[str] = set()                 # mapping-version sets stored in this transaction
        self._sets_cache: dict[str, dict[str, str]] = {}   # and read in it
        self._erased_c: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        self._any_erasure: bool | None = None
        self._keys: KeyRepository | None = None

    @property
    def connection(self) -> Connection:
        """The SQLAlchemy connection, for other modules (ledger) writing in the same transaction. Writes held back
        by :meth:`batched_writes` are sent first, so whatever runs on it sees them."""
        if self._pending:
            self.flush()
        return self._conn

    # -- batched writes ------------------------------------------------------------------------
    @contextmanager
    def batched_writes(self) -> Iterator[StoreTx]:
        """Hold back the sync hot path's writes (snapshots, cross-references, read hashes, completed write intents)
        and send them as one ``executemany`` per statement kind: when the block ends, or earlier as soon as any
        other statement runs in this transaction (every statement goes through :attr:`connection`, which sends
        them first), so no read ever misses a held-back write. Statements of one table keep their order; the
        tables held back have no order between them (no foreign keys, no triggers). Nested blocks join the
        outer one. What the block raised is raised after its writes were sent (or with the error sending them)."""
        if self._batching:
            yield self
            return
        self._batching = True
        try:
            yield self
        finally:
            self._batching = False
            self.flush()

    def _hold(self, stmt: Any, table: str, params: dict[str, Any], *, check_rows: bool = False) -> None:
        """Queue one write of ``stmt`` (see :meth:`batched_writes`): appended to the last group of the same
        statement unless a later group writes the same table (its order is kept)."""
        for group in reversed(self._pending):
            if group[0] is stmt:
                group[2].append(params)
                return
            if group[1] == table:
                break
        self._pending.append([stmt, table, [params], check_rows])

    def flush(self) -> None:
        """Send the writes held back by :meth:`batched_writes` now (one ``executemany`` per statement kind)."""
        pending, self._pending = self._pending, []
        for stmt, table, rows, check_rows in pending:
            res = self._conn.execute(stmt, rows)
            if check_rows and self._conn.dialect.supports_sane_multi_rowcount and res.rowcount != len(rows):
                raise KeyError(f"{table}: {len(rows) - res.rowcount} of {len(rows)} rows to update do not exist")

    # -- protected data and the ledger, in this transaction (callers never hold the connection) ----
    @property
    def keys(self) -> KeyRepository:
        """The data-key repository in this transaction (what :class:`FieldCipher` methods are given)."""
        if self._keys is None:
            self._keys = KeyRepository(self.connection)
        return self._keys

    def seal(self, cipher: Any, table: str, column: str, *, row: Mapping[str, Any], value: Any,
             as_bytes: bool = True) -> Any:
        """Encrypt ``value`` for ``table.column`` of ``row`` (:func:`crmbridge.sync.security.protect.seal`)."""
        from crmbridge.sync.security.protect import seal
        return seal(self.keys, cipher, table, column, row=row, value=value, as_bytes=as_bytes)

    def unseal(self, cipher: Any, table: str, column: str, *, row: Mapping[str, Any], token: Any) -> Any:
        """Decrypt what :meth:`seal` produced for the same row."""
        from crmbridge.sync.security.protect import unseal
        return unseal(self.keys, cipher, table, column, row=row, token=token)

    def prepare_party_keys(self, cipher: Any, party_ids: Iterable[object]) -> int:
        """Create (in this transaction) the per-party data keys the parties will need; the number created."""
        return int(cipher.prepare_party_keys(self.keys, party_ids))

    def ledger(self, signer: Any = None, *, cipher: Any = None, **kwargs: Any) -> Any:
        """The ledger, appending in this transaction (:class:`crmbridge.sync.state.ledger.Ledger`)."""
        from crmbridge.sync.state.ledger import Ledger
        return Ledger(self.connection, signer, cipher=cipher, **kwargs)

    def blind_indexer(self, cipher: Any, *, bits: int = 64) -> Any:
        """The blind indexer whose root key is this database's ``blind-index`` data key (created on first use)."""
        from crmbridge.sync.security.blindindex import BlindIndexer
        return BlindIndexer.from_cipher(self.keys, cipher, bits=bits)

    # -- batch prefetch ------------------------------------------------------------------------
    def prefetch_xrefs(self, system: str, obj: str, external_ids: Iterable[str]) -> None:
        """Load the party ids of many (system, object, external id) at once; :meth:`get_xref` then answers them
        without a query (the ones not found are remembered as absent)."""
        ids = sorted({e for e in external_ids if (system, obj, e) not in self._xref_c})
        for chunk in chunked(ids):
            for e in chunk:
                self._xref_c[(system, obj, e)] = None
            for r in self.connection.execute(select(xref.c.external_id, xref.c.party_id).where(
                    xref.c.system == system, xref.c.object == obj, xref.c.external_id.in_(chunk))):
                self._xref_c[(system, obj, r.external_id)] = r.party_id
        self.prefetch_erasures(system, obj, ids)

    def prefetch_parties(self, party_ids: Iterable[str], *, snapshots_of: Iterable[tuple[str, str]] = (),
                         xrefs_of: Iterable[tuple[str, str]] = ()) -> None:
        """Load, for many parties at once, their snapshots of each (system, object) in ``snapshots_of`` and their
        cross-references in each (system, object) of ``xrefs_of``; :meth:`get_snapshot` and
        :meth:`xrefs_for_party` then answer them without a query."""
        pids = sorted(set(party_ids))
        for system, obj in set(snapshots_of):
            todo = [p for p in pids if (p, system, obj) not in self._snap_c]
            for chunk in chunked(todo):
                for p in chunk:
                    self._snap_c[(p, system, obj)] = None
                for r in self.connection.execute(select(snapshots).where(
                        snapshots.c.system == system, snapshots.c.object == obj,
                        snapshots.c.party_id.in_(chunk))).mappings():
                    self._snap_c[(r["party_id"], system, obj)] = self._snapshot(r)
        for system, obj in set(xrefs_of):
            known = self._xfor_c.setdefault((system, obj), {})
            todo = [p for p in pids if p not in known]
            for chunk in chunked(todo):
                for p in chunk:
                    known[p] = []
                for r in self.connection.execute(select(xref.c.party_id, xref.c.external_id).where(
                        xref.c.system == system, xref.c.object == obj, xref.c.party_id.in_(chunk))
                        .order_by(xref.c.id)):
                    known[r.party_id].append((system, obj, r.external_id))
                    self._xref_c[(system, obj, r.external_id)] = r.party_id

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, job: str, *, actor: str | None = None, dry_run: bool = False) -> int:
        """Record a run as started; returns its id."""
        res = self.connection.execute(insert(runs).values(
            job=job, status=RunStatus.RUNNING.value, dry_run=dry_run, started_at=self._now(), counts={},
            actor=actor, host=socket.gethostname()[:255], pid=os.getpid(),
            crmbridge_version=installed_version()[:64]).returning(runs.c.id))
        return int(res.scalar_one())

    def finish_run(self, run_id: int, status: RunStatus | str, *, counts: Mapping[str, int] | None = None,
                   error_summary: str | None = None) -> None:
        """Mark a run finished. ``error_summary`` must already be masked."""
        status = RunStatus(status)
        if status is RunStatus.RUNNING:
            raise ValueError("finish_run needs a final status")
        res = self.connection.execute(update(runs).where(runs.c.id == run_id).values(
            status=status.value, finished_at=self._now(), counts=dict(counts or {}), error_summary=error_summary))
        if res.rowcount != 1:
            raise KeyError(f"no run {run_id}")

    def note_run_progress(self, run_id: int, counts: Mapping[str, Any]) -> None:
        """Keep a running run's counts up to date with its last committed batch (in that batch's transaction), so
        a run whose process dies is recorded ``crashed`` with what it had committed."""
        self.connection.execute(update(runs).where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value)
                                .values(counts=dict(counts)))

    def mark_crashed_runs(self, job: str, *, current: int, dry_runs_of_dead_local: bool = True,
                          lease_held: bool = True) -> list[int]:
        """Record as ``crashed`` the runs of ``job`` still marked running other than ``current``: called by the
        holder of the job's lease, so no other real run can be alive. Dry runs hold no lease: one is crashed only
        if it ran on this host in a process that no longer exists; without the lease (``lease_held=False``, a
        scheduler starting) the same holds for every run. Returns the ids marked."""
        marked = []
        rows = self.connection.execute(select(runs).where(
            runs.c.job == job, runs.c.status == RunStatus.RUNNING.value, runs.c.id != current)).mappings().all()
        for r in rows:
            dead_local = (r["host"] == socket.gethostname()[:255] and bool(r["pid"])
                          and not _pid_alive(int(r["pid"])))
            if (r["dry_run"] or not lease_held) and not (dry_runs_of_dead_local and dead_local):
                continue
            counts = dict(r["counts"] or {})
            done = (f"its last committed batch had read {counts['read']} records" if counts.get("read")
                    else "no batch was committed")
            self.connection.execute(update(runs).where(runs.c.id == r["id"]).values(
                status=RunStatus.CRASHED.value, finished_at=self._now(),
                error_summary=f"its process (host {r['host']}, pid {r['pid']}) ended without finishing the run; "
                              f"{done}; resumed by run {current}"))
            marked.append(int(r["id"]))
        return marked

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        return _row(self.connection.execute(select(runs).where(runs.c.id == run_id)).mappings().first())

    def list_runs(self, job: str | None = None, *, limit: int = 50, since: datetime | None = None,
                  exclude_status: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Most recent first; ``since``: started at or after it; ``exclude_status``: not in these statuses."""
        q = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        if job is not None:
            q = q.where(runs.c.job == job)
        if since is not None:
            q = q.where(runs.c.started_at >= since)
        skip = [str(x) for x in exclude_status]
        if skip:
            q = q.where(runs.c.status.not_in(skip))
        return [dict(r) for r in self.connection.execute(q).mappings()]

    # -- cursors -------------------------------------------------------------------------------
    def get_cursor(self, job: str, obj: str) -> Cursor | None:
        r = self.connection.execute(select(cursors).where(
            cursors.c.job == job, cursors.c.object == obj)).mappings().first()
        return None if r is None else Cursor(**dict(r))

    def put_cursor(self, job: str, obj: str, *, field: str, value: str | None, overlap_seconds: int = 0,
                   boundary: Mapping[str, str] | None = None) -> None:
        """Create or move the cursor of (job, object)."""
        values = {"field": field, "value": value, "overlap_seconds": overlap_seconds,
                  "boundary": dict(boundary or {}), "updated_at": self._now()}
        self._upsert(cursors, {"job": job, "object": obj}, values)

    # -- xref ----------------------------------------------------------------------------------
    def assume_new_party(self, party_id: str, *, snapshots_of: Iterable[tuple[str, str]] = (),
                         xrefs_of: Iterable[tuple[str, str]] = ()) -> None:
        """Note that ``party_id`` was minted just now (a random UUID): it has no snapshot and no cross-reference
        in the given (system, object)s, so looking them up needs no query."""
        for system, obj in snapshots_of:
            self._snap_c.setdefault((party_id, system, obj), None)
        for system, obj in xrefs_of:
            self._xfor_c.setdefault((system, obj), {}).setdefault(party_id, [])

    def get_xref(self, system: str, obj: str, external_id: str) -> str | None:
        """The party id (system, object, external id) is known as, or ``None``."""
        key = (system, obj, external_id)
        if key in self._xref_c:
            return self._xref_c[key]
        return self.connection.execute(_Q_XREF, {"q_system": system, "q_object": obj,
                                                  "q_external_id": external_id}).scalar()

    def put_xref(self, system: str, obj: str, external_id: str, party_id: str) -> None:
        """Link (system, object, external id) to ``party_id`` (re-linking updates it)."""
        now = self._now()
        key = (system, obj, external_id)
        by_party = self._xfor_c.get((system, obj))
        if by_party is not None:
            if key in self._xref_c:   # the old link is known: only its party's and the new party's lists change
                old = self._xref_c[key]
                if old is not None and old != party_id:
                    by_party.pop(old, None)
                if old != party_id:
                    by_party.pop(party_id, None)
            else:                     # any cached party might have held it
                self._xfor_c.pop((system, obj), None)
        self._xref_c[key] = party_id
        self._upsert(xref, {"system": system, "object": obj, "external_id": external_id},
                     {"party_id": party_id, "updated_at": now}, insert_only={"created_at": now})

    def xrefs_for_party(self, party_id: str, system: str | None = None,
                        obj: str | None = None) -> list[tuple[str, str, str]]:
        """Every (system, object, external id) linked to ``party_id``, optionally narrowed."""
        if system is not None and obj is not None:  # the sync hot path: prefetched, or a prepared statement
            cached = self._xfor_c.get((system, obj), {}).get(party_id)
            if cached is not None:
                return list(cached)
            rows = self.connection.execute(_Q_XREFS_FOR, {"q_party_id": party_id, "q_system": system,
                                                          "q_object": obj})
            return [tuple(r) for r in rows]  # type: ignore[misc]
        q = select(xref.c.system, xref.c.object, xref.c.external_id).where(xref.c.party_id == party_id)
        if system is not None:
            q = q.where(xref.c.system == system)
        if obj is not None:
            q = q.where(xref.c.object == obj)
        return [tuple(r) for r in self.connection.execute(q.order_by(xref.c.id))]  # type: ignore[misc]

    def delete_xref(self, system: str, obj: str, external_id: str, *, party_id: str | None = None) -> bool:
        """Delete one cross-reference (with ``party_id``: only if it links to that party)."""
        if party_id is None:
            self._xref_c[(system, obj, external_id)] = None
        else:  # it may link to another party and stay: read it again when asked
            self._xref_c.pop((system, obj, external_id), None)
        self._xfor_c.pop((system, obj), None)
        q = delete(xref).where(xref.c.system == system, xref.c.object == obj, xref.c.external_id == external_id)
        if party_id is not None:
            q = q.where(xref.c.party_id == party_id)
        return self.connection.execute(q).rowcount == 1

    def delete_xrefs_of_party(self, party_id: str) -> int:
        """Delete every cross-reference of ``party_id``; how many."""
        self._forget()
        return int(self.connection.execute(delete(xref).where(xref.c.party_id == party_id)).rowcount or 0)

    def parties_in(self, system: str, *, limit: int = 1) -> list[str]:
        """Party ids known in ``system`` (the first ``limit`` cross-references)."""
        return list(self.connection.execute(select(xref.c.party_id).where(xref.c.system == system)
                                            .order_by(xref.c.id).limit(limit)).scalars())

    # -- identity index ------------------------------------------------------------------------
    def add_identity(self, scheme: str, bidx: str, party_id: str, *, key_version: int = 1) -> None:
        """Index ``party_id`` under the blind index ``bidx`` of ``scheme`` (idempotent)."""
        self._insert_ignore(identity_index, {"scheme": scheme, "bidx": bidx, "party_id": party_id,
                                             "key_version": key_version, "created_at": self._now()},
                            ("scheme", "bidx", "party_id"))

    def lookup_identity(self, scheme: str, bidx: str) -> list[str]:
        """Party ids indexed under (scheme, bidx), oldest first; several means the match is ambiguous."""
        return list(self.connection.execute(_Q_IDENTITY, {"q_scheme": scheme, "q_bidx": bidx}).scalars())

    def identities_of(self, party_id: str) -> list[tuple[str, str]]:
        """(scheme, blind index) of every identity-index entry of ``party_id``, oldest first."""
        return [(r.scheme, r.bidx) for r in self.connection.execute(
            select(identity_index.c.scheme, identity_index.c.bidx).where(identity_index.c.party_id == party_id)
            .order_by(identity_index.c.id))]

    def remove_identities(self, party_id: str, scheme: str | None = None) -> int:
        q = delete(identity_index).where(identity_index.c.party_id == party_id)
        if scheme is not None:
            q = q.where(identity_index.c.scheme == scheme)
        return self.connection.execute(q).rowcount

    # -- erasures (PIPL Art. 47) -------------------------------------------------------------------
    def has_erasures(self) -> bool:
        """Whether any party was ever erased (asked once per transaction): without one, no record needs a
        suppression lookup."""
        if self._any_erasure is None:
            self._any_erasure = self.connection.execute(select(erasures.c.id).limit(1)).first() is not None
        return self._any_erasure

    def add_erasure(self, party_id: str, *, reason: str, actor: str, party_type: str | None = None,
                    identities: Iterable[tuple[str, str]] = (), sources: Iterable[tuple[str, str, str]] = (),
                    targets: Iterable[tuple[str, str, str]] = ()) -> int:
        """Record ``party_id`` as erased, with what suppresses it: blind-indexed ``identities`` (scheme, bidx), the
        ``sources`` and ``targets`` (system, object, external id) it was known as; each target's propagation
        starts ``pending``. Erasing an erased party again adds keys only; erasing a lifted one re-activates it.
        Returns the erasure's id."""
        now = self._now()
        row = self.connection.execute(select(erasures).where(erasures.c.party_id == party_id)).mappings().first()
        if row is None:
            eid = int(self.connection.execute(insert(erasures).values(
                party_id=party_id, party_type=party_type, reason=reason, actor=actor, erased_at=now)
                .returning(erasures.c.id)).scalar_one())
        else:
            eid = int(row["id"])
            if row["lifted_at"] is not None:
                self.connection.execute(update(erasures).where(erasures.c.id == eid).values(
                    reason=reason, actor=actor, erased_at=now, lifted_at=None, lifted_by=None, lift_reason=None,
                    party_type=party_type or row["party_type"]))
        for scheme, bidx in identities:
            self.add_erasure_key(eid, ERASURE_IDENTITY, scheme=scheme, bidx=bidx)
        for kind, refs in ((ERASURE_SOURCE, sources), (ERASURE_TARGET, targets)):
            for system, obj, ext in refs:
                self.add_erasure_key(eid, kind, system=system, obj=obj, external_id=ext)
        self._any_erasure = True
        self._erased_c.clear()
        return eid

    def add_erasure_key(self, erasure_id: int, kind: str, *, scheme: str | None = None, bidx: str | None = None,
                        system: str | None = None, obj: str | None = None, external_id: str | None = None,
                        seen: Mapping[str, str] | None = None) -> int:
        """One suppression key of an erasure (idempotent: an existing identical key's id is returned)."""
        k = erasure_keys
        if kind not in (ERASURE_IDENTITY, ERASURE_SOURCE, ERASURE_TARGET):
            raise ValueError(f"erasure key kind must be identity, source or target, not {kind!r}")
        found = self.connection.execute(select(k.c.id).where(
            k.c.erasure_id == erasure_id, k.c.kind == kind,
            *((k.c.scheme == scheme, k.c.bidx == bidx) if kind == ERASURE_IDENTITY else
              (k.c.system == system, k.c.object == obj, k.c.external_id == external_id)))).scalar()
        if found is not None:
            return int(found)
        self._erased_c.pop((system or "", obj or "", external_id or ""), None)
        return int(self.connection.execute(insert(erasure_keys).values(
            erasure_id=erasure_id, kind=kind, scheme=scheme, bidx=bidx, system=system, object=obj,
            external_id=external_id, seen=dict(seen or {}), created_at=self._now(),
            propagation="pending" if kind == ERASURE_TARGET else None).returning(k.c.id)).scalar_one())

    _ERASED_COLS = (erasures.c.id.label("erasure_id"), erasures.c.party_id, erasures.c.party_type,
                    erasures.c.erased_at, erasure_keys.c.id.label("key_id"), erasure_keys.c.kind,
                    erasure_keys.c.seen, erasure_keys.c.external_id)

    def prefetch_erasures(self, system: str, obj: str, external_ids: Iterable[str]) -> None:
        """Load, for many records at once, the erasure suppressing each (see :meth:`erasure_for_record`)."""
        ids = sorted({e for e in external_ids if (system, obj, e) not in self._erased_c})
        if not ids:
            return
        if not self.has_erasures():
            self._erased_c.update(dict.fromkeys(((system, obj, e) for e in ids), None))
            return
        k = erasure_keys
        for chunk in chunked(ids):
            for e in chunk:
                self._erased_c[(system, obj, e)] = None
            for r in self.connection.execute(select(*self._ERASED_COLS).join(
                    erasures, erasures.c.id == k.c.erasure_id).where(
                    k.c.system == system, k.c.object == obj, k.c.external_id.in_(chunk),
                    or_(and_(k.c.kind == ERASURE_SOURCE, erasures.c.lifted_at.is_(None)),
                        k.c.kind == ERASURE_TARGET)).order_by(erasures.c.id)).mappings():
                self._erased_c[(system, obj, r["external_id"])] = dict(r)

    def erasure_for_record(self, system: str, obj: str, external_id: str) -> dict[str, Any] | None:
        """The erasure that suppresses the vendor record (system, object, external id), or ``None``: an erasure
        in force that knew it as a source record, or any erasure that knew it as a CRM record (the old CRM
        record of an erased party is never merged again, even after a lift). Keys: erasure_id, party_id,
        party_type, erased_at, key_id, kind, seen."""
        key = (system, obj, external_id)
        if key not in self._erased_c:
            self.prefetch_erasures(system, obj, [external_id])
        return self._erased_c.get(key)

    def erasure_for_party(self, party_id: str, *, in_force: bool = True) -> dict[str, Any] | None:
        """The erasure of ``party_id`` (by default only if in force, i.e. not lifted), or ``None``."""
        if not self.has_erasures():
            return None
        q = select(erasures).where(erasures.c.party_id == party_id)
        if in_force:
            q = q.where(erasures.c.lifted_at.is_(None))
        return _row(self.connection.execute(q).mappings().first())

    def erasure_by_identity(self, keys: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
        """The erasure in force that one of ``keys`` (scheme, blind index) belongs to, or ``None``."""
        keys = list(keys)
        if not keys or not self.has_erasures():
            return None
        k = erasure_keys
        r = self.connection.execute(select(erasures.c.id.label("erasure_id"), erasures.c.party_id,
                                           erasures.c.party_type, erasures.c.erased_at).join(
            erasures, erasures.c.id == k.c.erasure_id).where(
            k.c.kind == ERASURE_IDENTITY, erasures.c.lifted_at.is_(None),
            or_(*(and_(k.c.scheme == s, k.c.bidx == b) for s, b in keys))).order_by(erasures.c.id).limit(1)
        ).mappings().first()
        return _row(r)

    def note_suppressed(self, key_id: int, job: str, record_hash: str) -> bool:
        """Remember that ``job`` suppressed this version of an erased party's record; False if it already had
        (an unchanged re-read: nothing new to record)."""
        seen = self.connection.execute(select(erasure_keys.c.seen).where(erasure_keys.c.id == key_id)).scalar()
        seen = dict(seen or {})
        if seen.get(job) == record_hash:
            return False
        seen[job] = record_hash
        self.connection.execute(update(erasure_keys).where(erasure_keys.c.id == key_id).values(seen=seen))
        for cached in self._erased_c.values():
            if cached is not None and cached["key_id"] == key_id:
                cached["seen"] = seen
        return True

    def list_erasures(self, *, party_id: str | None = None, identity: tuple[str, str] | None = None,
                      in_force: bool | None = None) -> list[dict[str, Any]]:
        """Erasures, oldest first, by party id and/or an identity key; ``in_force`` True/False narrows to erasures
        not lifted / lifted."""
        q = select(erasures).order_by(erasures.c.id)
        if party_id is not None:
            q = q.where(erasures.c.party_id == party_id)
        if identity is not None:
            k = erasure_keys
            q = q.where(erasures.c.id.in_(select(k.c.erasure_id).where(
                k.c.kind == ERASURE_IDENTITY, k.c.scheme == identity[0], k.c.bidx == identity[1])))
        if in_force is not None:
            q = q.where(erasures.c.lifted_at.is_(None) if in_force else erasures.c.lifted_at.is_not(None))
        return [dict(r) for r in self.connection.execute(q).mappings()]

    def erased_parties_by_identity(self, scheme: str, bidx: str) -> list[str]:
        """Party ids of erasures (lifted or not) suppressing identity (``scheme``, ``bidx``), oldest first."""
        k = erasure_keys
        return list(self.connection.execute(
            select(erasures.c.party_id).join(k, k.c.erasure_id == erasures.c.id)
            .where(k.c.kind == ERASURE_IDENTITY, k.c.scheme == scheme, k.c.bidx == bidx)
            .order_by(erasures.c.id)).scalars())

    def erasure_keys_of(self, erasure_id: int, kind: str | None = None) -> list[dict[str, Any]]:
        q = select(erasure_keys).where(erasure_keys.c.erasure_id == erasure_id).order_by(erasure_keys.c.id)
        if kind is not None:
            q = q.where(erasure_keys.c.kind == kind)
        return [dict(r) for r in self.connection.execute(q).mappings()]

    def lift_erasure(self, erasure_id: int, *, actor: str, reason: str) -> bool:
        """Lift an erasure in force (its identities and source records stop suppressing); False if it was not in
        force. The CRM records it propagated to stay suppressed."""
        res = self.connection.execute(update(erasures).where(
            erasures.c.id == erasure_id, erasures.c.lifted_at.is_(None)).values(
            lifted_at=self._now(), lifted_by=actor, lift_reason=reason))
        self._erased_c.clear()
        return res.rowcount == 1

    def pending_propagations(self, system: str, obj: str) -> list[dict[str, Any]]:
        """The CRM records of erased parties in (system, object) the erasure has not reached yet, oldest first.
        Keys: key_id, erasure_id, party_id, party_type, external_id."""
        k = erasure_keys
        return [dict(r) for r in self.connection.execute(select(
            k.c.id.label("key_id"), erasures.c.id.label("erasure_id"), erasures.c.party_id, erasures.c.party_type,
            k.c.external_id).join(erasures, erasures.c.id == k.c.erasure_id).where(
            k.c.kind == ERASURE_TARGET, k.c.system == system, k.c.object == obj,
            k.c.propagation == "pending").order_by(k.c.id)).mappings()]

    def finish_propagation(self, key_id: int, outcome: str) -> None:
        """Record how an erasure reached a CRM record (deleted, deactivated, gone)."""
        self.connection.execute(update(erasure_keys).where(erasure_keys.c.id == key_id).values(
            propagation=outcome, propagated_at=self._now()))

    # -- snapshots -----------------------------------------------------------------------------
    def get_snapshot(self, party_id: str, system: str, obj: str) -> Snapshot | None:
        key = (party_id, system, obj)
        if key in self._snap_c:
            return self._snap_c[key]
        r = self.connection.execute(_Q_SNAPSHOT, {"q_party_id": party_id, "q_system": system,
                                                   "q_object": obj}).mappings().first()
        return None if r is None else self._snapshot(r)

    def _snapshot(self, r: Mapping[str, Any]) -> Snapshot:
        """A snapshot row as read: its mapping versions resolved when it names their set (written after 0018)."""
        row = dict(r)
        row["mapping_versions"] = self._versions(row.get("mapping_versions"))
        return Snapshot(**row)

    def _versions(self, value: Any) -> Any:
        if not is_version_set_key(value):
            return value
        return resolve_version_set(value, load_version_sets(self.connection, [value], self._sets_cache))

    def put_snapshot(self, party_id: str, system: str, obj: str, *, content_hash: str, blob: bytes,
                     written_hash: str | None = None, version: str | None = None,
                     mapping_versions: Mapping[str, str] | None = None) -> None:
        """Store the last canonical state synced for (party, system, object). ``blob`` is ciphertext;
        ``mapping_versions`` the version of each mapping that produced it, by file name
        (:func:`crmbridge.sync.state.lineage.mapping_versions`)."""
        self._snap_c.pop((party_id, system, obj), None)
        self._upsert(snapshots, {"party_id": party_id, "system": system, "object": obj},
                     {"content_hash": content_hash, "blob": blob, "written_hash": written_hash,
                      "version": version, "synced_at": self._now(),
                      # the key of the set, stored once (mapping_version_sets; _snapshot resolves it)
                      "mapping_versions": ensure_version_set(self.connection, mapping_versions, self._known_sets)
                      if mapping_versions else None})

    def snapshot_party_ids(self, system: str, obj: str, *, after: str | None = None,
                           limit: int = 500) -> list[str]:
        """Party ids with a live snapshot (not a deletion's tombstone) at (system, object), in order, after
        ``after`` (a resync pages through them)."""
        q = select(snapshots.c.party_id).where(snapshots.c.system == system, snapshots.c.object == obj,
                                               snapshots.c.content_hash != "tombstone")   # the engine's TOMBSTONE
        if after is not None:
            q = q.where(snapshots.c.party_id > after)
        return list(self.connection.execute(q.order_by(snapshots.c.party_id).limit(limit)).scalars())

    # -- mapping versions (the text of every mapping version used) ---------------------------------
    def archive_mapping(self, *, content_hash: str, system: str, obj: str, file_name: str, text: str) -> bool:
        """Archive one mapping version's text (idempotent: a hash already archived is left as it is); whether it
        was new."""
        return self._insert_ignore(mapping_versions, {
            "content_hash": content_hash, "system": system, "object": obj, "file_name": file_name, "text": text,
            "first_seen_at": self._now()}, ["content_hash"])

    def mapping_versions(self, file_or_system_object: str) -> list[dict[str, Any]]:
        """The archived versions of a mapping, oldest first (without their text): by file name (a path's last part
        is used: ``mappings/zoho_contacts.yaml`` → ``zoho_contacts.yaml``) or by ``system/object``
        (``zoho/Contacts``; ``zoho.Contacts`` too)."""
        t = mapping_versions
        key = file_or_system_object.replace("\\", "/").rsplit("/", 1)[-1] if file_or_system_object.endswith(
            (".yaml", ".yml")) else None
        if key is not None:
            cond = t.c.file_name == key
        else:
            system, _, obj = file_or_system_object.replace(".", "/", 1).partition("/")
            cond = and_(t.c.system == system, t.c.object == obj)
        q = (select(t.c.content_hash, t.c.system, t.c.object, t.c.file_name, t.c.first_seen_at)
             .where(cond).order_by(t.c.first_seen_at, t.c.content_hash))
        return [dict(r) for r in self.connection.execute(q).mappings()]

    def mapping_version(self, content_hash: str) -> dict[str, Any] | None:
        """One archived version (text included) by its hash, or by a prefix of at least 8 characters that only
        one version has; ``None`` when none (or several) match."""
        t = mapping_versions
        h = content_hash.strip().lower()
        if len(h) < 8:
            return None
        cond = t.c.content_hash == h if len(h) >= 64 else t.c.content_hash.startswith(h, autoescape=True)
        rows = [dict(r) for r in self.connection.execute(select(t).where(cond).limit(2)).mappings()]
        return rows[0] if len(rows) == 1 else None

    def mapping_text(self, content_hash: str) -> str | None:
        """The archived text of a mapping version (hash or unique prefix, see :meth:`mapping_version`)."""
        row = self.mapping_version(content_hash)
        return None if row is None else str(row["text"])

    def snapshots_of_party(self, party_id: str) -> list[dict[str, Any]]:
        """Every snapshot row of ``party_id`` (any system and object)."""
        rows = [dict(r) for r in self.connection.execute(
            select(snapshots).where(snapshots.c.party_id == party_id)
            .order_by(snapshots.c.system, snapshots.c.object)).mappings()]
        for row in rows:
            row["mapping_versions"] = self._versions(row.get("mapping_versions"))
        return rows

    # -- dead letters --------------------------------------------------------------------------
    def add_dead_letter(self, job: str, *, stage: str, reason_code: str, message: str,
                        run_id: int | None = None, source_system: str | None = None,
                        source_object: str | None = None, external_id: str | None = None,
                        payload: bytes | None = None, next_attempt_at: datetime | None = None,
                        record_hash: str | None = None) -> int:
        """Dead-letter a record. ``message`` must be masked and ``payload`` encrypted.

        A record (job, source system, object, external id) that already has an unresolved dead letter gets
        that letter updated (attempts + 1) rather than a duplicate. Returns the dead letter's id.
        """
        now = self._now()
        values = {"run_id": run_id, "stage": stage, "reason_code": reason_code, "message": message,
                  "next_attempt_at": next_attempt_at, "updated_at": now}
        if payload is not None:
            values["payload"] = payload
        if record_hash is not None:
            values["record_hash"] = record_hash
        if external_id is not None:
            existing = self.connection.execute(select(dead_letters.c.id).where(
                dead_letters.c.job == job, dead_letters.c.source_system == source_system,
                dead_letters.c.source_object == source_object, dead_letters.c.external_id == external_id,
                dead_letters.c.status.in_([DeadLetterStatus.OPEN.value, DeadLetterStatus.RETRYING.value]),
            ).order_by(dead_letters.c.id).limit(1)).scalar()
            if existing is not None:
                self.connection.execute(update(dead_letters).where(dead_letters.c.id == existing).values(
                    attempts=dead_letters.c.attempts + 1, status=DeadLetterStatus.OPEN.value, **values))
                return int(existing)
        res = self.connection.execute(insert(dead_letters).values(
            job=job, source_system=source_system, source_object=source_object, external_id=external_id,
            attempts=1, status=DeadLetterStatus.OPEN.value, created_at=now, **values).returning(dead_letters.c.id))
        return int(res.scalar_one())

    def get_dead_letter(self, dl_id: int) -> dict[str, Any] | None:
        return _row(self.connection.execute(
            select(dead_letters).where(dead_letters.c.id == dl_id)).mappings().first())

    def list_dead_letters(self, job: str | None = None, *, status: Sequence[str] | str | None = None,
                          due_before: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Dead letters, oldest first; ``due_before`` keeps those whose next attempt is due by then."""
        q = select(dead_letters).order_by(dead_letters.c.id).limit(limit)
        if job is not None:
            q = q.where(dead_letters.c.job == job)
        if status is not None:
            q = q.where(dead_letters.c.status.in_([status] if isinstance(status, str) else list(status)))
        if due_before is not None:
            q = q.where(or_(dead_letters.c.next_attempt_at.is_(None), dead_letters.c.next_attempt_at <= due_before))
        return [dict(r) for r in self.connection.execute(q).mappings()]

    def mark_dead_letter(self, dl_id: int, status: DeadLetterStatus | str, *,
                         next_attempt_at: datetime | None = None, bump_attempts: bool = False) -> None:
        """Move a dead letter to ``status`` (retrying / resolved / abandoned / open)."""
        values: dict[str, Any] = {"status": DeadLetterStatus(status).value, "updated_at": self._now(),
                                  "next_attempt_at": next_attempt_at}
        if bump_attempts:
            values["attempts"] = dead_letters.c.attempts + 1
        res = self.connection.execute(update(dead_letters).where(dead_letters.c.id == dl_id).values(**values))
        if res.rowcount != 1:
            raise KeyError(f"no dead letter {dl_id}")

    # -- conflicts -----------------------------------------------------------------------------
    def add_conflict(self, job: str, party_id: str, field_paths: Sequence[str], *, run_id: int | None = None,
                     base_value: bytes | None = None, source_value: bytes | None = None,
                     target_value: bytes | None = None) -> int:
        """Queue a conflict for review. The three values are ciphertext. Returns its id."""
        res = self.connection.execute(insert(conflicts).values(
            job=job, run_id=run_id, party_id=party_id, field_paths=sorted(field_paths), base_value=base_value,
            source_value=source_value, target_value=target_value, status=ConflictStatus.OPEN.value,
            created_at=self._now()).returning(conflicts.c.id))
        return int(res.scalar_one())

    def get_conflict(self, conflict_id: int) -> dict[str, Any] | None:
        return _row(self.connection.execute(
            select(conflicts).where(conflicts.c.id == conflict_id)).mappings().first())

    def list_conflicts(self, job: str | None = None, *, status: str | None = ConflictStatus.OPEN.value,
                       party_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = select(conflicts).order_by(conflicts.c.id).limit(limit)
        if job is not None:
            q = q.where(conflicts.c.job == job)
        if status is not None:
            q = q.where(conflicts.c.status == status)
        if party_id is not None:
            q = q.where(conflicts.c.party_id == party_id)
        return [dict(r) for r in self.connection.execute(q).mappings()]

    def resolve_conflict(self, conflict_id: int, resolution: str, *, actor: str) -> bool:
        """Resolve an open conflict (``source``, ``target``, ``manual``...). False if it was not open."""
        res = self.connection.execute(update(conflicts).where(
            conflicts.c.id == conflict_id, conflicts.c.status == ConflictStatus.OPEN.value).values(
            status=ConflictStatus.RESOLVED.value, resolution=resolution, actor=actor, resolved_at=self._now()))
        return res.rowcount == 1

    def open_counts(self, job: str) -> tuple[int, int]:
        """(open or retrying dead letters, open conflicts) of ``job``."""
        letters = self.connection.execute(select(func.count()).select_from(dead_letters).where(
            dead_letters.c.job == job, dead_letters.c.status.in_(
                [DeadLetterStatus.OPEN.value, DeadLetterStatus.RETRYING.value]))).scalar_one()
        waiting = self.connection.execute(select(func.count()).select_from(conflicts).where(
            conflicts.c.job == job, conflicts.c.status == ConflictStatus.OPEN.value)).scalar_one()
        return int(letters), int(waiting)

    def delete_dead_letters_for(self, records: Iterable[tuple[str, str, str]]) -> int:
        """Delete the dead letters of these (source system, source object, external id); how many."""
        refs = sorted(set(records))
        n = 0
        for chunk in chunked(refs, 200):
            n += self.connection.execute(delete(dead_letters).where(tuple_(
                dead_letters.c.source_system, dead_letters.c.source_object, dead_letters.c.external_id)
                .in_(chunk))).rowcount or 0
        return int(n)

    # -- any table (erasure, re-encryption: every registered encrypted column) -------------------
    def _forget(self) -> None:
        """Drop the read-through caches (a write they cannot follow row by row)."""
        self._xref_c.clear()
        self._xfor_c.clear()
        self._snap_c.clear()
        self._erased_c.clear()
        self._any_erasure = None

    def table_names(self) -> set[str]:
        """The tables present in the database (an older schema may lack some)."""
        c = self.connection
        return set(c.dialect.get_table_names(c))

    def delete_party_rows(self, table: str, party_column: str, party_id: str) -> int:
        """Delete the rows of ``table`` whose ``party_column`` is ``party_id``; how many."""
        t = _table(table)
        self._forget()
        return int(self.connection.execute(delete(t).where(t.c[party_column] == party_id)).rowcount or 0)

    def primary_key_of(self, table: str) -> list[str]:
        return [c.name for c in _table(table).primary_key.columns]

    def scan(self, table: str, columns: Iterable[str], *, after: Sequence[Any] | None = None,
             limit: int = 500) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of ``table`` (``columns`` and the primary key) in primary-key order, after the
        row whose primary key is ``after``: keyset pagination for batch jobs."""
        t = _table(table)
        pk = list(t.primary_key.columns)
        cols = [t.c[n] for n in sorted({*(c.name for c in pk), *columns})]
        q = select(*cols).order_by(*pk).limit(limit)
        if after is not None:
            q = q.where(tuple_(*pk) > tuple_(*after)) if len(pk) > 1 else q.where(pk[0] > after[0])
        return [dict(r) for r in self.connection.execute(q).mappings()]

    def update_row(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """Update the row of ``table`` whose primary key is ``key``; how many rows (0 or 1)."""
        t = _table(table)
        self._forget()
        return int(self.connection.execute(update(t).where(*(t.c[k] == v for k, v in key.items()))
                                           .values(dict(values))).rowcount or 0)

    # -- re-encryption progress (``keys rotate --reencrypt``) ------------------------------------
    def reencrypt_progress(self, table: str, column: str) -> dict[str, Any] | None:
        p = ReencryptProgress.__table__
        return _row(self.connection.execute(select(p).where(p.c.table_name == table, p.c.column_name == column))
                    .mappings().first())

    def save_reencrypt_progress(self, table: str, column: str, *, target_version: int, last_key: str | None,
                                rows_done: int, finished: bool) -> None:
        """Record where re-encrypting ``table.column`` to ``target_version`` got to (insert or update)."""
        self._upsert(ReencryptProgress.__table__, {"table_name": table, "column_name": column},  # type: ignore[arg-type]
                     {"target_version": target_version, "last_key": last_key, "rows_done": rows_done,
                      "finished": finished, "updated_at": self._now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")})

    # -- scheduler -------------------------------------------------------------------------------
    def scheduled_jobs(self, prefix: str = "") -> dict[str, float | None]:
        """APScheduler job id (without ``prefix``) → its next fire time (epoch seconds), for ids with ``prefix``."""
        return {r.id[len(prefix):]: r.next_run_time for r in self.connection.execute(
            select(apscheduler_jobs.c.id, apscheduler_jobs.c.next_run_time)) if r.id.startswith(prefix)}

    # -- write intents -------------------------------------------------------------------------
    def add_write_intent(self, job: str, *, target_system: str, target_object: str, key: str, operation: str,
                         payload_hash: str, run_id: int | None = None) -> int:
        """Record a write about to be sent (``operation`` is create or update). Returns its id."""
        if operation not in ("create", "update"):
            raise ValueError(f"operation must be create or update, not {operation!r}")
        now = self._now()
        res = self.connection.execute(insert(write_intents).values(
            job=job, run_id=run_id, target_system=target_system, target_object=target_object, key=key,
            operation=operation, payload_hash=payload_hash, status=IntentStatus.PENDING.value,
            created_at=now, updated_at=now).returning(write_intents.c.id))
        return int(res.scalar_one())

    def complete_write_intent(self, intent_id: int, *, external_id: str | None = None,
                              failed: bool = False) -> None:
        if failed:
            stmt, params = _COMPLETE_INTENT, {"b_id": intent_id, "b_status": IntentStatus.FAILED.value,
                                              "b_external_id": external_id, "b_updated_at": self._now()}
        else:
            stmt, params = _DELETE_INTENT, {"b_id": intent_id}
        if self._batching:   # a missing intent is reported when the batch is sent (the transaction fails)
            self._hold(stmt, write_intents.name, params, check_rows=True)
            return
        if self.connection.execute(stmt, params).rowcount != 1:
            raise KeyError(f"no write intent {intent_id}")

    def pending_write_intents(self, job: str, *, target_system: str | None = None) -> list[dict[str, Any]]:
        """Intents still pending for ``job`` (writes that may or may not have reached the target)."""
        q = select(write_intents).where(write_intents.c.job == job,
                                        write_intents.c.status == IntentStatus.PENDING.value)
        if target_system is not None:
            q = q.where(write_intents.c.target_system == target_system)
        return [dict(r) for r in self.connection.execute(q.order_by(write_intents.c.id)).mappings()]

    # -- helpers -------------------------------------------------------------------------------
    def _dialect_insert(self, table: Table) -> Any:
        # each dialect's insert imported on first use: a SQLite store does not load the PostgreSQL dialect (issue 19)
        name = self._conn.dialect.name
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table)
        raise NotImplementedError(f"state store does not support {name}")

    def _upsert(self, table: Table, key: Mapping[str, Any], values: Mapping[str, Any],
                insert_only: Mapping[str, Any] | None = None) -> None:
        """INSERT ... ON CONFLICT (key) DO UPDATE: one statement, race-free on both databases.

        The statement is built once per shape (dialect, table, columns) with bound parameters and reused: building
        it per row cost more CPU than the insert itself on the sync hot path (snapshots, xrefs).
        """
        extra = insert_only or {}
        shape = (self._conn.dialect.name, table.name, tuple(key), tuple(values), tuple(extra))
        stmt = _UPSERTS.get(shape)
        if stmt is None:
            ins = self._dialect_insert(table)
            stmt = ins.on_conflict_do_update(index_elements=list(key),
                                             set_={c: ins.excluded[c] for c in values})
            _UPSERTS[shape] = stmt
        if self._batching:
            self._hold(stmt, table.name, {**key, **values, **extra})
            return
        self.connection.execute(stmt, {**key, **values, **extra})

    def _insert_ignore(self, table: Table, values: Mapping[str, Any], conflict_cols: Sequence[str]) -> bool:
        shape = (self.connection.dialect.name, table.name, tuple(values), tuple(conflict_cols), "ignore")
        stmt = _UPSERTS.get(shape)
        if stmt is None:  # prepared once per shape, as for _upsert
            stmt = _UPSERTS[shape] = self._dialect_insert(table).on_conflict_do_nothing(
                index_elements=list(conflict_cols))
        return self.connection.execute(stmt, dict(values)).rowcount == 1


    # -- engine repository methods ---------------------------------------------------------------------------
    # (the sync engine's and the distributed runner's statements; their tables: store.py and engine_tables.py)
    #: dead-letter statuses that still wait for a retry
    _DL_UNRESOLVED = (DeadLetterStatus.OPEN.value, DeadLetterStatus.RETRYING.value)

    def open_dead_letter_hashes(self, job: str, system: str, obj: str,
                                external_ids: Iterable[str]) -> dict[str, set[str]]:
        """Record hashes of the unresolved dead letters of ``external_ids`` (one query per chunk of ids)."""
        t, out = dead_letters, {}
        for chunk in chunked(sorted(set(external_ids))):
            for ext, h in self.connection.execute(select(t.c.external_id, t.c.record_hash).where(
                    t.c.job == job, t.c.source_system == system, t.c.source_object == obj, t.c.external_id.in_(chunk),
                    t.c.status.in_(self._DL_UNRESOLVED))):
                out.setdefault(ext, set()).add(h)
        return out

    def failed_as_is(self, job: str, system: str, obj: str, external_id: str, record_hash: str) -> bool:
        """Whether the record has an unresolved dead letter of exactly this content."""
        t = dead_letters
        return self.connection.execute(select(t.c.id).where(
            t.c.job == job, t.c.source_system == system, t.c.source_object == obj, t.c.external_id == external_id,
            t.c.record_hash == record_hash, t.c.status.in_(self._DL_UNRESOLVED)).limit(1)).first() is not None

    def with_open_dead_letters(self, job: str, system: str, obj: str, external_ids: Iterable[str]) -> set[str]:
        """Which of ``external_ids`` have an unresolved dead letter of ``job``."""
        t, out = dead_letters, set()
        for chunk in chunked(sorted(set(external_ids))):
            out.update(self.connection.execute(select(t.c.external_id).where(
                t.c.job == job, t.c.source_system == system, t.c.source_object == obj, t.c.external_id.in_(chunk),
                t.c.status.in_(self._DL_UNRESOLVED))).scalars())
        return out

    def resolve_dead_letters(self, job: str, system: str, obj: str, external_id: str) -> int:
        """Mark the record's unresolved dead letters of ``job`` resolved; how many there were."""
        t = dead_letters
        ids = self.connection.execute(select(t.c.id).where(
            t.c.job == job, t.c.source_system == system, t.c.source_object == obj, t.c.external_id == external_id,
            t.c.status.in_(self._DL_UNRESOLVED))).scalars().all()
        for dl_id in ids:
            self.mark_dead_letter(dl_id, DeadLetterStatus.RESOLVED)
        return len(ids)

    def pending_intent_keys(self, target_system: str, target_object: str) -> set[str]:
        """Keys with a write intent still pending at the target, of any job."""
        w = write_intents
        return set(self.connection.execute(select(w.c.key).where(
            w.c.target_system == target_system, w.c.target_object == target_object,
            w.c.status == IntentStatus.PENDING.value)).scalars())

    # read hashes: the keyed hash of the record a job last read, by the record's external id
    def prefetch_read_hashes(self, job: str, system: str, obj: str, external_ids: Iterable[str]) -> None:
        """Load many read hashes at once; :meth:`get_read_hash` then answers them without a query."""
        from crmbridge.sync.state.engine_tables import ReadHash
        from crmbridge.sync.state.engine_tables import read_hashes as t

        cache = self.__dict__.setdefault("_read_c", {})
        todo = sorted({e for e in external_ids if (job, system, obj, e) not in cache})
        for chunk in chunked(todo):
            for e in chunk:
                cache[(job, system, obj, e)] = None
            for r in self.connection.execute(select(t.c.external_id, t.c.record_hash, t.c.version).where(
                    t.c.job == job, t.c.system == system, t.c.object == obj, t.c.external_id.in_(chunk))):
                cache[(job, system, obj, r.external_id)] = ReadHash(r.record_hash, r.version)

    def get_read_hash(self, job: str, system: str, obj: str, external_id: str) -> Any:
        """The hash and version (:class:`~crmbridge.sync.state.engine_tables.ReadHash`) of the record as ``job``
        last read it, or ``None``."""
        from crmbridge.sync.state.engine_tables import ReadHash
        from crmbridge.sync.state.engine_tables import read_hashes as t

        key = (job, system, obj, external_id)
        cache = self.__dict__.get("_read_c")
        if cache is not None and key in cache:
            return cache[key]
        r = self.connection.execute(select(t.c.record_hash, t.c.version).where(
            t.c.job == job, t.c.system == system, t.c.object == obj, t.c.external_id == external_id)).first()
        return None if r is None else ReadHash(r.record_hash, r.version)

    def put_read_hash(self, job: str, system: str, obj: str, external_id: str, *, record_hash: str,
                      version: str | None = None) -> None:
        """Remember the hash (and version) of the record as ``job`` just read it."""
        from crmbridge.sync.state.engine_tables import read_hashes as t

        cache = self.__dict__.get("_read_c")
        if cache is not None:
            cache.pop((job, system, obj, external_id), None)
        self._upsert(t, {"job": job, "system": system, "object": obj, "external_id": external_id},
                     {"record_hash": record_hash, "version": version, "updated_at": self._now()})

    def delete_read_hashes_for(self, records: Iterable[tuple[str, str, str]]) -> int:
        """Forget every job's read hash of these (system, object, external id) records (erasure); how many."""
        from crmbridge.sync.state.engine_tables import read_hashes as t

        self.__dict__.pop("_read_c", None)
        n = 0
        for chunk in chunked(sorted(set(records)), 200):
            n += self.connection.execute(delete(t).where(
                tuple_(t.c.system, t.c.object, t.c.external_id).in_(chunk))).rowcount or 0
        return int(n)

    # mapping versions a job ran with (a changed mapping is re-derived on every record)
    def get_job_mappings(self, job: str) -> dict[str, Any] | None:
        """The mapping versions ``job`` last completed a run with: ``{"versions": {ref: hash}, "texts": {hash:
        mapping text}, "pending": {ref: hash} | None}`` (pending: a re-derivation under way), or ``None``."""
        from crmbridge.sync.state.engine_tables import job_mapping_versions as t

        r = self.connection.execute(select(t.c.versions, t.c.texts, t.c.pending).where(t.c.job == job)).first()
        if r is None:
            return None
        return {"versions": dict(r.versions or {}), "texts": dict(r.texts or {}),
                "pending": dict(r.pending) if r.pending is not None else None}

    def put_job_mappings(self, job: str, *, versions: Mapping[str, str], texts: Mapping[str, str],
                         pending: Mapping[str, str] | None) -> None:
        """Store the mapping versions ``job`` completed a run with (and their texts) and the re-derivation under
        way (``None``: none)."""
        from crmbridge.sync.state.engine_tables import job_mapping_versions as t

        self._upsert(t, {"job": job}, {"versions": dict(versions), "texts": dict(texts),
                                       "pending": dict(pending) if pending is not None else None,
                                       "updated_at": self._now()})

    # distributed runs' batches
    def add_dist_batch(self, **values: Any) -> int:
        """Stage a batch of a distributed run; its id."""
        from crmbridge.sync.state.engine_tables import dist_batches as b

        now = self._now()
        return int(self.connection.execute(insert(b).values(
            attempts=0, counts={}, created_at=now, updated_at=now, **values).returning(b.c.id)).scalar_one())

    def dist_batches_of(self, run_id: int, *columns: str) -> list[dict[str, Any]]:
        """The batches of a run (in sequence order), each with ``columns`` (default: every column but the
        payload)."""
        from crmbridge.sync.state.engine_tables import dist_batches as b

        cols = [b.c[c] for c in columns] if columns else [c for c in b.c if c.name != "payload"]
        return [dict(r) for r in self.connection.execute(select(*cols).where(b.c.run_id == run_id)
                                                         .order_by(b.c.seq)).mappings()]

    def dist_batch_counts(self, run_id: int) -> dict[str, int]:
        """A run's batches by status."""
        from crmbridge.sync.state.engine_tables import dist_batches as b

        return {s: int(n) for s, n in self.connection.execute(select(b.c.status, func.count()).where(
            b.c.run_id == run_id).group_by(b.c.status))}

    def mark_dist_batches_sent(self, batch_ids: Sequence[int]) -> None:
        from crmbridge.sync.state.engine_tables import dist_batches as b

        self.connection.execute(update(b).where(b.c.id.in_(list(batch_ids))).values(sent_at=self._now()))

    def erase_dist_payloads(self, run_id: int) -> None:
        """Erase the staged records of a run's batches (they are not needed once it ended)."""
        from crmbridge.sync.state.engine_tables import dist_batches as b

        self.connection.execute(update(b).where(b.c.run_id == run_id).values(payload=None))

    def claim_dist_batch(self, batch_id: int, worker: str, *, pending: str, running: str,
                         stale_before: datetime) -> dict[str, Any] | None:
        """Take a batch of a running run that is ``pending``, or ``running`` under a worker whose last heartbeat
        is older than ``stale_before``; one statement: of two workers racing for it, one wins. The claimed row
        (run_id, job, seq, kind, lease_holder, payload) or ``None``."""
        from crmbridge.sync.state.engine_tables import dist_batches as b

        now = self._now()
        row = self.connection.execute(update(b).where(
            b.c.id == batch_id,
            (b.c.status == pending) | ((b.c.status == running) & (b.c.heartbeat_at < stale_before)),
            b.c.run_id.in_(select(runs.c.id).where(runs.c.status == RunStatus.RUNNING.value)),
        ).values(status=running, claimed_by=worker[:255], heartbeat_at=now, updated_at=now,
                 attempts=b.c.attempts + 1, error=None).returning(
            b.c.run_id, b.c.job, b.c.seq, b.c.kind, b.c.lease_holder, b.c.payload)).mappings().first()
        return None if row is None else dict(row)

    def dist_batch_status(self, batch_id: int) -> str | None:
        from crmbridge.sync.state.engine_tables import dist_batches as b

        return self.connection.execute(select(b.c.status).where(b.c.id == batch_id)).scalar()

    def update_claimed_dist_batch(self, batch_id: int, worker: str, *, running: str, **values: Any) -> None:
        """Update a batch while ``worker`` has it claimed and running (a heartbeat, its end)."""
        from crmbridge.sync.state.engine_tables import dist_batches as b

        self.connection.execute(update(b).where(b.c.id == batch_id, b.c.claimed_by == worker[:255],
                                                b.c.status == running).values(**values))

    # -- canonical objects beside the party (holdings...; sync/state/object_tables.py) ----------
    def put_object_record(self, cipher: Any, kind: str, object_id: str, party_id: str, *, value: Mapping[str, Any],
                          content_hash: str, closed: bool = False) -> None:
        """Store the canonical object ``kind``/``object_id`` of ``party_id`` as last read (sealed)."""
        from crmbridge.sync.state.object_tables import object_records as t

        row = {"kind": kind, "object_id": object_id, "party_id": party_id}
        blob = self.seal(cipher, "object_records", "blob", row=row, value=dict(value))
        self._upsert(t, {"kind": kind, "object_id": object_id},
                     {"party_id": party_id, "content_hash": content_hash, "blob": blob, "closed": closed,
                      "updated_at": self._now()})

    def get_object_record(self, cipher: Any, kind: str, object_id: str) -> dict[str, Any] | None:
        """The canonical object ``kind``/``object_id`` as last stored (decrypted), or ``None``."""
        from crmbridge.sync.state.object_tables import object_records as t

        r = self.connection.execute(select(t).where(t.c.kind == kind, t.c.object_id == object_id)).mappings().first()
        if r is None:
            return None
        return dict(self.unseal(cipher, "object_records", "blob", row=r, token=r["blob"]))

    def objects_of(self, cipher: Any, kind: str, party_id: str) -> list[dict[str, Any]]:
        """Every stored canonical object ``kind`` of ``party_id`` (decrypted), open and closed, oldest id first."""
        from crmbridge.sync.state.object_tables import object_records as t

        rows = self.connection.execute(select(t).where(t.c.party_id == party_id, t.c.kind == kind)
                                       .order_by(t.c.object_id)).mappings().all()
        return [dict(self.unseal(cipher, "object_records", "blob", row=r, token=r["blob"])) for r in rows]

    def object_ids_of_party(self, party_id: str) -> list[tuple[str, str]]:
        """(kind, object id) of every canonical object stored for ``party_id`` (no decryption: for an erasure,
        which must find the party's objects' vendor records before it shreds them)."""
        from crmbridge.sync.state.object_tables import object_records as t

        return [(str(r.kind), str(r.object_id)) for r in self.connection.execute(
            select(t.c.kind, t.c.object_id).where(t.c.party_id == party_id).order_by(t.c.kind, t.c.object_id))]

    def holdings_of(self, party_id: str, *, cipher: Any) -> list[dict[str, Any]]:
        """The party's holdings as the holdings jobs last read them (canonical Holding dicts, closed ones included):
        what the rules engine derives segments and lifecycle from."""
        return self.objects_of(cipher, "Holding", party_id)

# ---------------------------------------------------------------------------------------------- store
def database_location(url: str | URL) -> str:
    """Where a state database is, for messages: ``host:port/database`` (``file`` for SQLite); never the user's
    password or the URL's query (which may carry one)."""
    try:
        u = make_url(url)
    except Exception:   # noqa: BLE001 - an unparsable URL is reported by whoever uses it
        return "the configured state database (an unparsable state.url)"
    if u.get_backend_name() == "sqlite":
        return f"SQLite file {u.database or ':memory:'}"
    where = f"{u.host or 'localhost'}:{u.port or _DEFAULT_PORTS.get(u.get_backend_name(), '?')}"
    return f"{u.get_backend_name()} at {where}" + (f"/{u.database}" if u.database else "")


def engine_for(url: str) -> Engine:
    """:func:`make_engine`, with a URL no installed driver serves refused as a ConfigurationError (it was
    ``internal error: ModuleNotFoundError``). Does not connect."""
    try:
        return make_engine(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL SQLAlchemy understands: {exc}", where="state.url") from None
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise ConfigurationError(f"the database driver for {database_location(url)} is not installed ({exc})",
                                 where="state.url") from None


def unreachable(url: str | URL, exc: Exception) -> SystemUnavailableError:
    """The error for a state database that cannot be opened (refused, unknown host, timed out, login refused):
    where it was looked for (host and port, never the password) and the driver's first line."""
    return SystemUnavailableError(f"cannot open the state database ({database_location(url)}): {_db_reason(exc)}",
                                  system="state", where="state.url")


def open_engine(url: str) -> Engine:
    """An engine for ``url`` that has connected once: an unreachable database is one clear
    :class:`SystemUnavailableError` here (exit code 4), not ``internal error: OperationalError`` at first use.

    Raises:
        ConfigurationError: see :func:`engine_for`.
        SystemUnavailableError: the database cannot be opened.
    """
    engine = engine_for(url)
    try:
        with engine.connect():
            pass
    except (OperationalError, InterfaceError, DisconnectionError) as exc:
        engine.dispose()
        raise unreachable(url, exc) from None
    return engine


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


class ReadOnlyTransactionError(FatalSyncError):
    """A write inside ``StateStore.transaction(refuse_writes=True)``: the database refused it, nothing was written."""


def _is_read_only_refusal(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "readonly" in text or "read-only" in text or "read only" in text


def _reset_query_only(conn: Connection) -> None:
    """End a ``PRAGMA query_only`` unit of work: the pooled connection must write again for the next user (or is
    discarded if that fails)."""
    try:
        with suppress(SQLAlchemyError):
            conn.rollback()
        conn.exec_driver_sql("PRAGMA query_only=OFF")
        conn.rollback()
    except SQLAlchemyError:
        conn.invalidate()


def _db_reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first[:200]}"


class StateStore:
    """The state store over one SQLAlchemy engine.

    Args:
        engine: the engine (see :func:`crmbridge.sync.state.db.make_engine`).
        clock: current time, timezone-aware UTC (injected by tests).
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> StateStore:
        """A store over a new engine for ``url``. Connecting happens at the first transaction (an unreachable
        server is a FatalSyncError naming host and port there); a URL no driver serves is refused here.

        Raises:
            ConfigurationError: the URL is not one SQLAlchemy understands, or its driver is not installed.
        """
        return cls(engine_for(url), **kwargs)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self, *, read_only: bool = False, refuse_writes: bool = False) -> Iterator[StoreTx]:
        """One database transaction: committed when the block ends, rolled back if it raises.

        ``read_only=True`` opens a unit of work that cannot commit (a dry run): whatever its statements wrote is
        rolled back when the block ends, normally or not, so no caller has to remember to undo anything. A dry
        run of the engine may write scratch rows (a new party's cross-reference) that later statements of the same
        unit of work read; they vanish with it.

        ``refuse_writes=True`` (implies ``read_only``) also makes the database itself refuse any write: SQLite
        runs it under ``PRAGMA query_only`` (reset afterwards) in a deferred transaction (no write lock, so a
        preview never waits for a running sync), PostgreSQL as ``SET TRANSACTION READ ONLY``. A write attempted
        inside raises :class:`ReadOnlyTransactionError`. For previews and reports that only read.

        Otherwise, on SQLite the transaction starts with ``BEGIN IMMEDIATE`` (the write lock is taken up front), so
        two processes never fail half-way through upgrading a read lock; PostgreSQL uses READ COMMITTED with
        single-statement upserts.

        Do not open a second transaction (or call a lease method) while one is open in the same thread: on
        SQLite the second waits for the first's write lock (up to the busy timeout) and then fails.
        """
        read_only = read_only or refuse_writes
        try:
            with self.engine.connect() as conn:
                sqlite = conn.dialect.name == "sqlite"
                if sqlite:
                    conn.exec_driver_sql("BEGIN" if refuse_writes else "BEGIN IMMEDIATE")
                    if refuse_writes:
                        conn.exec_driver_sql("PRAGMA query_only=ON")
                else:
                    conn.begin()
                    if refuse_writes:
                        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                try:
                    try:
                        yield StoreTx(conn, self.clock, read_only=read_only)
                    except BaseException as exc:
                        with suppress(SQLAlchemyError):   # a dropped connection cannot roll back: the server did
                            conn.rollback()
                        if refuse_writes and isinstance(exc, DBAPIError) and _is_read_only_refusal(exc):
                            raise ReadOnlyTransactionError(
                                "a write was attempted in a read-only unit of work (refused by the database; "
                                "nothing was written)") from exc
                        raise
                    if read_only:
                        conn.rollback()
                    else:
                        conn.commit()
                finally:
                    if sqlite and refuse_writes:
                        _reset_query_only(conn)
        except (OperationalError, InterfaceError, DisconnectionError) as exc:
            # locked past the busy timeout, connection dropped, server gone: the transaction did not commit (no
            # half-written state); say so in one line, without the SQL and its parameters
            raise FatalSyncError(f"state database unavailable ({database_location(self.engine.url)}; "
                                 f"the transaction did not complete): {_db_reason(exc)}") from exc

    # -- leases: each call is its own short transaction, visible to every process at once ----------
    def acquire_lease(self, job: str, holder: str, ttl_seconds: float) -> bool:
        """Take the lease of ``job`` for ``holder`` for ``ttl_seconds``.

        Succeeds if nobody holds it, if the current lease has expired, or if ``holder`` already holds it
        (renewal). Atomic under concurrency: a conditional UPDATE, then INSERT ... ON CONFLICT DO NOTHING;
        exactly one of several racing holders gets ``True``.
        """
        now = self.clock()
        expires = now + timedelta(seconds=ttl_seconds)
        values = {"holder": holder, "acquired_at": now, "expires_at": expires, "heartbeat_at": now}
        with self.transaction() as tx:
            res = tx.connection.execute(update(job_leases).where(
                job_leases.c.job == job,
                or_(job_leases.c.expires_at <= now, job_leases.c.holder == holder)).values(**values))
            if res.rowcount == 1:
                return True
            return tx._insert_ignore(job_leases, {"job": job, **values}, ("job",))

    def take_over_lease(self, job: str, stale_holder: str, holder: str, ttl_seconds: float) -> bool:
        """Take the lease of ``job`` from ``stale_holder`` (a holder known to be dead), only if it still holds it.

        Atomic: a conditional UPDATE on the stale holder, so of several processes taking over the same dead
        holder's lease exactly one gets ``True``.
        """
        now = self.clock()
        with self.transaction() as tx:
            return tx.connection.execute(update(job_leases).where(
                job_leases.c.job == job, job_leases.c.holder == stale_holder).values(
                holder=holder, acquired_at=now, expires_at=now + timedelta(seconds=ttl_seconds),
                heartbeat_at=now)).rowcount == 1

    def heartbeat_lease(self, job: str, holder: str, ttl_seconds: float) -> bool:
        """Extend a lease ``holder`` still holds. False if it expired or someone else holds it now."""
        now = self.clock()
        with self.transaction() as tx:
            res = tx.connection.execute(update(job_leases).where(
                job_leases.c.job == job, job_leases.c.holder == holder, job_leases.c.expires_at > now,
            ).values(expires_at=now + timedelta(seconds=ttl_seconds), heartbeat_at=now))
            return res.rowcount == 1

    def release_lease(self, job: str, holder: str) -> bool:
        """Give the lease up; False if ``holder`` did not hold it."""
        with self.transaction() as tx:
            return tx.connection.execute(delete(job_leases).where(
                and_(job_leases.c.job == job, job_leases.c.holder == holder))).rowcount == 1

    def lease_holder(self, job: str) -> dict[str, Any] | None:
        """The current unexpired lease of ``job``, or ``None``."""
        with self.engine.connect() as conn:
            return _row(conn.execute(select(job_leases).where(
                job_leases.c.job == job, job_leases.c.expires_at > self.clock())).mappings().first())

    def table_counts(self) -> dict[str, int]:
        """Rows per table (for ``crmbridge db current`` and tests)."""
        with self.engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (runs, cursors, xref, identity_index, snapshots, dead_letters, conflicts,
                              job_leases, write_intents, erasures, erasure_keys)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# ============================================================================================== file modes
#: the mode of every file crmbridge creates that holds state, keys or exports, whatever the process umask
PRIVATE_MODE = 0o600
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def open_private(path: str | os.PathLike[str], mode: str = "w", *, exclusive: bool = False,
                 encoding: str | None = "utf-8", newline: str | None = None) -> Any:
    """Open ``path`` for writing as a file only its owner can read (0600 whatever the umask; an existing file is
    truncated and tightened to 0600). ``exclusive`` refuses to replace an existing file (FileExistsError)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)   # the umask may have taken bits away (0400) or an existing file had more
        return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding,
                         newline=None if "b" in mode else newline)
    except BaseException:
        os.close(fd)
        raise


def private_file(path: str | os.PathLike[str]) -> None:
    """Make sure ``path`` exists with mode 0600 before anything is written to it (an empty SQLite file is an empty
    database), and tighten the SQLite journal files beside it: SQLite creates them with the database's mode."""
    with suppress(OSError):   # not ours to fix (another owner, a read-only folder): SQLite reports what matters
        if os.path.exists(path):
            # never open an existing database here: closing any descriptor of it drops every POSIX lock this
            # process's SQLite connections hold on it (a "disk I/O error", or worse, under concurrency)
            os.chmod(path, PRIVATE_MODE)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
            try:
                os.fchmod(fd, PRIVATE_MODE)
            finally:
                os.close(fd)
    for suffix in _SQLITE_SIDE_FILES:
        side = f"{os.fspath(path)}{suffix}"
        with suppress(OSError):
            if os.path.exists(side):
                os.chmod(side, PRIVATE_MODE)


def _sqlite_file(cargs: Sequence[Any], cparams: Mapping[str, Any]) -> str | None:
    name = cparams.get("database", cargs[0] if cargs else None)
    if not isinstance(name, str) or not name or name == ":memory:" or cparams.get("uri") or name.startswith("file:"):
        return None
    return name


@event.listens_for(Engine, "do_connect")
def _private_sqlite_database(dialect: Dialect, _conn_rec: Any, cargs: Sequence[Any],
                             cparams: Mapping[str, Any]) -> None:
    """Every SQLite state database (and its -wal/-shm/-journal) is created 0600 before SQLite opens it: every
    engine of the process (runs, migrations, the key and ledger commands) connects through here."""
    if dialect.name == "sqlite":
        path = _sqlite_file(cargs, cparams)
        if path is not None:
            private_file(path)
