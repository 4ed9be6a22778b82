"""What every part of a :class:`~crmbridge.sync.engine.runner.JobRunner` shares: its runtime, job and lease, the
state transaction of a run (read-only in a dry run) and the heartbeat after each committed batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from crmbridge.config import JobConfig
from crmbridge.core.errors import FatalSyncError
from crmbridge.sync.bootstrap import Runtime
from crmbridge.sync.engine.context import RunContext, StopRequested
from crmbridge.sync.engine.lease import Lease
from crmbridge.sync.state.store import StoreTx

__all__ = ["RunnerBase"]


class RunnerBase:
    rt: Runtime
    job: JobConfig
    name: str
    actor: str
    lease: Lease
    progress: Callable[[int], None] | None
    should_stop: Callable[[], bool] | None

    @property
    def holder(self) -> str:
        """The lease holder id this runner runs (or heart-beats) the job's lease as."""
        return self.lease.holder

    @holder.setter
    def holder(self, holder: str) -> None:
        self.lease.holder = holder

    @property
    def lease_ttl(self) -> float:
        return self.lease.ttl

    @contextmanager
    def _tx(self, ctx: RunContext) -> Iterator[StoreTx]:
        """A state transaction; in a dry run a read-only one (always rolled back)."""
        with self.rt.store.transaction(read_only=ctx.dry_run) as tx:
            yield tx

    def heartbeat(self, ctx: RunContext) -> None:
        """After a committed batch: keep the lease alive (a lost lease fails the run) and stop if asked to."""
        if not ctx.dry_run and not self.lease.heartbeat():
            raise FatalSyncError(f"lost the lease on job {self.name}; another process took it over")
        if self.should_stop is not None and self.should_stop():
            raise StopRequested
