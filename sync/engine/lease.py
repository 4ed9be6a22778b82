"""A job's lease: one run of a job at a time, across processes and hosts.

A :class:`Lease` is taken before a run (:meth:`Lease.acquire`), heart-beaten after each committed batch
(:meth:`Lease.heartbeat`; a crashed holder's lease expires after its time to live) and released at the end
(:meth:`Lease.release`). A lease still held by a process of this host that no longer exists (killed, crashed) is
taken over at once instead of blocking every run until it expires; the process remembers which of its own holders
are under way (a holder of this process that is not has ended without releasing).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from crmbridge.core.errors import CrmBridgeError, LeaseHeldError
from crmbridge.sync.state.store import RunStatus, StateStore

__all__ = ["LEASE_TTL_SECONDS", "Lease", "new_holder"]

log = logging.getLogger("crmbridge.sync")

LEASE_TTL_SECONDS = 300.0
#: lease holders of this process whose run is under way (a holder of this process not in it has ended)
_ACTIVE_HOLDERS: set[str] = set()


def new_holder() -> str:
    """A lease holder id: ``host:pid:nonce``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease of one job, held (or to be held) as ``holder``.

    Args:
        store: the state store.
        job: the job's name.
        holder: the holder id (default: a new one of this process); a distributed worker uses its dispatcher's, to
            heart-beat the dispatcher's lease and notice when it was lost.
        ttl: seconds the lease lives without a heartbeat.
    """

    def __init__(self, store: StateStore, job: str, *, holder: str | None = None,
                 ttl: float = LEASE_TTL_SECONDS) -> None:
        self.store = store
        self.job = job
        self.holder = holder or new_holder()
        self.ttl = ttl

    def acquire(self) -> bool:
        """Take the lease (or take over a dead local holder's); whether this holder has it now."""
        if self.store.acquire_lease(self.job, self.holder, self.ttl):
            _ACTIVE_HOLDERS.add(self.holder)
            return True
        stale = self.current_holder()
        if stale and _dead_local_holder(stale):
            log.warning("job %s: taking over the lease of %s, a holder of this host that no longer runs",
                        self.job, stale)
            return self.take_over(stale)
        return False

    def take_over(self, stale: str) -> bool:
        """Take the lease from ``stale`` (a holder known to have ended)."""
        if self.store.take_over_lease(self.job, stale, self.holder, self.ttl):
            _ACTIVE_HOLDERS.add(self.holder)
            return True
        return False

    def heartbeat(self) -> bool:
        """Extend the lease; ``False``: it was lost (expired and taken over by another holder)."""
        return self.store.heartbeat_lease(self.job, self.holder, self.ttl)

    def release(self, *, quiet: bool = False) -> None:
        """Give the lease up. With ``quiet``, a state database that cannot be reached is only logged (the lease
        expires or is taken over as soon as it is needed)."""
        _ACTIVE_HOLDERS.discard(self.holder)
        try:
            self.store.release_lease(self.job, self.holder)
        except CrmBridgeError as exc:
            if not quiet:
                raise
            log.warning("job %s: lease not released (%s); it is taken over as soon as it is needed", self.job, exc)

    def current_holder(self) -> str | None:
        """Who holds the lease now (``None``: nobody)."""
        return (self.store.lease_holder(self.job) or {}).get("holder")

    def refusal(self, *, actor: str, record: bool = True) -> LeaseHeldError:
        """The error of a run refused because another holder has the lease; with ``record``, the refused attempt
        is recorded as a run of its own (``crmbridge runs list``)."""
        refused = LeaseHeldError(self.job, self.current_holder())
        if record:
            with self.store.transaction() as tx:
                refused.run_id = tx.start_run(self.job, actor=actor)
                tx.finish_run(refused.run_id, RunStatus.REFUSED, error_summary=refused.message)
        return refused


def _dead_local_holder(holder: str) -> bool:
    """Whether a lease holder (``host:pid:nonce``) is a process of this host that no longer exists."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return holder not in _ACTIVE_HOLDERS   # a runner of this process that ended without releasing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:   # exists, owned by someone else
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still has a pid; it runs nothing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False

